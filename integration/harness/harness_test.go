package harness

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLabTCleanupOrderAndFatal(t *testing.T) {
	var out bytes.Buffer
	lab := NewLabT(t.TempDir(), &out)
	var order []int
	for i := range 3 {
		lab.Cleanup(func() { order = append(order, i) })
	}
	lab.Cleanup(func() { lab.Fatalf("cleanup %s", "broke") })

	err := lab.Run(func() {
		lab.Fatalf("start %s: %d", "consul", 7)
		order = append(order, 99) // never reached: Fatalf ends the goroutine
	})
	if err == nil || err.Error() != "lab: start consul: 7" || !lab.Failed() {
		t.Fatalf("Run = %v, Failed = %v; want the first Fatalf message", err, lab.Failed())
	}
	lab.Close()
	if got := order; len(got) != 3 || got[0] != 2 || got[1] != 1 || got[2] != 0 {
		t.Fatalf("cleanup order = %v, want [2 1 0] (a failing cleanup must not stop the rest)", got)
	}
	if !strings.Contains(out.String(), "start consul: 7\ncleanup broke\n") {
		t.Fatalf("log = %q", out.String())
	}
	d1, d2 := lab.TempDir(), lab.TempDir()
	if d1 == d2 {
		t.Fatalf("TempDir returned %s twice", d1)
	}
	if st, err := os.Stat(d2); err != nil || !st.IsDir() {
		t.Fatalf("TempDir %s: %v", d2, err)
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	err := WaitFor(context.Background(), "third call", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitFor = %v after %d calls, want nil after 3", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = WaitFor(ctx, "never", func() error { return errors.New("still broken") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for never") ||
		!strings.Contains(err.Error(), "still broken") {
		t.Fatalf("WaitFor = %v, want a deadline error naming the wait and the last error", err)
	}
}

func TestProcessLifecycle(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	p := StartProcess(t, ProcessConfig{Name: "sleeper/1", Path: sleep, Args: []string{"300"}, Dir: t.TempDir(), StopTimeout: 5 * time.Second})
	if filepath.Base(p.LogPath()) != "sleeper_1.log" {
		t.Fatalf("log path %s, want a sanitized sleeper_1.log", p.LogPath())
	}
	first := p.Pid()
	if !Alive(first) || !p.Running() {
		t.Fatalf("pid %d not running", first)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if Alive(first) || p.Running() {
		t.Fatalf("pid %d alive after Kill", first)
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	second := p.Pid()
	if second == first || !Alive(second) {
		t.Fatalf("Restart: pid %d (was %d), alive %v", second, first, Alive(second))
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if Alive(second) {
		t.Fatalf("pid %d alive after Stop", second)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop = %v, want nil", err)
	}
	log, err := os.ReadFile(p.LogPath())
	if err != nil || strings.Count(string(log), "=== harness") != 4 {
		t.Fatalf("log has %d harness notes, want 4 (two starts, two exits): %q, %v", strings.Count(string(log), "=== harness"), log, err)
	}
}

func TestProcessExitDuringStartup(t *testing.T) {
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false binary")
	}
	var out bytes.Buffer
	lab := NewLabT(t.TempDir(), &out)
	defer lab.Close()
	start := time.Now()
	err = lab.Run(func() {
		StartProcess(lab, ProcessConfig{
			Name:         "quitter",
			Path:         falseBin,
			Dir:          lab.TempDir(),
			Ready:        func(context.Context) error { return errors.New("no answer") },
			ReadyTimeout: time.Minute,
		})
	})
	if err == nil || !strings.Contains(err.Error(), "quitter exited during startup") {
		t.Fatalf("StartProcess error = %v, want it to report the early exit", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %s: the exit should end the readiness wait, not the timeout", d)
	}
}

func TestRenderVCL(t *testing.T) {
	tests := []struct {
		name    string
		give    []string
		want    []string
		wantErr string
	}{
		{"two backends", []string{"127.0.0.1:8001", "127.0.0.1:8002"},
			[]string{"vcl 4.1;", "import directors;", `.host = "127.0.0.1";`, `.port = "8002";`, "harness_rr.add_backend(app1);", "return (pass);", ReadyPath}, ""},
		{"none", nil, []string{"backend default none;", "synth(503"}, ""},
		{"injection", []string{`127.0.0.1";}:80`}, nil, "has characters not allowed"},
		{"no port", []string{"127.0.0.1"}, nil, "is not host:port"},
		{"bad port", []string{"127.0.0.1:99999"}, nil, "not 1-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderVCL(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("VCL lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestNginxRender(t *testing.T) {
	n := &Nginx{Addr: "127.0.0.1:8080", Prefix: "/p", PIDFile: "/p/nginx.pid", ErrorLog: "/p/logs/error.log", AccessLog: "/p/logs/access.log"}
	conf, err := n.render(NginxOptions{Upstreams: []string{"127.0.0.1:9001"}, ExtraServer: "location /x {}", ExtraHTTP: "# extra http"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"daemon off;", "pid /p/nginx.pid;", "server 127.0.0.1:9001;", "listen 127.0.0.1:8080;",
		"proxy_temp_path /p/tmp/proxy;", "location = " + ReadyPath, "location /x {}", "# extra http"} {
		if !strings.Contains(conf, w) {
			t.Errorf("config lacks %q:\n%s", w, conf)
		}
	}
	if strings.Contains(conf, "load_module") {
		t.Errorf("config loads modules without LoadLua:\n%s", conf)
	}
	if _, err := n.render(NginxOptions{Upstreams: []string{"10.0.0.1:80; evil"}}); err == nil {
		t.Fatal("render accepted a backend that would inject a directive")
	}
}

func TestCLIQuote(t *testing.T) {
	tests := []struct{ give, want string }{
		{"vcl.list", "vcl.list"},
		{"", `""`},
		{"a b", `"a b"`},
		{`say "hi"\`, `"say \"hi\"\\"`},
		{"line\nbreak", `"line\nbreak"`},
	}
	for _, tt := range tests {
		if got := cliQuote(tt.give); got != tt.want {
			t.Errorf("cliQuote(%q) = %s, want %s", tt.give, got, tt.want)
		}
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	b.WriteString("last line\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tailFile(path, 3)
	if lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n"); len(lines) != 3 || lines[2] != "last line" {
		t.Fatalf("tail = %q, want 3 lines ending in the last one", got)
	}
	if got := tailFile(filepath.Join(t.TempDir(), "missing"), 3); !strings.Contains(got, "cannot read") {
		t.Fatalf("tail of a missing file = %q", got)
	}
}

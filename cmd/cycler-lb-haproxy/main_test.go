package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHAProxy answers the runtime API commands the driver sends, for one
// backend "web" and one map, the way HAProxy 2.6 answers them. It is the
// unit tests' stand-in; haproxy_integration_test.go runs the real HAProxy.
// fail makes every command starting with it answer an error.
type fakeHAProxy struct {
	socket, mapPath string

	mu      sync.Mutex // guards the fields below; the listener serves on its own goroutine
	servers []server
	entries [][2]string
	fail    string
}

func startFake(t *testing.T, slots int) *fakeHAProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "lbh") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeHAProxy{socket: filepath.Join(dir, "admin.sock"), mapPath: "/etc/haproxy/cycler.map"}
	for i := 1; i <= slots; i++ {
		f.servers = append(f.servers, slot(fmt.Sprintf("s%d", i), "0.0.0.0", 0, adminMaint))
	}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			_, _ = conn.Write([]byte(f.answer(strings.TrimSpace(line)) + "\n"))
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return f
}

func (f *fakeHAProxy) answer(line string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != "" && strings.HasPrefix(line, f.fail) {
		return "fake failure\n"
	}
	w := strings.Fields(line)
	switch {
	case len(w) == 4 && w[0] == "show" && w[1] == "servers" && w[2] == "state" && w[3] == "web":
		var b strings.Builder
		b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_port\n")
		for i, s := range f.servers {
			fmt.Fprintf(&b, "3 web %d %s %s 2 %d %d\n", i+1, s.name, s.addr, s.admin, s.port)
		}
		return b.String()
	case len(w) == 4 && w[0] == "show" && w[1] == "servers" && w[2] == "conn" && w[3] == "web":
		var b strings.Builder
		b.WriteString("# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur idle_per_thr[2]\n")
		for i, s := range f.servers {
			fmt.Fprintf(&b, "web/%s 3/%d %s %d - 5000 0 0 0 0 0 -1 0 0 0\n", s.name, i+1, s.addr, s.port)
		}
		return b.String()
	case len(w) == 4 && w[0] == "show" && w[1] == "servers":
		return "Can't find backend.\n"
	case len(w) >= 3 && w[1] == "map" && w[2] != f.mapPath:
		return "Unknown map identifier. Please use #<id> or <file>.\n"
	case len(w) == 3 && w[0] == "show" && w[1] == "map":
		var b strings.Builder
		for i, e := range f.entries {
			fmt.Fprintf(&b, "0x%x %s %s\n", 0x1000+i, e[0], e[1])
		}
		return b.String()
	case len(w) == 5 && w[0] == "add" && w[1] == "map":
		f.entries = append(f.entries, [2]string{w[3], w[4]})
		return ""
	case len(w) == 5 && w[0] == "set" && w[1] == "map":
		found := false
		for i := range f.entries {
			if f.entries[i][0] == w[3] {
				f.entries[i][1], found = w[4], true
			}
		}
		if !found {
			return "entry not found.\n"
		}
		return ""
	case len(w) == 4 && w[0] == "del" && w[1] == "map":
		f.entries = slices.DeleteFunc(f.entries, func(e [2]string) bool { return e[0] == w[3] })
		return ""
	case len(w) >= 5 && w[0] == "set" && w[1] == "server":
		i := slices.IndexFunc(f.servers, func(s server) bool { return "web/"+s.name == w[2] })
		if i < 0 {
			return "No such server.\n"
		}
		s := &f.servers[i]
		switch {
		case len(w) == 7 && w[3] == "addr" && w[5] == "port":
			old := s.addr
			s.addr = w[4]
			fmt.Sscan(w[6], &s.port)
			return fmt.Sprintf("IP changed from '%s' to '%s', port changed by 'stats socket command'\n", old, s.addr)
		case len(w) == 5 && w[3] == "state" && w[4] == "ready":
			s.admin = adminReady
			return ""
		case len(w) == 5 && w[3] == "state" && w[4] == "maint":
			s.admin = adminMaint
			return ""
		case len(w) == 5 && w[3] == "state" && w[4] == "drain":
			s.admin = adminDrain
			return ""
		}
	}
	return "Unknown command: '" + line + "'\n"
}

// snapshot returns the fake's servers and map entries.
func (f *fakeHAProxy) snapshot() ([]server, [][2]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.servers), slices.Clone(f.entries)
}

func (f *fakeHAProxy) setFail(prefix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = prefix
}

// runDriver runs the driver's run with args and stdin and returns the exit
// status, stdout and stderr.
func runDriver(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func applyReq(gen int, backends ...string) string {
	var bs []string
	for _, b := range backends {
		host, port, _ := net.SplitHostPort(b)
		bs = append(bs, fmt.Sprintf(`{"id":"id-%s","address":%q,"port":%s}`, b, host, port))
	}
	return fmt.Sprintf(`{"protocol":1,"service":"web","generation":%d,"backends":[%s]}`, gen, strings.Join(bs, ","))
}

const appliedReq = `{"protocol":1,"service":"web"}`

func TestRunInfo(t *testing.T) {
	code, out, errOut := runDriver(t, "", "--socket", "/run/haproxy/admin.sock", "info")
	if code != 0 || out != `{"protocol":1,"name":"haproxy"}`+"\n" || errOut != "" {
		t.Fatalf("info = %d %q %q", code, out, errOut)
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		stdin    string
		errMatch []string
	}{
		{name: "no socket, no verb", args: nil, errMatch: []string{"--socket is required", "want exactly one verb"}},
		{name: "relative socket", args: []string{"--socket", "admin.sock", "info"}, errMatch: []string{`--socket "admin.sock" must be an absolute path`}},
		{name: "unknown verb", args: []string{"--socket", "/s", "reload"}, errMatch: []string{`unknown verb "reload"`}},
		{name: "bad flags", args: []string{"--socket", "/s", "--map", "rel.map", "--slots", "-1", "--slot-prefix", "1s", "--backend", "a b", "info"},
			errMatch: []string{`--map "rel.map"`, "--slots -1", `--slot-prefix "1s"`, `--backend "a b"`}},
		{name: "unknown flag", args: []string{"--sock", "/s", "info"}, errMatch: []string{"flag provided but not defined: -sock"}},
		{name: "request not json", args: []string{"--socket", "/s", "apply"}, stdin: "web 12", errMatch: []string{"request is not valid JSON"}},
		{name: "newer protocol", args: []string{"--socket", "/s", "applied"}, stdin: `{"protocol":2,"service":"web"}`, errMatch: []string{"exec protocol 2"}},
		{name: "service is no backend name", args: []string{"--socket", "/s", "applied"}, stdin: `{"protocol":1,"service":"web app"}`, errMatch: []string{"name the backend with --backend"}},
		{name: "hostname", args: []string{"--socket", "/s", "apply"},
			stdin: `{"protocol":1,"service":"web","generation":1,"backends":[{"id":"a","address":"app.example","port":80}]}`, errMatch: []string{"IP addresses only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runDriver(t, tt.stdin, tt.args...)
			if code != exitUsage || out != "" {
				t.Fatalf("exit %d, stdout %q; want %d and nothing (stderr %q)", code, out, exitUsage, errOut)
			}
			for _, m := range tt.errMatch {
				if !strings.Contains(errOut, m) {
					t.Errorf("stderr %q does not contain %q", errOut, m)
				}
			}
		})
	}
}

func TestRunApplyAgainstFake(t *testing.T) {
	f := startFake(t, 4)
	args := func(verb string) []string { return []string{"--socket", f.socket, verb} }

	if code, out, errOut := runDriver(t, appliedReq, args("applied")...); code != 0 || out != `{"protocol":1,"generation":0,"backends":[]}`+"\n" {
		t.Fatalf("applied before apply = %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runDriver(t, applyReq(2, "10.0.0.1:80", "10.0.0.2:80"), args("apply")...); code != 0 {
		t.Fatalf("apply = %d %q", code, errOut)
	}
	want := `{"protocol":1,"generation":2,"backends":[{"id":"id-10.0.0.1:80","address":"10.0.0.1","port":80},{"id":"id-10.0.0.2:80","address":"10.0.0.2","port":80}]}` + "\n"
	if code, out, errOut := runDriver(t, appliedReq, args("applied")...); code != 0 || out != want {
		t.Fatalf("applied = %d %q %q\nwant %q", code, out, errOut, want)
	}
	servers, entries := f.snapshot()

	tests := []struct {
		name     string
		stdin    string
		wantCode int
		errMatch string
	}{
		{name: "stale generation", stdin: applyReq(1, "10.0.1.1:80"), wantCode: exitStale, errMatch: "backend web serves generation 2, offered 1; nothing changed"},
		{name: "more backends than slots", stdin: applyReq(3, "10.0.1.1:1", "10.0.1.1:2", "10.0.1.1:3", "10.0.1.1:4", "10.0.1.1:5"), wantCode: exitFail,
			errMatch: "the set has 5 backends but backend web has 4 slots (s1-s4)"},
		{name: "same generation and set again", stdin: applyReq(2, "10.0.0.2:80", "10.0.0.1:80"), wantCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runDriver(t, tt.stdin, args("apply")...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.errMatch) {
				t.Fatalf("apply = %d %q; want %d containing %q", code, errOut, tt.wantCode, tt.errMatch)
			}
			if s, e := f.snapshot(); !slices.Equal(s, servers) || !slices.Equal(e, entries) {
				t.Fatalf("HAProxy changed:\n%v %v\nwas\n%v %v", s, e, servers, entries)
			}
		})
	}
}

func TestRunApplyRestoresPreviousSetOnFailure(t *testing.T) {
	tests := []struct {
		name  string
		slots int
		fail  string
	}{
		{name: "fill a free slot", slots: 4, fail: "set server web/s4 state ready"},
		{name: "reuse a retired slot", slots: 2, fail: "set server web/s2 addr"},
		{name: "retire the old set", slots: 4, fail: "set server web/s2 state maint"},
		{name: "write an id", slots: 4, fail: "add map /etc/haproxy/cycler.map cycler/web/id/10.0.1.2:80"},
		{name: "write the generation", slots: 4, fail: "set map /etc/haproxy/cycler.map cycler/web/generation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.slots)
			args := []string{"--socket", f.socket, "apply"}
			if code, _, errOut := runDriver(t, applyReq(1, "10.0.0.1:80", "10.0.0.2:80"), args...); code != 0 {
				t.Fatalf("apply generation 1 = %d %q", code, errOut)
			}
			f.setFail(tt.fail)
			code, _, errOut := runDriver(t, applyReq(2, "10.0.1.1:80", "10.0.1.2:80"), args...)
			if code != exitFail || !strings.Contains(errOut, "fake failure") || !strings.Contains(errOut, "the previous set was restored") {
				t.Fatalf("apply generation 2 = %d %q; want exit 1, HAProxy's message and a restore", code, errOut)
			}
			f.setFail("")
			want := `{"protocol":1,"generation":1,"backends":[{"id":"id-10.0.0.1:80","address":"10.0.0.1","port":80},{"id":"id-10.0.0.2:80","address":"10.0.0.2","port":80}]}` + "\n"
			if code, out, errOut := runDriver(t, appliedReq, "--socket", f.socket, "applied"); code != 0 || out != want {
				t.Fatalf("applied after the failure = %d %q %q\nwant %q", code, out, errOut, want)
			}
		})
	}
}

func TestRunRefusesUnmanagedServer(t *testing.T) {
	f := startFake(t, 2)
	f.mu.Lock()
	f.servers = append(f.servers, slot("static", "10.9.9.9", 80, adminReady))
	f.mu.Unlock()
	code, _, errOut := runDriver(t, applyReq(1, "10.0.0.1:80"), "--socket", f.socket, "apply")
	if code != exitFail || !strings.Contains(errOut, "servers [static] take traffic but are not s<n> slots") {
		t.Fatalf("apply = %d %q", code, errOut)
	}
	// applied reports the server: it is what HAProxy routes to.
	code, out, _ := runDriver(t, appliedReq, "--socket", f.socket, "applied")
	if code != 0 || !strings.Contains(out, `{"id":"static","address":"10.9.9.9","port":80}`) {
		t.Fatalf("applied = %d %q", code, out)
	}
}

func TestRunUnreachableSocket(t *testing.T) {
	code, _, errOut := runDriver(t, appliedReq, "--socket", "/nonexistent/admin.sock", "applied")
	if code != exitFail || !strings.Contains(errOut, "is `stats socket /nonexistent/admin.sock level admin` in haproxy.cfg") {
		t.Fatalf("applied = %d %q", code, errOut)
	}
}

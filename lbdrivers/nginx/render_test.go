package nginx

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenOpts are fixed options so rendered files are byte-stable.
func goldenOpts(mode Mode) Options {
	return Options{
		Mode:            mode,
		Prefix:          "/var/lib/cycler/nginx",
		ConfigDir:       "/etc/nginx/cycler",
		MainConfig:      "/var/lib/cycler/nginx/nginx.conf",
		Standalone:      true,
		Services:        []Service{{Name: "web", Listen: "0.0.0.0:80"}, {Name: "api-v2", Listen: "[::]:8080"}},
		Service:         "web",
		AdminAddr:       "127.0.0.1:7403",
		AdminSecret:     "0123456789abcdef0123456789abcdef",
		WorkerProcesses: 2,
		User:            "www-data",
	}
}

// goldenSet mixes IPv4, IPv6 and a hostname, with IDs that need escaping.
var goldenSet = []lbdrivers.Backend{
	{ID: "web-green-2", Address: "fd00::2", Port: 8080},
	{ID: "web green 1", Address: "10.0.0.11", Port: 8080},
	{ID: "", Address: "app-3.internal.example", Port: 9000},
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is intended)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		give   Mode
		file   string
		golden string
	}{
		{give: ModeDynamic, file: "/var/lib/cycler/nginx/nginx.conf", golden: "dynamic_nginx.conf.golden"},
		{give: ModeDynamic, file: "/etc/nginx/cycler/cycler.conf", golden: "dynamic_cycler.conf.golden"},
		{give: ModeReload, file: "/var/lib/cycler/nginx/nginx.conf", golden: "reload_nginx.conf.golden"},
		{give: ModeReload, file: "/etc/nginx/cycler/cycler.conf", golden: "reload_cycler.conf.golden"},
		{give: ModeReload, file: "/etc/nginx/cycler/web.upstream.conf", golden: "reload_placeholder.upstream.conf.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			files, err := Render(goldenOpts(tt.give))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f.Path == tt.file {
					checkGolden(t, tt.golden, f.Data)
					return
				}
			}
			t.Fatalf("Render returned no %s", tt.file)
		})
	}
}

func TestRenderUpstreamGolden(t *testing.T) {
	o := goldenOpts(ModeReload).withDefaults()
	sorted, err := checkSet(goldenSet, false)
	if err != nil {
		t.Fatal(err)
	}
	got := renderUpstream(o, "web", 42, sorted)
	checkGolden(t, "reload_web.upstream.conf.golden", got)

	// The include records exactly the set it routes to.
	body, servers, err := parseInclude(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, encodeSet(42, sorted)) {
		t.Errorf("recorded set %q, want %q", body, encodeSet(42, sorted))
	}
	want := []string{"10.0.0.11:8080", "[fd00::2]:8080", "app-3.internal.example:9000"}
	if len(servers) != len(want) {
		t.Fatalf("servers %v, want %v", servers, want)
	}
	for i := range want {
		if servers[i] != want[i] {
			t.Errorf("server %d = %q, want %q", i, servers[i], want[i])
		}
	}
}

func TestEncodeSetGolden(t *testing.T) {
	sorted, err := checkSet(goldenSet[:2], true)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "set.golden", encodeSet(7, sorted))
}

func TestRenderRefusesNoServices(t *testing.T) {
	o := goldenOpts(ModeReload)
	o.Services = nil
	if _, err := Render(o); err == nil {
		t.Fatal("Render with no services succeeded")
	}
}

// TestRenderedConfigPassesNginxCheck runs the real `nginx -t` on Bootstrap's
// output in both modes. It is fast (no nginx is started) and skips only when
// nginx or, for dynamic mode, the lua module is not installed.
func TestRenderedConfigPassesNginxCheck(t *testing.T) {
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("nginx not installed at %s (install it with `make deps`): %v", DefaultBinary, err)
	}
	for _, mode := range []Mode{ModeDynamic, ModeReload} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeDynamic && DetectMode("") != ModeDynamic {
				t.Skip("libnginx-mod-http-lua or lua-resty-core not installed; dynamic mode cannot be checked")
			}
			dir := t.TempDir()
			o := Options{
				Mode:        mode,
				Prefix:      dir,
				ConfigDir:   filepath.Join(dir, "cycler"),
				MainConfig:  filepath.Join(dir, "nginx.conf"),
				Standalone:  true,
				Services:    []Service{{Name: "web", Listen: "127.0.0.1:1"}, {Name: "api", Listen: "[::1]:2"}},
				Service:     "web",
				AdminAddr:   "127.0.0.1:3",
				AdminSecret: "0123456789abcdef",
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			changed, err := Bootstrap(ctx, o)
			if err != nil || !changed {
				t.Fatalf("first Bootstrap = %v, %v; want true, nil", changed, err)
			}
			changed, err = Bootstrap(ctx, o)
			if err != nil || changed {
				t.Fatalf("second Bootstrap = %v, %v; want false, nil (nothing changed)", changed, err)
			}
		})
	}
}

// TestBootstrapRestoresOnFailedCheck proves that a config nginx refuses is
// rolled back: adding a service whose existing include nginx rejects (an
// include Bootstrap must keep, as it may hold the last good set) leaves
// cycler.conf as it was.
func TestBootstrapRestoresOnFailedCheck(t *testing.T) {
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("nginx not installed at %s: %v", DefaultBinary, err)
	}
	dir := t.TempDir()
	o := Options{
		Mode:       ModeReload,
		Prefix:     dir,
		ConfigDir:  filepath.Join(dir, "cycler"),
		MainConfig: filepath.Join(dir, "nginx.conf"),
		Standalone: true,
		Services:   []Service{{Name: "web", Listen: "127.0.0.1:1"}},
		AdminAddr:  "127.0.0.1:3",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Bootstrap(ctx, o); err != nil {
		t.Fatal(err)
	}
	snippet := filepath.Join(o.ConfigDir, snippetFile)
	good, err := os.ReadFile(snippet)
	if err != nil {
		t.Fatal(err)
	}
	// A broken upstream include for a new service makes `nginx -t` fail
	// once the snippet includes it.
	if err := os.WriteFile(filepath.Join(o.ConfigDir, "api"+upstreamSuffix), []byte("upstream api_cycler { server 127.0.0.1:1 bogus_flag; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.Services = append(o.Services, Service{Name: "api", Listen: "127.0.0.1:2"})
	if _, err := Bootstrap(ctx, o); err == nil {
		t.Fatal("Bootstrap with a broken include succeeded")
	}
	now, err := os.ReadFile(snippet)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(now, good) {
		t.Errorf("cycler.conf was not restored after the failed check:\n%s", now)
	}
}

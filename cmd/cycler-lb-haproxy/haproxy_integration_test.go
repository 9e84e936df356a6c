//go:build integration

package main_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/lbdrivers/execdriver"
	"github.com/cyclerhq/cycler/pool"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.RemoveBuiltBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "remove built binaries:", err)
	}
	os.Exit(code)
}

func stepCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// haproxyLab is a real haproxy started by startHAProxy.
type haproxyLab struct {
	*harness.Process
	url, socket, mapPath string
}

// startHAProxy runs haproxy in the foreground (-db) from its own temp dir:
// an admin-level runtime API socket, a frontend on a free loopback port and
// a backend "web" of server-template slots, with the map and the generation
// route the driver's documentation asks for. The backend reuses idle server
// connections as eagerly as haproxy can (http-reuse always), so a slot that
// kept a connection to its previous address would show.
func startHAProxy(t *testing.T, slots int) *haproxyLab {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("haproxy is not installed (install it with `make deps`): %v", err)
	}
	dir := t.TempDir()
	// A unix socket path has at most 107 bytes; test temp dirs can be long.
	sockDir, err := os.MkdirTemp("", "hap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	lab := &haproxyLab{
		url:     fmt.Sprintf("http://127.0.0.1:%d", harness.FreePort(t)),
		socket:  filepath.Join(sockDir, "admin.sock"),
		mapPath: filepath.Join(dir, "cycler.map"),
	}
	if err := os.WriteFile(lab.mapPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global
    stats socket %[1]s mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind %[2]s
    default_backend web
backend web
    balance roundrobin
    http-reuse always
    http-request return status 200 content-type text/plain lf-string "%%[str(cycler/web/generation),map(%[3]s,0)]\n" if { path /__cycler/generation }
    server-template s 1-%[4]d 0.0.0.0:0 disabled
`, lab.socket, strings.TrimPrefix(lab.url, "http://"), lab.mapPath, slots)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.Process = harness.StartProcess(t, harness.ProcessConfig{
		Name: "haproxy",
		Path: bin,
		Args: []string{"-f", cfgPath, "-db"},
		Dir:  dir,
		Ready: func(ctx context.Context) error {
			out, err := runtimeCmd(ctx, lab.socket, "show info")
			if err == nil && !strings.Contains(out, "Name: HAProxy") {
				err = fmt.Errorf("show info answered %q", out)
			}
			if err != nil {
				return err
			}
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", strings.TrimPrefix(lab.url, "http://"))
			if err != nil {
				return err
			}
			return conn.Close()
		},
	})
	return lab
}

// runtimeCmd sends one command to haproxy's runtime API.
func runtimeCmd(ctx context.Context, socket, cmd string) (string, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

// snapshot is what haproxy holds for the backend: the name, address, admin
// state and port of every slot, and the map.
func (l *haproxyLab) snapshot(t *testing.T) string {
	t.Helper()
	servers, err := runtimeCmd(stepCtx(t), l.socket, "show servers state web")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(servers, "\n") {
		if f := strings.Fields(line); len(f) > 18 && f[0] != "#" {
			fmt.Fprintln(&b, f[3], f[4], f[6], f[18])
		}
	}
	m, err := runtimeCmd(stepCtx(t), l.socket, "show map "+l.mapPath)
	if err != nil {
		t.Fatal(err)
	}
	return b.String() + m
}

func startApps(t *testing.T, p pool.Pool, ids ...string) []lbdrivers.Backend {
	t.Helper()
	var out []lbdrivers.Backend
	for _, id := range ids {
		a := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v-" + string(p), Instance: id, Pool: p})
		out = append(out, lbdrivers.Backend{ID: id, Address: a.Host, Port: a.Port})
	}
	return out
}

// client keeps connections to haproxy alive, so haproxy may send requests
// over idle server connections.
var client = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-App-Instance"), string(body)
}

// requireOnly sends 4 requests per backend through haproxy and fails unless every one was answered 200 by a backend in
// want and every backend in want answered.
func requireOnly(t *testing.T, url string, want []lbdrivers.Backend) {
	t.Helper()
	var ids []string
	for _, b := range want {
		ids = append(ids, b.ID)
	}
	seen := map[string]int{}
	for range 4 * len(want) {
		status, id, _ := get(t, url+"/")
		if status != http.StatusOK || !slices.Contains(ids, id) {
			t.Fatalf("GET %s/: status %d from %q, want 200 from one of %v (so far %v)", url, status, id, ids, seen)
		}
		seen[id]++
	}
	for _, id := range ids {
		if seen[id] == 0 {
			t.Fatalf("backend %q never answered in %d requests (all: %v)", id, 4*len(want), seen)
		}
	}
}

func requireApplied(t *testing.T, d *execdriver.Driver, lab *haproxyLab, gen uint64, want []lbdrivers.Backend) {
	t.Helper()
	g, got, err := d.Applied(stepCtx(t))
	if err != nil {
		t.Fatalf("Applied: %v", err)
	}
	if g != gen || !slices.Equal(got, lbdrivers.Sorted(want)) {
		t.Fatalf("Applied = %d %v, want %d %v", g, got, gen, lbdrivers.Sorted(want))
	}
	// haproxy answers the generation itself, from the same map.
	if _, _, body := get(t, lab.url+"/__cycler/generation"); strings.TrimSpace(body) != fmt.Sprint(gen) {
		t.Fatalf("GET /__cycler/generation = %q, want %d", body, gen)
	}
}

// load sends requests over keep-alive connections until stop is closed and
// counts the answers that are not 200 from an app.
type load struct {
	stop            chan struct{}
	wg              sync.WaitGroup
	mu              sync.Mutex
	total, failures int
	firstFailure    string
}

func startLoad(url string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(url + "/")
				failure := ""
				if err != nil {
					failure = err.Error()
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || resp.Header.Get("X-App-Instance") == "" {
						failure = fmt.Sprintf("status %d from %q", resp.StatusCode, resp.Header.Get("X-App-Instance"))
					}
				}
				l.mu.Lock()
				l.total++
				if failure != "" {
					l.failures++
					if l.firstFailure == "" {
						l.firstFailure = failure
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() (total, failures int, first string) {
	close(l.stop)
	l.wg.Wait()
	return l.total, l.failures, l.firstFailure
}

// newDriver runs the example driver program through execdriver.
func newDriver(t *testing.T, lab *haproxyLab) *execdriver.Driver {
	t.Helper()
	bin := harness.BuildBinary(t, "./cmd/cycler-lb-haproxy")
	d, err := execdriver.New(stepCtx(t), execdriver.Options{
		Command: []string{bin, "--socket", lab.socket, "--map", lab.mapPath},
		Service: "web",
		Timeout: 20 * time.Second,
		Logger:  zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "exec:haproxy" {
		t.Fatalf("Name = %q", d.Name())
	}
	return d
}

func TestHAProxyDriver(t *testing.T) {
	lab := startHAProxy(t, 4)
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	d := newDriver(t, lab)
	requireApplied(t, d, lab, 0, nil)

	// Set A, then set B: every request goes to the applied set only.
	if err := d.Apply(stepCtx(t), 1, blue); err != nil {
		t.Fatalf("apply blue: %v", err)
	}
	requireOnly(t, lab.url, blue)
	requireApplied(t, d, lab, 1, blue)

	// Re-applying the same generation and set changes nothing in haproxy.
	before := lab.snapshot(t)
	if err := d.Apply(stepCtx(t), 1, []lbdrivers.Backend{blue[1], blue[0]}); err != nil {
		t.Fatalf("re-apply blue: %v", err)
	}
	if after := lab.snapshot(t); after != before {
		t.Fatalf("re-apply changed haproxy:\n%s\nwas\n%s", after, before)
	}

	// Switch back and forth under load: with 4 slots for sets of 2, the old
	// set serves until the new one is ready, so no request fails.
	l := startLoad(lab.url, 4)
	for i, set := range [][]lbdrivers.Backend{green, blue, green} {
		if err := d.Apply(stepCtx(t), uint64(2+i), set); err != nil {
			l.finish()
			t.Fatalf("apply generation %d: %v", 2+i, err)
		}
	}
	total, failures, first := l.finish()
	if total == 0 || failures != 0 {
		t.Fatalf("%d of %d requests failed during the switches; first: %s", failures, total, first)
	}
	t.Logf("%d requests during 3 switches, none failed", total)
	requireOnly(t, lab.url, green)
	requireApplied(t, d, lab, 4, green)

	// Refusals leave the current set serving.
	refusals := []struct {
		name     string
		gen      uint64
		set      []lbdrivers.Backend
		wantErr  error
		errMatch string
	}{
		{name: "stale generation", gen: 3, set: blue, wantErr: execdriver.ErrStaleGeneration,
			errMatch: "backend web serves generation 4, offered 3; nothing changed"},
		{name: "more backends than slots", gen: 5, set: append(slices.Clone(blue), append(slices.Clone(green), lbdrivers.Backend{ID: "x", Address: "127.0.0.1", Port: 1})...),
			errMatch: "the set has 5 backends but backend web has 4 slots (s1-s4)"},
		{name: "hostname", gen: 5, set: []lbdrivers.Backend{{ID: "h", Address: "localhost", Port: blue[0].Port}},
			errMatch: "HAProxy's runtime API sets IP addresses only"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := lab.snapshot(t)
			err := d.Apply(stepCtx(t), tt.gen, tt.set)
			var ce *execdriver.CommandError
			if !errors.As(err, &ce) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
				t.Fatalf("Apply = %v; want a CommandError (%v) containing %q", err, tt.wantErr, tt.errMatch)
			}
			if after := lab.snapshot(t); after != before {
				t.Fatalf("a refused apply changed haproxy:\n%s\nwas\n%s", after, before)
			}
			requireOnly(t, lab.url, green)
			requireApplied(t, d, lab, 4, green)
		})
	}

	// A partly overlapping set keeps the common backend's slot.
	mixed := []lbdrivers.Backend{blue[0], green[1]}
	if err := d.Apply(stepCtx(t), 5, mixed); err != nil {
		t.Fatalf("apply mixed: %v", err)
	}
	requireOnly(t, lab.url, mixed)
	requireApplied(t, d, lab, 5, mixed)

	// After a restart haproxy holds nothing cycler applied: applied says so
	// honestly, and applying again restores the set.
	if err := lab.Restart(); err != nil {
		t.Fatalf("restart haproxy: %v", err)
	}
	requireApplied(t, d, lab, 0, nil)
	if err := d.Apply(stepCtx(t), 5, mixed); err != nil {
		t.Fatalf("re-apply after restart: %v", err)
	}
	requireOnly(t, lab.url, mixed)
	requireApplied(t, d, lab, 5, mixed)
}

// With no spare slot every switch reuses the slots of the old set (maint,
// addr, ready), one at a time.
func TestHAProxyDriverReusesSlots(t *testing.T) {
	lab := startHAProxy(t, 2)
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	d := newDriver(t, lab)
	if err := d.Apply(stepCtx(t), 1, blue); err != nil {
		t.Fatalf("apply generation 1: %v", err)
	}
	// Under load, each switch reuses both slots one at a time; the other
	// slot serves meanwhile, so no request fails. After each switch,
	// requireOnly (over kept-alive connections, with haproxy's idle server
	// connections still pooled) proves no request reaches a previous
	// address. The load stops first: it shares the round robin, so with it
	// running requireOnly's own requests need not see every backend.
	var total int
	for i, set := range [][]lbdrivers.Backend{green, blue, green} {
		gen := uint64(2 + i)
		l := startLoad(lab.url, 4)
		err := d.Apply(stepCtx(t), gen, set)
		n, failures, first := l.finish()
		if err != nil {
			t.Fatalf("apply generation %d: %v", gen, err)
		}
		if n == 0 || failures != 0 {
			t.Fatalf("%d of %d requests failed during switch %d; first: %s", failures, n, gen, first)
		}
		total += n
		requireOnly(t, lab.url, set)
		requireApplied(t, d, lab, gen, set)
	}
	t.Logf("%d requests during 3 switches, none failed", total)
	if err := d.Apply(stepCtx(t), 5, append(slices.Clone(blue), green[0])); err == nil || !strings.Contains(err.Error(), "backend web has 2 slots") {
		t.Fatalf("apply 3 backends to 2 slots = %v, want a refusal", err)
	}
	requireOnly(t, lab.url, green)
}

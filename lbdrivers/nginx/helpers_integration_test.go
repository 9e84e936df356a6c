//go:build integration

package nginx_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/pool"
)

// testTimeout bounds each step that talks to nginx.
const testTimeout = 30 * time.Second

func stepCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// randomSecret returns a fresh 32-byte hex secret.
func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// labOptions returns Standalone options for one service "web" under a fresh
// prefix, logging to an observer so tests can see whether Apply changed
// anything.
func labOptions(t *testing.T, mode nginx.Mode) (nginx.Options, *observer.ObservedLogs) {
	t.Helper()
	if _, err := os.Stat(nginx.DefaultBinary); err != nil {
		t.Skipf("nginx not installed at %s (install it with `make deps`): %v", nginx.DefaultBinary, err)
	}
	if mode == nginx.ModeDynamic && nginx.DetectMode("") != nginx.ModeDynamic {
		t.Skip("libnginx-mod-http-lua or lua-resty-core not installed; dynamic mode cannot run")
	}
	core, logs := observer.New(zap.DebugLevel)
	prefix := filepath.Join(t.TempDir(), "nginx")
	o := nginx.Options{
		Mode:            mode,
		Prefix:          prefix,
		ConfigDir:       filepath.Join(prefix, "cycler"),
		MainConfig:      filepath.Join(prefix, "nginx.conf"),
		Standalone:      true,
		Services:        []nginx.Service{{Name: "web", Listen: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}},
		Service:         "web",
		AdminAddr:       fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)),
		AdminSecret:     randomSecret(t),
		WorkerProcesses: 2,
		ReloadTimeout:   15 * time.Second,
		Logger:          zap.New(core),
	}
	if os.Geteuid() == 0 {
		// Workers must read the prefix, which lives in the test's 0700 temp dir.
		o.User = "root"
	}
	return o, logs
}

// startNginx writes the driver's standalone config and runs nginx from it
// through the harness, which stops it at Cleanup.
func startNginx(t *testing.T, o nginx.Options) *harness.Process {
	t.Helper()
	changed, err := nginx.Bootstrap(stepCtx(t), o)
	if err != nil || !changed {
		t.Fatalf("Bootstrap = %v, %v; want true, nil", changed, err)
	}
	admin := "http://" + o.AdminAddr + "/"
	return harness.StartProcess(t, harness.ProcessConfig{
		Name:      "nginx",
		Path:      nginx.DefaultBinary,
		Args:      nginx.ForegroundArgs(o),
		Dir:       o.Prefix,
		ExtraLogs: []string{filepath.Join(o.Prefix, "logs", "error.log")},
		Ready: func(ctx context.Context) error {
			// The admin server answers 404 on / once nginx serves.
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin, nil)
			if err != nil {
				return err
			}
			resp, err := freshClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		},
	})
}

// pids returns the nginx master's pid followed by its workers', sorted.
func pids(t *testing.T, p *harness.Process) []int {
	t.Helper()
	kids, err := harness.ChildPIDs(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(kids)
	return append([]int{p.Pid()}, kids...)
}

// startApps starts one demo app per id and returns them as backends.
func startApps(t *testing.T, p pool.Pool, ids ...string) []lbdrivers.Backend {
	t.Helper()
	var out []lbdrivers.Backend
	for _, id := range ids {
		a := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v-" + string(p), Instance: id, Pool: p})
		out = append(out, lbdrivers.Backend{ID: id, Address: a.Host, Port: a.Port})
	}
	return out
}

// freshClient opens a new connection per request, so requests spread over
// nginx's workers and never reuse a connection across a switch.
var freshClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// instance GETs url and returns the status and the X-App-Instance header.
func instance(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-App-Instance")
}

// requireOnly sends n requests on fresh connections and fails unless every
// one was answered 200 by a backend in want, and every backend in want
// answered at least once. With round robin per worker and n > 2*workers,
// some worker serves two requests in a row, so with two backends both are
// seen.
func requireOnly(t *testing.T, url string, n int, want []lbdrivers.Backend) {
	t.Helper()
	seen := map[string]int{}
	for range n {
		status, id := instance(t, freshClient, url)
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200 from one of %v", url, status, ids(want))
		}
		seen[id]++
	}
	for id := range seen {
		if !slices.Contains(ids(want), id) {
			t.Fatalf("answered by %q, which is not in the applied set %v (all: %v)", id, ids(want), seen)
		}
	}
	for _, id := range ids(want) {
		if seen[id] == 0 {
			t.Fatalf("backend %q never answered in %d requests (all: %v)", id, n, seen)
		}
	}
}

func ids(bs []lbdrivers.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.ID)
	}
	return out
}

// requireApplied fails unless Applied reports gen and exactly want (IDs
// included).
func requireApplied(t *testing.T, d lbdrivers.Driver, gen uint64, want []lbdrivers.Backend) {
	t.Helper()
	g, got, err := d.Applied(stepCtx(t))
	if err != nil {
		t.Fatalf("Applied: %v", err)
	}
	if g != gen || !slices.Equal(got, lbdrivers.Sorted(want)) {
		t.Fatalf("Applied = %d %v, want %d %v", g, got, gen, lbdrivers.Sorted(want))
	}
}

// lastChanged returns the "changed" field of the last "backend set applied"
// log entry.
func lastChanged(t *testing.T, logs *observer.ObservedLogs) bool {
	t.Helper()
	all := logs.FilterMessage("backend set applied").All()
	if len(all) == 0 {
		t.Fatal("no \"backend set applied\" log entry")
	}
	changed, ok := all[len(all)-1].ContextMap()["changed"].(bool)
	if !ok {
		t.Fatalf("log entry has no bool \"changed\": %v", all[len(all)-1].ContextMap())
	}
	return changed
}

// keepaliveConn is one client connection to nginx kept open across requests.
type keepaliveConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKeepalive(t *testing.T, addr string) *keepaliveConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepaliveConn{c: c, br: bufio.NewReader(c)}
}

// get sends one request on the connection and returns the answering
// instance; it fails if nginx closed the connection.
func (k *keepaliveConn) get(t *testing.T) string {
	t.Helper()
	if err := k.c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		t.Fatalf("write on keepalive connection: %v", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("read on keepalive connection (nginx closed it?): %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("keepalive request: status %d, close %v", resp.StatusCode, resp.Close)
	}
	return resp.Header.Get("X-App-Instance")
}

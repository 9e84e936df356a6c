//go:build integration

package nginx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/pool"
)

func TestDynamicSwitch(t *testing.T) {
	o, logs := labOptions(t, nginx.ModeDynamic)
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	proc := startNginx(t, o)
	url := "http://" + o.Services[0].Listen + "/"
	d, err := nginx.New(o)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing applied yet: 502 from the down placeholder, generation 0.
	if status, _ := instance(t, freshClient, url); status != http.StatusBadGateway {
		t.Fatalf("before any Apply: status %d, want 502", status)
	}
	requireApplied(t, d, 0, nil)

	if err := d.Apply(stepCtx(t), 1, blue); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 20, blue)
	requireApplied(t, d, 1, blue)
	if !lastChanged(t, logs) {
		t.Error("first Apply logged changed=false")
	}

	before := pids(t, proc)
	ka := dialKeepalive(t, o.Services[0].Listen)
	if id := ka.get(t); !slices.Contains(ids(blue), id) {
		t.Fatalf("keepalive request answered by %q, want blue", id)
	}

	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	// The connection opened before the switch still works and now reaches
	// the new set.
	if id := ka.get(t); !slices.Contains(ids(green), id) {
		t.Fatalf("keepalive request after the switch answered by %q, want green", id)
	}
	requireOnly(t, url, 20, green)
	requireApplied(t, d, 2, green)
	if after := pids(t, proc); !slices.Equal(before, after) {
		t.Fatalf("nginx pids changed across a dynamic switch: %v -> %v", before, after)
	}

	// Same generation and set again: nothing changes.
	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	if lastChanged(t, logs) {
		t.Error("re-applying the same generation and set logged changed=true")
	}

	// A stale writer cannot roll the LB back.
	if err := d.Apply(stepCtx(t), 1, blue); !errors.Is(err, nginx.ErrStaleGeneration) {
		t.Fatalf("stale Apply: err %v, want ErrStaleGeneration", err)
	}
	// An empty set is refused before nginx is asked.
	if err := d.Apply(stepCtx(t), 3, nil); !errors.Is(err, nginx.ErrEmptySet) {
		t.Fatalf("empty Apply: err %v, want ErrEmptySet", err)
	}
	// A wrong secret is refused for writes and reads.
	wrong := o
	wrong.AdminSecret = randomSecret(t)
	dw, err := nginx.New(wrong)
	if err != nil {
		t.Fatal(err)
	}
	if err := dw.Apply(stepCtx(t), 3, blue); !errors.Is(err, nginx.ErrUnauthorized) {
		t.Fatalf("Apply with a wrong secret: err %v, want ErrUnauthorized", err)
	}
	if _, _, err := dw.Applied(stepCtx(t)); !errors.Is(err, nginx.ErrUnauthorized) {
		t.Fatalf("Applied with a wrong secret: err %v, want ErrUnauthorized", err)
	}
	requireOnly(t, url, 10, green)
	requireApplied(t, d, 2, green)
	if ka.get(t) == "" {
		t.Fatal("keepalive connection lost its backend")
	}
}

// TestDynamicAdminRefusesBadBodies exercises the Lua parser and the admin
// location's checks directly: every bad request is refused with the right
// status and the stored set stays.
func TestDynamicAdminRefusesBadBodies(t *testing.T) {
	o, _ := labOptions(t, nginx.ModeDynamic)
	blue := startApps(t, pool.Blue, "web-blue-1")
	startNginx(t, o)
	d, err := nginx.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(stepCtx(t), 5, blue); err != nil {
		t.Fatal(err)
	}
	admin := "http://" + o.AdminAddr + "/cycler/web"
	head := "cycler-backends 1\ngeneration 6\n"
	tests := []struct {
		name   string
		method string
		secret string
		body   string
		want   int
	}{
		{name: "no secret", method: http.MethodPut, body: head + "backend 127.0.0.1 80 x\n", want: 401},
		{name: "wrong secret", method: http.MethodPut, secret: "nope-nope-nope-nope", body: head + "backend 127.0.0.1 80 x\n", want: 401},
		{name: "wrong method", method: http.MethodDelete, secret: o.AdminSecret, want: 405},
		{name: "empty body", method: http.MethodPut, secret: o.AdminSecret, want: 400},
		{name: "empty set", method: http.MethodPut, secret: o.AdminSecret, body: head, want: 400},
		{name: "bad header", method: http.MethodPut, secret: o.AdminSecret, body: "cycler-backends 9\ngeneration 6\nbackend 127.0.0.1 80 x\n", want: 400},
		{name: "no trailing newline", method: http.MethodPut, secret: o.AdminSecret, body: head + "backend 127.0.0.1 80 x", want: 400},
		{name: "crlf", method: http.MethodPut, secret: o.AdminSecret, body: "cycler-backends 1\r\ngeneration 6\r\nbackend 127.0.0.1 80 x\r\n", want: 400},
		{name: "leading zero generation", method: http.MethodPut, secret: o.AdminSecret, body: "cycler-backends 1\ngeneration 07\nbackend 127.0.0.1 80 x\n", want: 400},
		{name: "port zero", method: http.MethodPut, secret: o.AdminSecret, body: head + "backend 127.0.0.1 0 x\n", want: 400},
		{name: "port too big", method: http.MethodPut, secret: o.AdminSecret, body: head + "backend 127.0.0.1 65536 x\n", want: 400},
		{name: "hostname", method: http.MethodPut, secret: o.AdminSecret, body: head + "backend cafe.babe 80 x\n", want: 400},
		{name: "octet too big", method: http.MethodPut, secret: o.AdminSecret, body: head + "backend 127.0.0.256 80 x\n", want: 400},
		{name: "injection", method: http.MethodPut, secret: o.AdminSecret, body: head + "backend 127.0.0.1 80 x; }\n", want: 400},
		{name: "stale generation", method: http.MethodPut, secret: o.AdminSecret, body: "cycler-backends 1\ngeneration 4\nbackend 127.0.0.1 80 x\n", want: 409},
		{name: "too many backends", method: http.MethodPut, secret: o.AdminSecret, body: head + strings.Repeat("backend 127.0.0.1 80 x\n", 5000), want: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(stepCtx(t), tt.method, admin, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.secret != "" {
				req.Header.Set("X-Cycler-Admin-Secret", tt.secret)
			}
			resp, err := freshClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d (%q), want %d", resp.StatusCode, msg, tt.want)
			}
		})
	}
	requireApplied(t, d, 5, blue)
	requireOnly(t, "http://"+o.Services[0].Listen+"/", 4, blue)
}

// TestDynamicIPv6Backend proves the balancer reaches an IPv6 backend (Lua
// must bracket the address for ngx.balancer).
func TestDynamicIPv6Backend(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this host: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Instance", "v6-app")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	o, _ := labOptions(t, nginx.ModeDynamic)
	startNginx(t, o)
	d, err := nginx.New(o)
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	set := []lbdrivers.Backend{{ID: "v6-app", Address: "::1", Port: port}}
	if err := d.Apply(stepCtx(t), 1, set); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, "http://"+o.Services[0].Listen+"/", 3, set)
	requireApplied(t, d, 1, set)
}

func TestReloadSwitch(t *testing.T) {
	o, logs := labOptions(t, nginx.ModeReload)
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	proc := startNginx(t, o)
	url := "http://" + o.Services[0].Listen + "/"
	d, err := nginx.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := instance(t, freshClient, url); status != http.StatusBadGateway {
		t.Fatalf("before any Apply: status %d, want 502", status)
	}
	requireApplied(t, d, 0, nil)

	if err := d.Apply(stepCtx(t), 1, blue); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 20, blue)
	requireApplied(t, d, 1, blue)

	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 20, green)
	requireApplied(t, d, 2, green)

	// Re-applying the same set does not reload: the workers stay.
	before := pids(t, proc)
	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	if lastChanged(t, logs) {
		t.Error("re-applying the same generation and set logged changed=true")
	}
	if after := pids(t, proc); !slices.Equal(before, after) {
		t.Fatalf("nginx pids changed on an idempotent Apply: %v -> %v", before, after)
	}

	// A set nginx refuses at `nginx -t` (a hostname it cannot resolve) keeps
	// the previous include and the previous set.
	include := filepath.Join(o.ConfigDir, "web.upstream.conf")
	good, err := os.ReadFile(include)
	if err != nil {
		t.Fatal(err)
	}
	bad := append(slices.Clone(green), lbdrivers.Backend{ID: "ghost", Address: "no-such-host.invalid", Port: 80})
	err = d.Apply(stepCtx(t), 3, bad)
	if err == nil || !strings.Contains(err.Error(), "host not found") {
		t.Fatalf("Apply of an unresolvable host: err %v, want nginx's \"host not found\"", err)
	}
	now, err := os.ReadFile(include)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(now, good) {
		t.Fatalf("include was not restored after the failed check:\n%s", now)
	}
	requireOnly(t, url, 10, green)
	requireApplied(t, d, 2, green)

	if err := d.Apply(stepCtx(t), 1, blue); !errors.Is(err, nginx.ErrStaleGeneration) {
		t.Fatalf("stale Apply: err %v, want ErrStaleGeneration", err)
	}
	if err := d.Apply(stepCtx(t), 3, nil); !errors.Is(err, nginx.ErrEmptySet) {
		t.Fatalf("empty Apply: err %v, want ErrEmptySet", err)
	}

	// A hand edit of the include is reported by Applied.
	edited := bytes.Replace(good, []byte("generation 2"), []byte("generation 9"), 1)
	if err := os.WriteFile(include, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Applied(stepCtx(t)); !errors.Is(err, nginx.ErrReadBack) {
		t.Fatalf("Applied with an edited include: err %v, want ErrReadBack", err)
	}
	// The next Apply repairs it.
	if err := d.Apply(context.Background(), 3, blue); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 20, blue)
	requireApplied(t, d, 3, blue)
}

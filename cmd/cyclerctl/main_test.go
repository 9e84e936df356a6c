package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
)

const testToken = "operator-token-0123456789"

// startAPI serves an api.Server on loopback with the routes given.
func startAPI(t *testing.T, routes func(s *api.Server)) string {
	t.Helper()
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", NodeName: "s1", Logger: zap.NewNop(),
		Tokens: []api.Token{{Name: "ops", Secret: testToken, Scopes: []api.Scope{api.ScopeOperator}}}})
	if err != nil {
		t.Fatal(err)
	}
	routes(srv)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv.Addr()
}

func ctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("CYCLER_ADDR", "")
	t.Setenv("CYCLER_TOKEN", "")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func TestVersionShowsClientAndServer(t *testing.T) {
	addr := startAPI(t, func(s *api.Server) {
		s.Handle("GET /v1/version", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
			return api.WriteJSON(w, 200, map[string]string{"version": "v9.9.9", "go_version": "go1.x", "node": "s1"})
		})
	})
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "version")
	if code != 0 || !strings.Contains(out, "client") || !strings.Contains(out, "v9.9.9") || !strings.Contains(out, "node s1") {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	out, _, code = ctl(t, "--addr", addr, "--token", testToken, "--json", "version")
	var v struct {
		Client map[string]string
		Server map[string]string
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Server["version"] != "v9.9.9" || v.Client["version"] == "" {
		t.Fatalf("--json version: code %d, %s", code, out)
	}
	// A bad token still prints the client version, but fails.
	out, errOut, code = ctl(t, "--addr", addr, "--token", "wrong-token-wrong-token", "version")
	if code == 0 || !strings.Contains(out, "client") || !strings.Contains(errOut, "unauthorized") {
		t.Fatalf("bad token: code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

func TestCallRetriesWhileNoLeader(t *testing.T) {
	var calls atomic.Int32
	addr := startAPI(t, func(s *api.Server) {
		s.Handle("GET /v1/services", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
			if calls.Add(1) < 3 {
				return api.Unavailable("no leader is elected right now")
			}
			return api.WriteJSON(w, 200, []any{})
		})
	})
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "status")
	if code != 0 || calls.Load() != 3 || !strings.Contains(out, "no services") {
		t.Fatalf("code %d after %d calls\nstdout: %s\nstderr: %s", code, calls.Load(), out, errOut)
	}
}

func TestErrorsAreClear(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unreachable", args: []string{"--addr", "127.0.0.1:1", "--token", testToken, "status"}, want: "cannot reach"},
		{name: "bad timeout", args: []string{"--timeout", "soon", "status"}, want: `--timeout "soon"`},
		{name: "freeze without reason", args: []string{"--addr", "127.0.0.1:1", "freeze"}, want: "accepts 1 arg"},
		{name: "unknown command", args: []string{"deploy-everything"}, want: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := ctl(t, tt.args...)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("code %d, stderr %q; want non-zero and %q", code, errOut, tt.want)
			}
		})
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	base := config{Listen: "127.0.0.1:0", Version: "v2", Instance: "web-blue-1", Pool: "blue"}
	failing := base
	failing.FailHealth = true
	failing.FailPath = "/checkout"
	tests := []struct {
		name       string
		give       config
		path       string
		wantStatus int
		wantBody   string
		wantHeader string // X-App-Instance
	}{
		{"root", base, "/", 200, `{"version":"v2","instance":"web-blue-1","pool":"blue"}` + "\n", "web-blue-1"},
		{"any path", base, "/some/page", 200, `{"version":"v2","instance":"web-blue-1","pool":"blue"}` + "\n", "web-blue-1"},
		{"health", base, "/health", 200, "ok\n", ""},
		{"fail health", failing, "/health", 500, "unhealthy (-fail-health)\n", ""},
		{"fail path", failing, "/checkout", 500, "broken release (-fail-path)\n", "web-blue-1"},
		{"other path still works", failing, "/", 200, `{"version":"v2","instance":"web-blue-1","pool":"blue"}` + "\n", "web-blue-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			handler(tt.give).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Fatalf("GET %s = %d %q, want %d %q", tt.path, rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
			if got := rec.Header().Get("X-App-Instance"); got != tt.wantHeader {
				t.Fatalf("X-App-Instance = %q, want %q", got, tt.wantHeader)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	env := map[string]string{
		"CYCLER_DEMO_LISTEN":      "127.0.0.1:9000",
		"CYCLER_DEMO_VERSION":     "v1",
		"CYCLER_DEMO_INSTANCE":    "from-env",
		"CYCLER_DEMO_POOL":        "green",
		"CYCLER_DEMO_FAIL_HEALTH": "true",
	}
	tests := []struct {
		name    string
		give    []string
		want    config
		wantErr string
	}{
		{"env only", nil, config{Listen: "127.0.0.1:9000", Version: "v1", Instance: "from-env", Pool: "green", FailHealth: true}, ""},
		{"flags win", []string{"-version", "v9", "-instance", "i", "-fail-health=false", "-fail-path", "/x"},
			config{Listen: "127.0.0.1:9000", Version: "v9", Instance: "i", Pool: "green", FailPath: "/x"}, ""},
		{"bad listen", []string{"-listen", "nope"}, config{}, `listen address "nope"`},
		{"bad fail path", []string{"-fail-path", "x"}, config{}, `fail path "x" must start with /`},
		{"stray args", []string{"extra"}, config{}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.give, func(k string) string { return env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseConfig = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestRunServesAndStops starts the real server on a free port and checks that
// cancelling the context shuts it down cleanly.
func TestRunServesAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a tiny race with other listeners; acceptable in a test
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-version", "v3", "-instance", "i1"}, func(string) string { return "" }, io.Discard)
	}()

	var got answer
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			derr := json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if derr != nil {
				t.Fatalf("GET / body is not JSON: %v", derr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("app never answered on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a readiness guess
	}
	if got != (answer{Version: "v3", Instance: "i1"}) {
		t.Fatalf("answer = %+v", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

package api_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
)

// serve runs s.Serve in the background and returns a stop function that
// cancels it and returns Serve's result. Cleanup stops it too.
func serve(t *testing.T, s *api.Server) (stop func() error) {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var (
		once   sync.Once
		result error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(time.Minute):
				result = errors.New("Serve did not return within a minute of cancel")
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return stop
}

// newClient returns a client for addr with the operator token, closed at
// cleanup.
func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitRefused waits until nothing accepts connections at addr.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	s, _ := newTestServer(t, nil)
	if got := s.Addr(); got != "" {
		t.Errorf("Addr before Listen = %q, want empty", got)
	}
	stop := serve(t, s)
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr = %q, want the bound 127.0.0.1 port", addr)
	}
	c := newClient(t, client.Config{Addr: addr, Token: opSecret})
	var out map[string]string
	if err := c.Do(context.Background(), "GET", "/v1/op", nil, &out); err != nil {
		t.Fatalf("GET /v1/op: %v", err)
	}
	if out["caller"] != "ops" {
		t.Errorf("caller = %q, want ops", out["caller"])
	}
	c.Close()

	if err := stop(); err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Serve returned", addr)
	}
}

func TestShutdownWaitsForInFlightRequest(t *testing.T) {
	s, _ := newTestServer(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	s.Handle("GET /v1/block", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
		close(entered)
		<-release
		return api.WriteJSON(w, http.StatusOK, map[string]string{"done": "yes"})
	})
	stop := serve(t, s)
	addr := s.Addr()
	c := newClient(t, client.Config{Addr: addr, Token: opSecret})

	reqDone := make(chan error, 1)
	go func() { reqDone <- c.Do(context.Background(), "GET", "/v1/block", nil, nil) }()
	<-entered
	stopDone := make(chan error, 1)
	go func() { stopDone <- stop() }()
	// Shutdown closes the listener first; once it has, the request is
	// the only thing keeping Serve alive.
	waitRefused(t, addr)
	select {
	case err := <-stopDone:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if err := <-reqDone; err != nil {
		t.Errorf("in-flight request: %v, want success", err)
	}
	if err := <-stopDone; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

func TestStreamCancelledOnShutdown(t *testing.T) {
	// A long shutdown timeout: if the stream were not cancelled, Serve
	// would only return after it, with an error.
	s, _ := newTestServer(t, func(c *api.Config) { c.ShutdownTimeout = 20 * time.Second })
	s.HandleStream("GET /v1/follow", api.ScopeOperator, 1<<20, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/plain")
		if _, err := io.WriteString(w, "event 1\n"); err != nil {
			return err
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			return err
		}
		<-r.Context().Done()
		return nil
	})
	stop := serve(t, s)
	c := newClient(t, client.Config{Addr: s.Addr(), Token: opSecret})
	resp, err := c.DoRaw(context.Background(), "GET", "/v1/follow", nil, "")
	if err != nil {
		t.Fatalf("DoRaw: %v", err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event 1\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve = %v, want nil (stream should end when shutdown starts)", err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("reading the rest of the stream: %v", err)
	}
}

func TestWithoutTimeoutsLiftsWriteDeadline(t *testing.T) {
	// A 1ns write timeout has always expired by the time a handler writes,
	// so only a route that clears the deadline can answer at all.
	s, _ := newTestServer(t, func(c *api.Config) { c.WriteTimeout = time.Nanosecond })
	s.HandleStream("GET /v1/stream", api.ScopeOperator, 1<<20, func(w http.ResponseWriter, _ *http.Request) error {
		return api.WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})
	serve(t, s)

	tests := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"normal route hits the write timeout", "/v1/op", true},
		{"stream route has no write timeout", "/v1/stream", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, client.Config{Addr: s.Addr(), Token: opSecret})
			err := c.Do(context.Background(), "GET", tt.path, nil, nil)
			if (err != nil) != tt.wantErr {
				t.Errorf("GET %s error = %v, want error %v", tt.path, err, tt.wantErr)
			}
		})
	}
}

func TestServeErrors(t *testing.T) {
	first, _ := newTestServer(t, nil)
	stop := serve(t, first)

	second, _ := newTestServer(t, func(c *api.Config) { c.Addr = first.Addr() })
	err := second.Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("Serve on a busy port = %v, want a listen error", err)
	}

	if err := stop(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	err = first.Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "already served") {
		t.Errorf("second Serve = %v, want an already served error", err)
	}
}

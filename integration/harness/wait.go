package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Poll intervals for WaitFor: start short so fast components are seen at once, and
// back off a little so slow ones (Consul's leader election) are not hammered.
const (
	pollMin = 20 * time.Millisecond
	pollMax = 250 * time.Millisecond
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it binds
// 127.0.0.1:0, reads the port the kernel chose and closes the listener. It never
// returns the same port twice in one process: the kernel may hand a just-closed
// port out again at once, and two components of one test (Consul's HTTP and
// server ports, say) must not be given the same one. Another process can still
// take the port before the caller binds it; a component that loses that race
// fails to start with "address already in use" in its log.
func FreePort(t T) int {
	t.Helper()
	for range 1000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fatalf(t, "harness: find a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			fatalf(t, "harness: release port %d: %v", port, err)
		}
		portsMu.Lock()
		fresh := !portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if fresh {
			return port
		}
	}
	fatalf(t, "harness: the kernel kept returning ports this process already used")
	return 0
}

// portsGiven holds every port FreePort has returned in this process.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// WaitFor calls fn until it returns nil or ctx ends, sleeping a short, growing
// interval between calls. ctx carries the deadline. On timeout the error names what
// was awaited and includes fn's last error.
func WaitFor(ctx context.Context, what string, fn func() error) error {
	start := time.Now()
	interval := pollMin
	var last error
	for {
		if last = fn(); last == nil {
			return nil
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("wait for %s: gave up after %s: %w (last error: %v)",
				what, time.Since(start).Round(time.Millisecond), ctx.Err(), last)
		case <-timer.C:
		}
		interval = min(interval*2, pollMax)
	}
}

// probeClient is used for readiness polls only. It never reuses connections, so a
// poll always proves that a new connection is accepted, and it skips certificate
// checks because it talks to loopback processes the harness started itself.
var probeClient = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // readiness probe of our own loopback child
	},
}

// httpGet GETs url and returns the status and up to 64 KiB of the body.
func httpGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("read body of %s: %w", url, err)
	}
	return resp.StatusCode, string(b), nil
}

// wantStatus returns a readiness check that passes when GET url answers want
// (or any status, when want is 0).
func wantStatus(url string, want int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		code, body, err := httpGet(ctx, url)
		if err != nil {
			return err
		}
		if want != 0 && code != want {
			return fmt.Errorf("GET %s: status %d, want %d (body %.200q)", url, code, want, body)
		}
		return nil
	}
}

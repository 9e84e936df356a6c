package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/cyclerhq/cycler/pkgfile"
)

// probeTimeout bounds one health probe.
const probeTimeout = 2 * time.Second

// healthCheck is how the app's health is judged, locally by the agent and
// by Consul: an HTTP GET of a path answering 2xx, or a TCP connect.
type healthCheck struct {
	// addr is the app's "host:port".
	addr string
	// path is the HTTP path; "" means a TCP check.
	path string
}

// healthFor builds the check a manifest asks for. Without a health block
// the app is checked with a TCP connect to its port.
func healthFor(m pkgfile.Manifest, addr string) healthCheck {
	hc := healthCheck{addr: addr}
	if m.Health != nil && !m.Health.TCP && m.Health.HTTPPath != "" {
		hc.path = m.Health.HTTPPath
	}
	return hc
}

// url is the HTTP check's URL.
func (h healthCheck) url() string { return "http://" + h.addr + h.path }

// String describes the check for messages.
func (h healthCheck) String() string {
	if h.path == "" {
		return "TCP connect to " + h.addr
	}
	return "GET " + h.url()
}

// probeClient never reuses connections: each probe proves that a new
// connection is accepted.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// probe runs the check once.
func (h healthCheck) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if h.path == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", h.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", h, err)
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url(), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: status %d, want 2xx", h, resp.StatusCode)
	}
	return nil
}

// errAppExited marks a health wait cut short because the app died.
var errAppExited = errors.New("the app exited")

// waitHealthy probes until the check passes, timeout passes, or exited
// closes (a nil exited never closes). Probes start every 100 ms and back
// off to 1 s.
func (h healthCheck) waitHealthy(ctx context.Context, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	var last error
	for {
		if last = h.probe(ctx); last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w before it became healthy (last probe: %v); see app.log in the data dir", errAppExited, last)
		case <-ctx.Done():
			return fmt.Errorf("the app did not become healthy within %s (last probe: %v); see app.log in the data dir", timeout, last)
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

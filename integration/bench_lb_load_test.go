//go:build integration && linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
)

// The background load of TestBenchLBSwitch: two clients at about the same
// rate, each over lbLoadConns keepalive connections, neither retrying.
const (
	lbLoadConns   = 8
	lbLoadTimeout = 5 * time.Second // one request, connect to last body byte
)

// lbLoadStats is what the Go load client counts over one row.
type lbLoadStats struct {
	Seconds float64 `json:"seconds"`
	// Requests were sent (written to a connection), or failed to connect.
	Requests int     `json:"requests"`
	Rate     float64 `json:"rate_per_sec"`
	OK       int     `json:"ok_2xx"`
	Non2xx   int     `json:"non_2xx"`
	// Connect, Write, Read and Timeout are socket errors. Read counts a
	// request written to a connection that the LB closed or reset before
	// answering it.
	Connect int `json:"connect_errors"`
	Write   int `json:"write_errors"`
	Read    int `json:"read_errors"`
	Timeout int `json:"timeouts"`
	// Failed is every request that did not get a 2xx: Non2xx plus the
	// socket errors.
	Failed int `json:"failed"`
	// IdleClosed counts keepalive connections found closed by the LB while
	// idle, before a request was written on them (the client reconnects, as
	// every HTTP client does, and nothing is lost). A reload closes them.
	IdleClosed int `json:"idle_keepalive_closed"`
	// ClosedAfter counts responses that asked to close the connection
	// ("Connection: close", an nginx worker shutting down).
	ClosedAfter int `json:"closed_after_response"`
	// Missed counts send slots skipped because the client fell behind.
	Missed       int     `json:"missed_slots"`
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	LatencyMaxMS float64 `json:"latency_max_ms"`
	// failures are the times of the failed requests, for attribution to
	// flips.
	failures []time.Time
}

// lbLoadRun is a running Go load client.
type lbLoadRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time

	mu  sync.Mutex // guards st and lat
	st  lbLoadStats
	lat []float64
}

// startLBLoad sends GET / to addr (host:port) at rate requests per second in
// total, spread over lbLoadConns keepalive connections, each sending on a
// fixed schedule (an open-loop client: a slow answer does not slow the
// schedule, it skips slots). A failed request is counted and never sent
// again.
func startLBLoad(ctx context.Context, addr string, rate float64) *lbLoadRun {
	ctx, cancel := context.WithCancel(ctx)
	l := &lbLoadRun{cancel: cancel, start: time.Now()}
	interval := time.Duration(float64(lbLoadConns) / rate * float64(time.Second))
	for i := range lbLoadConns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.worker(ctx, addr, interval, l.start.Add(interval*time.Duration(i)/lbLoadConns))
		}()
	}
	return l
}

// worker is one keepalive connection's schedule.
func (l *lbLoadRun) worker(ctx context.Context, addr string, interval time.Duration, next time.Time) {
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: cycler-bench\r\n\r\n")
	var conn net.Conn
	var br *bufio.Reader
	closeConn := func() {
		if conn != nil {
			_ = conn.Close()
			conn = nil
		}
	}
	defer closeConn()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if conn != nil && closedByPeer(conn) {
			closeConn()
			l.count(func(s *lbLoadStats) { s.IdleClosed++ })
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, lbLoadTimeout)
			if err != nil {
				l.fail(func(s *lbLoadStats) { s.Connect++ })
			} else {
				conn, br = c, bufio.NewReader(c)
			}
		}
		if conn != nil && !l.request(conn, br, req) {
			closeConn()
		}
		next = next.Add(interval)
		if behind := time.Since(next); behind > interval {
			skipped := int(behind / interval)
			next = next.Add(time.Duration(skipped) * interval)
			l.count(func(s *lbLoadStats) { s.Missed += skipped })
		}
	}
}

// request sends one request on conn and reads the answer. It returns false
// when the connection must not be used again.
func (l *lbLoadRun) request(conn net.Conn, br *bufio.Reader, req []byte) bool {
	sent := time.Now()
	_ = conn.SetDeadline(sent.Add(lbLoadTimeout))
	if _, err := conn.Write(req); err != nil {
		l.fail(func(s *lbLoadStats) { s.Write++ })
		return false
	}
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		l.fail(func(s *lbLoadStats) { s.Timeout++ })
		return false
	case err != nil:
		l.fail(func(s *lbLoadStats) { s.Read++ })
		return false
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		l.fail(func(s *lbLoadStats) { s.Non2xx++ })
	default:
		took := ms(time.Since(sent))
		l.count(func(s *lbLoadStats) { s.OK++ })
		l.mu.Lock()
		l.lat = append(l.lat, took)
		l.mu.Unlock()
	}
	if resp.Close {
		l.count(func(s *lbLoadStats) { s.ClosedAfter++ })
		return false
	}
	return true
}

func (l *lbLoadRun) count(f func(*lbLoadStats)) {
	l.mu.Lock()
	f(&l.st)
	l.mu.Unlock()
}

// fail counts a failed request and records when it failed.
func (l *lbLoadRun) fail(f func(*lbLoadStats)) {
	now := time.Now()
	l.mu.Lock()
	f(&l.st)
	l.st.failures = append(l.st.failures, now)
	l.mu.Unlock()
}

// stop ends the run and returns its counts.
func (l *lbLoadRun) stop() lbLoadStats {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.Seconds = round2(time.Since(l.start).Seconds())
	s.Failed = s.Non2xx + s.Connect + s.Write + s.Read + s.Timeout
	s.Requests = s.OK + s.Failed
	s.Rate = round2(float64(s.Requests) / s.Seconds)
	if len(l.lat) > 0 {
		lat := slices.Sorted(slices.Values(l.lat))
		s.LatencyP50MS, s.LatencyP99MS, s.LatencyMaxMS = percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
	}
	return s
}

// closedByPeer reports whether the LB has closed (or reset) an idle
// keepalive connection: a non-blocking MSG_PEEK reads end-of-file or an
// error. Clients such as Go's http.Transport and browsers make the same
// check (by reading the idle connection) before reusing it.
func closedByPeer(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	buf := make([]byte, 1)
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: open and idle. Anything else is the end: 0 bytes is
		// end of file, an error a reset, and bytes the LB sent unasked
		// (a connection out of step, dropped too).
		closed = !errors.Is(rerr, syscall.EAGAIN)
		return true
	})
	return err != nil || closed
}

// wrkStats is what the wrk run reports (its summary and the Lua counter).
type wrkStats struct {
	Requests int     `json:"requests"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate_per_sec"`
	// Non2xx is counted by the Lua response() hook; StatusErrors is
	// wrk's own count of statuses above 399.
	Non2xx       int `json:"non_2xx"`
	StatusErrors int `json:"status_errors"`
	Connect      int `json:"connect_errors"`
	Read         int `json:"read_errors"`
	Write        int `json:"write_errors"`
	Timeout      int `json:"timeouts"`
	Failed       int `json:"failed"`
}

// add adds the counts of one wrk run to s (the rate is left to the caller).
func (s *wrkStats) add(o wrkStats) {
	s.Requests += o.Requests
	s.Seconds = round2(s.Seconds + o.Seconds)
	s.Non2xx += o.Non2xx
	s.StatusErrors += o.StatusErrors
	s.Connect += o.Connect
	s.Read += o.Read
	s.Write += o.Write
	s.Timeout += o.Timeout
	s.Failed += o.Failed
}

// wrkScript paces each connection (delay() is wrk's per-request pause in
// milliseconds), counts answers outside 2xx per thread, and prints one JSON
// line when wrk ends.
const wrkScript = `-- Written by TestBenchLBSwitch.
local pause = tonumber(os.getenv("CYCLER_WRK_DELAY_MS"))
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function delay()
  return pause
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format('CYCLER_WRK {"requests":%d,"duration_us":%d,"non2xx":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, n, e.status, e.connect, e.read, e.write, e.timeout))
end
`

// wrkRun is a running wrk.
type wrkRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{} // closed when wrk has exited; err is set then
	err    error
}

// startWrk runs `wrk -t1 -c8` against url (for at most an hour) with the
// pacing script: each connection pauses delayMS between an answer and its
// next request. stop ends it with SIGINT, on which wrk prints its summary.
func startWrk(t *testing.T, bin, url string, delayMS int) *wrkRun {
	t.Helper()
	return startWrkScript(t, bin, url, lbLoadConns, delayMS, wrkScript)
}

// startWrkScript is startWrk with conns connections and another Lua
// script, which must read CYCLER_WRK_DELAY_MS and print the CYCLER_WRK
// line wrkScript prints (it may add keys to it).
func startWrkScript(t *testing.T, bin, url string, conns, delayMS int, lua string) *wrkRun {
	t.Helper()
	script := filepath.Join(t.TempDir(), "pace.lua")
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		harness.Fatal(t, err)
	}
	w := &wrkRun{exited: make(chan struct{})}
	w.cmd = exec.Command(bin, "-t1", fmt.Sprintf("-c%d", conns), "-d3600s", "--timeout", "5s", "-s", script, url)
	w.cmd.Env = append(os.Environ(), fmt.Sprintf("CYCLER_WRK_DELAY_MS=%d", delayMS))
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		harness.Fatalf(t, "start wrk: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() { // a run the test did not stop (it failed first)
		select {
		case <-w.exited:
		default:
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
	})
	return w
}

// stop interrupts wrk and parses its report.
func (w *wrkRun) stop(t *testing.T) wrkStats {
	t.Helper()
	if err := w.cmd.Process.Signal(os.Interrupt); err != nil {
		<-w.exited
		harness.Fatalf(t, "interrupt wrk: %v (wrk: %v)\n%s", err, w.err, w.out.String())
	}
	select {
	case <-w.exited:
		if w.err != nil {
			harness.Fatalf(t, "wrk: %v\n%s", w.err, w.out.String())
		}
	case <-time.After(30 * time.Second):
		harness.Fatalf(t, "wrk did not stop 30s after SIGINT:\n%s", w.out.String())
	}
	_, line, ok := strings.Cut(w.out.String(), "CYCLER_WRK ")
	line, _, _ = strings.Cut(line, "\n")
	var r struct {
		Requests   int `json:"requests"`
		DurationUS int `json:"duration_us"`
		Non2xx     int `json:"non2xx"`
		Status     int `json:"status"`
		Connect    int `json:"connect"`
		Read       int `json:"read"`
		Write      int `json:"write"`
		Timeout    int `json:"timeout"`
	}
	if !ok || json.Unmarshal([]byte(line), &r) != nil || r.DurationUS == 0 {
		harness.Fatalf(t, "wrk printed no report line:\n%s", w.out.String())
	}
	s := wrkStats{
		Requests: r.Requests, Seconds: round2(float64(r.DurationUS) / 1e6), Non2xx: r.Non2xx, StatusErrors: r.Status,
		Connect: r.Connect, Read: r.Read, Write: r.Write, Timeout: r.Timeout,
	}
	s.Rate = round2(float64(s.Requests) / s.Seconds)
	s.Failed = s.Non2xx + s.Connect + s.Read + s.Write + s.Timeout
	return s
}

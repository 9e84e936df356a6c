package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// maxInFlight bounds the requests in flight per LB; a tick that finds them all
// busy is counted as skipped (the client, not the LB, could not keep up).
const maxInFlight = 16

// sample is one request through one LB.
type sample struct {
	// At is when the request was sent, since the load started.
	At time.Duration
	// LB indexes target.
	LB int
	// Version and Instance are what the app answered; empty on error.
	Version, Instance string
	// Err says why the request failed; empty on success.
	Err string
	// Latency is the time to the whole answer.
	Latency time.Duration
}

// target is one LB the load goes through.
type target struct {
	// name is the LB's id, kind what it is ("nginx, dynamic mode"), url its
	// public URL.
	name, kind, url string
}

// load sends GET / through each target at a steady rate on keep-alive
// connections, without retries, and records every answer.
type load struct {
	targets []target
	rate    int
	start   time.Time

	mu      sync.Mutex // guards samples and skipped; request goroutines append
	samples []sample
	skipped []int

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLoad starts rate requests per second through each target until stop.
func startLoad(targets []target, rate int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{targets: targets, rate: rate, start: time.Now(), cancel: cancel, skipped: make([]int, len(targets))}
	for i, tg := range targets {
		// One transport per LB, so each has its own keep-alive pool. Idle
		// connections are closed by the client after 2s, before nginx (75s) or
		// varnish (5s) would close them: a connection the LB closes while
		// idle can make Go's transport retry a request, which the load
		// counts as a failure (see do).
		tr := &http.Transport{MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: 2 * time.Second, DisableCompression: true}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			l.run(ctx, i, tg, hc)
		}()
	}
	return l
}

func (l *load) run(ctx context.Context, i int, tg target, hc *http.Client) {
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	defer tick.Stop()
	sem := make(chan struct{}, maxInFlight)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			l.mu.Lock()
			l.skipped[i]++
			l.mu.Unlock()
			continue
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			s := l.do(tg, hc)
			s.LB = i
			l.mu.Lock()
			l.samples = append(l.samples, s)
			l.mu.Unlock()
		}()
	}
}

// do sends one request. The load's own context is not used, so stopping the
// load lets requests in flight finish instead of counting them as failures.
func (l *load) do(tg target, hc *http.Client) sample {
	sent := time.Now()
	s := sample{At: sent.Sub(l.start)}
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, tg.url+"/", nil)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	resp, err := hc.Do(req)
	if err != nil {
		s.Err = err.Error()
		s.Latency = time.Since(sent)
		return s
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	s.Latency = time.Since(sent)
	var a struct{ Version, Instance string }
	switch {
	case err != nil:
		s.Err = "reading the answer: " + err.Error()
	case resp.StatusCode != http.StatusOK:
		s.Err = fmt.Sprintf("status %d", resp.StatusCode)
	case json.Unmarshal(body, &a) != nil || a.Version == "":
		s.Err = fmt.Sprintf("answer is not the demo app's JSON: %.80q", body)
	case conns > 1:
		// Go's transport re-sends an idempotent request when a reused
		// connection breaks before the answer; that would hide an LB that
		// drops keep-alive connections, so it counts as failed.
		s.Err = fmt.Sprintf("a keep-alive connection broke before the answer (Go's transport retried on %d connections)", conns)
	default:
		s.Version, s.Instance = a.Version, a.Instance
	}
	return s
}

// stop ends the load, waits for the requests in flight and returns every
// sample (in no particular order), the requests skipped per target, and how
// long the load ran.
func (l *load) stop() ([]sample, []int, time.Duration) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.samples, l.skipped, time.Since(l.start)
}

// since returns how long after the load's start t was.
func (l *load) since(t time.Time) time.Duration { return t.Sub(l.start) }

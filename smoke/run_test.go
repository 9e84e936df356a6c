package smoke_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cyclerhq/cycler/smoke"
)

// fast is a backoff short enough for tests.
var fast = smoke.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}

// failFirst answers 500 to the first n requests and 200 after, counting
// every request.
func failFirst(n int32, count *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) <= n {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		failFirst    int32
		retries      int
		wantPassed   bool
		wantAttempts int
		wantReason   smoke.Reason
	}{
		{name: "passes first time", failFirst: 0, retries: 3, wantPassed: true, wantAttempts: 1},
		{name: "fails twice then passes", failFirst: 2, retries: 3, wantPassed: true, wantAttempts: 3},
		{name: "passes on the last retry", failFirst: 2, retries: 2, wantPassed: true, wantAttempts: 3},
		{name: "retries exhausted", failFirst: 3, retries: 2, wantAttempts: 3, wantReason: smoke.ReasonStatus},
		{name: "no retries", failFirst: 1, retries: 0, wantAttempts: 1, wantReason: smoke.ReasonStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var count atomic.Int32
			target, _ := startServer(t, failFirst(tt.failFirst, &count))
			c := smoke.Check{Name: "h", Kind: smoke.KindHTTP, Retries: tt.retries, Backoff: fast, HTTP: smoke.HTTPSpec{Path: "/"}}
			got := only(t, newRunner(t).Run(context.Background(), target, []smoke.Check{c}))
			if got.Passed != tt.wantPassed || got.Attempts != tt.wantAttempts || got.Reason != tt.wantReason {
				t.Errorf("got passed=%v attempts=%d reason=%q, want %v %d %q (error %q)",
					got.Passed, got.Attempts, got.Reason, tt.wantPassed, tt.wantAttempts, tt.wantReason, got.Error)
			}
			if int(count.Load()) != tt.wantAttempts {
				t.Errorf("server saw %d requests, want %d", count.Load(), tt.wantAttempts)
			}
		})
	}
}

func TestTimeoutPerAttempt(t *testing.T) {
	var count atomic.Int32
	target, base := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		<-r.Context().Done() // never answers; the client gives up
	}))
	c := smoke.Check{Name: "slow", Kind: smoke.KindHTTP, Timeout: 100 * time.Millisecond, Retries: 1, Backoff: fast,
		HTTP: smoke.HTTPSpec{Path: "/slow"}}
	got := only(t, newRunner(t).Run(context.Background(), target, []smoke.Check{c}))
	want := "GET " + base + "/slow: no result within the 100ms timeout"
	if got.Passed || got.Reason != smoke.ReasonTimeout || got.Attempts != 2 || got.Error != want {
		t.Errorf("got passed=%v reason=%q attempts=%d error=%q\nwant reason=%q attempts=2 error=%q",
			got.Passed, got.Reason, got.Attempts, got.Error, smoke.ReasonTimeout, want)
	}
	// An attempt may time out before its request reaches the handler, so
	// only an upper bound holds.
	if count.Load() > 2 {
		t.Errorf("server saw %d requests, want at most 2", count.Load())
	}
}

func TestCancelStopsRetries(t *testing.T) {
	tests := []struct {
		name          string
		cancelInReply bool   // the handler cancels while the first attempt is in flight
		cancelOnLog   string // cancel when the runner logs this message
		wantErr       string
	}{
		{name: "during an attempt", cancelInReply: true, wantErr: "stopped after 1 attempt(s): context canceled"},
		{name: "during backoff", cancelOnLog: "check attempt failed",
			wantErr: "stopped after 1 attempt(s): context canceled; last error: GET {url}/: status 503, want 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			var count atomic.Int32
			target, base := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				count.Add(1)
				if tt.cancelInReply {
					cancel()
				}
				http.Error(w, "down", http.StatusServiceUnavailable)
			}))
			// The hook runs as the entry is logged, so the second case cancels
			// after the failed attempt is recorded and before the backoff.
			hook := zap.Hooks(func(e zapcore.Entry) error {
				if e.Message == tt.cancelOnLog {
					cancel()
				}
				return nil
			})
			r := smoke.New(zaptest.NewLogger(t, zaptest.WrapOptions(hook)), nil)
			// An hour of backoff: only cancellation can end the wait.
			c := smoke.Check{Name: "h", Kind: smoke.KindHTTP, Retries: 10, Backoff: smoke.Backoff{Initial: time.Hour},
				HTTP: smoke.HTTPSpec{Path: "/"}}
			got := only(t, runWithin(t, func() smoke.Result { return r.Run(ctx, target, []smoke.Check{c}) }))
			want := strings.ReplaceAll(tt.wantErr, "{url}", base)
			if got.Passed || got.Reason != smoke.ReasonCanceled || got.Attempts != 1 || count.Load() != 1 || !strings.HasPrefix(got.Error, want) {
				t.Errorf("got passed=%v reason=%q attempts=%d requests=%d error=%q\nwant reason=%q attempts=1 requests=1 error starting %q",
					got.Passed, got.Reason, got.Attempts, count.Load(), got.Error, smoke.ReasonCanceled, want)
			}
		})
	}
}

// runWithin calls run and returns its result, failing the test if it has
// not returned within a generous deadline (a run that ignores cancellation
// would otherwise hang the test binary).
func runWithin(t *testing.T, run func() smoke.Result) smoke.Result {
	t.Helper()
	done := make(chan smoke.Result, 1)
	go func() { done <- run() }()
	select {
	case res := <-done:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
		return smoke.Result{}
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var count atomic.Int32
	target, _ := startServer(t, failFirst(0, &count))
	checks := []smoke.Check{
		{Name: "a", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/"}},
		{Name: "b", Kind: smoke.KindTCP},
	}
	res := newRunner(t).Run(ctx, target, checks)
	want := []smoke.CheckResult{
		{Name: "a", Kind: smoke.KindHTTP, Reason: smoke.ReasonCanceled, Error: "stopped after 0 attempt(s): context canceled"},
		{Name: "b", Kind: smoke.KindTCP, Reason: smoke.ReasonCanceled, Error: "stopped after 0 attempt(s): context canceled"},
	}
	for i := range res.Checks {
		res.Checks[i].DurationMS = 0
	}
	if res.Passed || !reflect.DeepEqual(res.Checks, want) || count.Load() != 0 {
		t.Errorf("got %+v (requests %d)\nwant %+v, no requests", res, count.Load(), want)
	}
}

func TestRunInvalid(t *testing.T) {
	tcpAddr := startTCP(t)
	good := smoke.Check{Name: "port", Kind: smoke.KindTCP}
	bad := smoke.Check{Name: "bad", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "health"}}
	tests := []struct {
		name       string
		target     smoke.Target
		wantPassed []bool
		wantReason []smoke.Reason
		wantErr    []string
	}{
		{name: "invalid check fails, others run", target: targetAt(t, tcpAddr),
			wantPassed: []bool{true, false}, wantReason: []smoke.Reason{"", smoke.ReasonInvalid},
			wantErr: []string{"", `check "bad" is invalid: http path "health" must start with a single "/"`}},
		{name: "empty host", target: smoke.Target{Port: 80},
			wantPassed: []bool{false, false}, wantReason: []smoke.Reason{smoke.ReasonInvalid, smoke.ReasonInvalid},
			wantErr: []string{"target host is empty", "target host is empty"}},
		{name: "bad port", target: smoke.Target{Host: "10.0.0.1", Port: 0},
			wantPassed: []bool{false, false}, wantReason: []smoke.Reason{smoke.ReasonInvalid, smoke.ReasonInvalid},
			wantErr: []string{"target 10.0.0.1 port 0 is out of range 1-65535", "target 10.0.0.1 port 0 is out of range 1-65535"}},
		{name: "bad scheme", target: smoke.Target{Host: "10.0.0.1", Port: 80, Scheme: "ftp"},
			wantPassed: []bool{false, false}, wantReason: []smoke.Reason{smoke.ReasonInvalid, smoke.ReasonInvalid},
			wantErr: []string{`scheme "ftp" is not valid; use http or https`, `scheme "ftp" is not valid`}},
	}
	r := newRunner(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := r.Run(context.Background(), tt.target, []smoke.Check{good, bad})
			if res.Passed || len(res.Checks) != 2 {
				t.Fatalf("got %+v, want two results and an overall failure", res)
			}
			for i, got := range res.Checks {
				if got.Passed != tt.wantPassed[i] || got.Reason != tt.wantReason[i] || !strings.Contains(got.Error, tt.wantErr[i]) {
					t.Errorf("check %d: got passed=%v reason=%q error=%q, want %v %q containing %q",
						i, got.Passed, got.Reason, got.Error, tt.wantPassed[i], tt.wantReason[i], tt.wantErr[i])
				}
			}
		})
	}
}

func TestRunNoChecksPasses(t *testing.T) {
	res := newRunner(t).Run(context.Background(), smoke.Target{Host: "127.0.0.1", Port: 1}, nil)
	if !res.Passed || res.Checks == nil || len(res.Checks) != 0 {
		t.Errorf("got %+v, want a pass with an empty, non-nil check list", res)
	}
}

// barrier is a handler that holds each request until need requests are
// inside at once (or every expected request has arrived), and records the
// most requests it ever saw at once. Reaching need proves the runner uses
// its parallelism; the linger after release gives any request beyond the
// bound time to arrive and show up in peak. Correct runs pass however long
// the linger is; only the power to catch an unbounded runner depends on it.
type barrier struct {
	need, total int
	linger      time.Duration
	cur         atomic.Int32

	mu      sync.Mutex
	started int
	peak    int32
	gate    chan struct{}
}

func newBarrier(need, total int) *barrier {
	return &barrier{need: need, total: total, linger: 50 * time.Millisecond, gate: make(chan struct{})}
}

func (b *barrier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.started++
	n := b.cur.Add(1)
	b.peak = max(b.peak, n)
	gate := b.gate
	if int(n) >= b.need || b.started == b.total {
		close(b.gate) // release this request and everyone waiting
		b.gate = make(chan struct{})
	}
	b.mu.Unlock()
	select {
	case <-gate:
	case <-r.Context().Done():
	}
	linger := time.NewTimer(b.linger)
	defer linger.Stop()
	select {
	case <-linger.C:
	case <-r.Context().Done():
	}
	b.cur.Add(-1)
}

func TestRunAllBoundedParallelism(t *testing.T) {
	tests := []struct {
		name     string
		targets  int
		parallel int
		wantPeak int
	}{
		{name: "two at a time", targets: 5, parallel: 2, wantPeak: 2},
		{name: "three at a time", targets: 7, parallel: 3, wantPeak: 3},
		{name: "one at a time", targets: 3, parallel: 1, wantPeak: 1},
		{name: "zero means one", targets: 3, parallel: 0, wantPeak: 1},
		{name: "more workers than targets", targets: 3, parallel: 10, wantPeak: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBarrier(tt.wantPeak, tt.targets)
			base, _ := startServer(t, b)
			targets := make([]smoke.Target, tt.targets)
			for i := range targets {
				targets[i] = base
				targets[i].InstanceID = "web-" + string(rune('a'+i))
			}
			// The timeout only bounds a broken run; a correct one never waits that long.
			checks := []smoke.Check{{Name: "h", Kind: smoke.KindHTTP, Timeout: 10 * time.Second, HTTP: smoke.HTTPSpec{Path: "/"}}}
			got := newRunner(t).RunAll(context.Background(), targets, checks, tt.parallel)
			if len(got) != len(targets) {
				t.Fatalf("got %d results, want %d", len(got), len(targets))
			}
			for i, hr := range got {
				if hr.Target != targets[i] || !hr.Passed {
					t.Errorf("result %d: target %+v passed=%v (%+v), want target %+v passed", i, hr.Target, hr.Passed, hr.Checks, targets[i])
				}
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if int(b.peak) != tt.wantPeak || b.started != tt.targets {
				t.Errorf("peak concurrency %d over %d requests, want %d over %d", b.peak, b.started, tt.wantPeak, tt.targets)
			}
		})
	}
}

func TestRunAllCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	targets := []smoke.Target{{Host: "127.0.0.1", Port: 1}, {Host: "127.0.0.1", Port: 2}}
	got := newRunner(t).RunAll(ctx, targets, []smoke.Check{{Name: "p", Kind: smoke.KindTCP}}, 2)
	for i, hr := range got {
		if hr.Passed || len(hr.Checks) != 1 || hr.Checks[0].Reason != smoke.ReasonCanceled || hr.Checks[0].Attempts != 0 {
			t.Errorf("result %d = %+v, want one check cancelled before any attempt", i, hr)
		}
	}
	if len(smoke.New(nil, nil).RunAll(context.Background(), nil, nil, 4)) != 0 {
		t.Error("RunAll with no targets returned results")
	}
}

func TestResultJSON(t *testing.T) {
	give := smoke.HostResult{
		Target: smoke.Target{Host: "10.0.0.1", Port: 8080, Version: "1.2.3", InstanceID: "web-1"},
		Result: smoke.Result{DurationMS: 1500, Checks: []smoke.CheckResult{
			{Name: "health", Kind: smoke.KindHTTP, Attempts: 3, DurationMS: 1200, Reason: smoke.ReasonStatus,
				Error: "GET http://10.0.0.1:8080/health: status 500, want 200"},
			{Name: "script", Kind: smoke.KindCommand, Passed: true, Attempts: 1, DurationMS: 300, Output: "ok\n"},
		}},
	}
	b, err := json.Marshal(give)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"target":{"host":"10.0.0.1","port":8080,"version":"1.2.3","instance_id":"web-1"},` +
		`"passed":false,"duration_ms":1500,"checks":[` +
		`{"name":"health","kind":"http","passed":false,"attempts":3,"duration_ms":1200,"reason":"status","error":"GET http://10.0.0.1:8080/health: status 500, want 200"},` +
		`{"name":"script","kind":"command","passed":true,"attempts":1,"duration_ms":300,"output":"ok\n"}]}`
	if string(b) != want {
		t.Errorf("json =\n%s\nwant\n%s", b, want)
	}
	var back smoke.HostResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, give) {
		t.Errorf("round trip = %+v, want %+v", back, give)
	}
	if f := give.Failed(); len(f) != 1 || f[0].Name != "health" {
		t.Errorf("Failed() = %+v, want only health", f)
	}
}

func TestLogging(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	var count atomic.Int32
	target, _ := startServer(t, failFirst(1, &count))
	c := smoke.Check{Name: "h", Kind: smoke.KindHTTP, Retries: 1, Backoff: fast, HTTP: smoke.HTTPSpec{Path: "/"}}
	smoke.New(zap.New(core), nil).Run(context.Background(), target, []smoke.Check{c})

	tests := []struct {
		msg   string
		level zapcore.Level
		want  map[string]any
	}{
		{msg: "check attempt failed", level: zapcore.DebugLevel, want: map[string]any{"check": "h", "host": "127.0.0.1", "attempt": int64(1), "reason": "status"}},
		{msg: "check attempt passed", level: zapcore.DebugLevel, want: map[string]any{"check": "h", "attempt": int64(2)}},
		{msg: "check passed", level: zapcore.InfoLevel, want: map[string]any{"check": "h", "kind": "http", "host": "127.0.0.1", "instance_id": "web-1", "attempts": int64(2)}},
		{msg: "host checked", level: zapcore.InfoLevel, want: map[string]any{"host": "127.0.0.1", "passed": true, "failed": int64(0)}},
	}
	for _, tt := range tests {
		entries := logs.FilterMessage(tt.msg).All()
		if len(entries) != 1 {
			t.Errorf("%q logged %d times, want once", tt.msg, len(entries))
			continue
		}
		e := entries[0]
		if e.Level != tt.level || e.LoggerName != "smoke" {
			t.Errorf("%q at %s by %q, want %s by \"smoke\"", tt.msg, e.Level, e.LoggerName, tt.level)
		}
		fields := e.ContextMap()
		for k, v := range tt.want {
			if fields[k] != v {
				t.Errorf("%q field %s = %#v, want %#v", tt.msg, k, fields[k], v)
			}
		}
	}
}

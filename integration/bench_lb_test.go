//go:build integration && linux

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/pool"
)

// benchLBCommand is how `make bench-lb` runs TestBenchLBSwitch.
const benchLBCommand = "CYCLER_BENCH=1 go test -tags integration -count=1 -timeout 30m -run '^TestBenchLBSwitch$' -v ./integration/"

// Knobs of TestBenchLBSwitch, from the environment.
const (
	benchFlipsEnv  = "CYCLER_BENCH_FLIPS"         // flips per row (default 50)
	benchLBRateEnv = "CYCLER_BENCH_LB_RATE"       // requests/s of each load client (default 500)
	ctBinEnv       = "CYCLER_CONSUL_TEMPLATE_BIN" // default <module>/.bin/consul-template
	// switchProbeEvery is how often a new probe request starts during a flip.
	switchProbeEvery = 2 * time.Millisecond
	// flipTimeout bounds one flip; a row that misses it fails the run.
	flipTimeout = 30 * time.Second
	// wantCTVersion is the consul-template the issue compares against.
	wantCTVersion = "v0.41.1"
)

// lbTarget is one row's load balancer, started and ready.
type lbTarget struct {
	url   string // public URL
	ackID string // the cyclerd lb's id; "" for consul-template, which acks nothing
	stop  func() // stops the row's processes, so they idle through the next rows
	// log is the log of whatever changes the LB (cyclerd lb or
	// consul-template), and changeMarks the strings a line that records
	// one change holds (a reload, a VCL load, a PUT of the set).
	log         string
	changeMarks []string
}

// changes counts the LB changes tg's log records so far.
func (tg lbTarget) changes(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(tg.log)
	if err != nil {
		harness.Fatalf(t, "read %s: %v", tg.log, err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if !slices.ContainsFunc(tg.changeMarks, func(m string) bool { return !strings.Contains(line, m) }) {
			n++
		}
	}
	return n
}

// lbBench is the shared environment of every row: one Consul, the four demo
// apps, and the test playing the leader.
type lbBench struct {
	t     *testing.T
	ctx   context.Context
	e     *lbEnv
	gen   uint64
	live  pool.Pool
	flips int
	rate  float64
	wrk   string
	delay int // wrk's per-connection pause, ms
}

// TestBenchLBSwitch measures, for each LB in one run, the time from the
// leader's KV write of a new generation to the first answer through the LB
// from the new pool, and the requests that fail under background load while
// it switches. It asserts nothing about the numbers; it writes them to
// docs/benchmarks-lb.md and .json. Run it with `make bench-lb`.
func TestBenchLBSwitch(t *testing.T) {
	if os.Getenv("CYCLER_BENCH") != "1" {
		t.Skip("benchmark: set CYCLER_BENCH=1 to run it (make bench-lb); it takes several minutes, needs wrk and consul-template " +
			wantCTVersion + " (scripts/install-bench-tools.sh) and rewrites docs/benchmarks-lb.{md,json}")
	}
	flips := envInt(t, benchFlipsEnv, 50)
	outDir := os.Getenv(benchOutEnv)
	if outDir == "" {
		outDir = filepath.Join(harness.ModuleRoot(t), "docs")
		if flips < 50 {
			harness.Fatalf(t, "$%s=%d: the report in docs/ needs at least 50 flips per LB; set $%s to a directory for a shorter trial", benchFlipsEnv, flips, benchOutEnv)
		}
	}
	rep := runLBSwitchBench(t, testContext(t, 28*time.Minute), flips)
	writeLBReport(t, outDir, rep)
}

// runLBSwitchBench runs every row of TestBenchLBSwitch (flips flips each, under
// the load of $CYCLER_BENCH_LB_RATE) in its own Consul and demo apps, and
// returns the finished report. TestBenchCycle runs it too, so its report
// carries switch latencies from its own run.
func runLBSwitchBench(t *testing.T, ctx context.Context, flips int) lbReport {
	t.Helper()
	if nginx.DetectMode("") != nginx.ModeDynamic {
		harness.Fatal(t, "libnginx-mod-http-lua or lua-resty-core is not installed; the nginx dynamic row needs them (make deps)")
	}
	ctBin, wrkBin := lbBenchTools(t)
	b := &lbBench{t: t, ctx: ctx, flips: flips, rate: float64(envInt(t, benchLBRateEnv, 500)), wrk: wrkBin}
	// A wrk connection sends, waits for the answer, pauses delay() ms:
	// about 1 ms of answer plus the pause makes conns/rate seconds.
	b.delay = max(int(1000*lbLoadConns/b.rate)-1, 0)
	rep := lbReport{
		Command: benchLBCommand, Date: time.Now().UTC().Round(time.Second), Machine: machine(),
		Versions: lbToolVersions(t, ctBin, wrkBin), FlipsPerRow: b.flips, ProbeIntervalMS: ms(switchProbeEvery),
		LoadRate: b.rate, LoadConns: lbLoadConns, WrkDelayMS: b.delay,
		WorkerShutdownTimeout: nginx.DefaultWorkerShutdownTimeout.String(),
	}
	t.Logf("machine: %+v, versions: %+v", rep.Machine, rep.Versions)
	if !strings.Contains(rep.Versions.ConsulTemplate, wantCTVersion) {
		harness.Fatalf(t, "consul-template at %s is %q; the issue compares against %s", ctBin, rep.Versions.ConsulTemplate, wantCTVersion)
	}

	b.e = startLBEnv(t)
	b.gen, b.live = 1, pool.Green
	b.e.publish(b.gen, b.live)
	rows := []struct {
		name, how string
		start     func() lbTarget
	}{
		{"consul-template + nginx reload", "consul-template " + wantCTVersion + " renders the upstream include from the same Consul data, command `nginx -s reload`",
			func() lbTarget { return startCTLB(t, b.e, ctBin) }},
		{"cyclerd lb, nginx dynamic", "lua_shared_dict set through the admin location; no reload", func() lbTarget { return cyclerdTarget(startNginxLB(t, b.e, "bench-dynamic", "dynamic")) }},
		{"cyclerd lb, nginx reload", "upstream include, `nginx -t`, `nginx -s reload`, wait for the new set", func() lbTarget { return cyclerdTarget(startNginxLB(t, b.e, "bench-reload", "reload")) }},
		{"cyclerd lb, varnish", "admin health flip between pools already in the loaded VCL (a vcl.load only when a backend is new), generation markers, then a ban", func() lbTarget { return cyclerdTarget(startVarnishLB(t, b.e, "bench-varnish")) }},
	}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, b.runRow(r.name, r.how, r.start))
	}
	rep.finish()
	return rep
}

// lbBenchTools finds consul-template and wrk, or fails the test saying how
// to install them.
func lbBenchTools(t *testing.T) (ctBin, wrkBin string) {
	t.Helper()
	ctBin = os.Getenv(ctBinEnv)
	if ctBin == "" {
		ctBin = filepath.Join(harness.ModuleRoot(t), ".bin", "consul-template")
	}
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		harness.Fatalf(t, "wrk is not installed: %v; run scripts/install-bench-tools.sh", err)
	}
	if _, err := os.Stat(ctBin); err != nil {
		harness.Fatalf(t, "no consul-template at %s (%v); run scripts/install-bench-tools.sh or set $%s", ctBin, err, ctBinEnv)
	}
	return ctBin, wrkBin
}

// cyclerdTarget wraps a `cyclerd lb` node as a row target.
func cyclerdTarget(n *lbNode) lbTarget {
	procs := []*harness.Process{n.Cyclerd.Process}
	if n.Nginx != nil {
		procs = append(procs, n.Nginx)
	}
	stop := func() {
		for _, p := range procs {
			_ = p.Stop() // the test's Cleanup reports what went wrong
		}
	}
	// The nginx and varnish drivers log each apply with whether it changed
	// the LB (a PUT that stored a set, a reload, a VCL load).
	marks := []string{"backend set applied", `"changed": true`}
	return lbTarget{url: n.Public, ackID: n.ID, stop: stop, log: n.Cyclerd.LogPath(), changeMarks: marks}
}

// runRow starts a row's LB, lets it settle on the live pool, starts both
// load clients, flips b.flips times, and returns the row's figures.
func (b *lbBench) runRow(name, how string, start func() lbTarget) lbRow {
	t := b.t
	row := lbRow{Name: name, How: how, LoadAvg: machine().LoadAvg}
	tg := start()
	b.settle(tg)
	load := startLBLoad(b.ctx, strings.TrimPrefix(tg.url, "http://"), b.rate)
	benchPause(b.ctx, 2*time.Second) // warm-up: connections open, caches and pools filled
	changesBefore := tg.changes(t)
	var flipped []time.Time
	for i := range b.flips {
		// A wrk per flip: its delay() pacing does not survive a reconnect
		// (after a reload its rate climbs), so each run covers one flip,
		// from 0.5 s before the KV write until the LB has settled.
		wrk := startWrk(t, b.wrk, tg.url+"/", b.delay)
		benchPause(b.ctx, 500*time.Millisecond)
		at, took, probeErrs := b.flip(tg)
		flipped = append(flipped, at)
		row.SamplesMS = append(row.SamplesMS, ms(took))
		row.ProbeErrors += probeErrs
		b.settle(tg)
		ws := wrk.stop(t)
		row.Wrk.add(ws)
		if ws.Failed > 0 {
			row.WrkFlipsWithFailures++
		}
		t.Logf("%s: flip %d/%d to %s (generation %d): first answer from it after %s; wrk failed %d of %d",
			name, i+1, b.flips, b.live, b.gen, took.Round(time.Millisecond), ws.Failed, ws.Requests)
		// A pause with jitter between flips lets old nginx workers drain
		// and keeps the flips from locking onto a watcher's rhythm.
		benchPause(b.ctx, 700*time.Millisecond+rand.N(300*time.Millisecond))
	}
	row.Changes = tg.changes(t) - changesBefore
	row.Go = load.stop()
	row.Wrk.Rate = round2(float64(row.Wrk.Requests) / row.Wrk.Seconds)
	tg.stop()
	row.attribute(flipped)
	sorted := slices.Sorted(slices.Values(row.SamplesMS))
	row.MinMS, row.P50MS, row.P99MS, row.MaxMS = sorted[0], percentile(sorted, 50), percentile(sorted, 99), sorted[len(sorted)-1]
	t.Logf("%s: p50 %.0f ms, p99 %.0f ms; failed requests: Go client %d of %d, wrk %d of %d",
		name, row.P50MS, row.P99MS, row.Go.Failed, row.Go.Requests, row.Wrk.Failed, row.Wrk.Requests)
	return row
}

// flip does what the leader does in a switch, in the order that has every
// target instance serving before its pool becomes live: unhide the target
// pool, publish the new state (timed), hide the old pool. It returns when the KV write happened,
// how long until the first answer from the target pool through the LB, and
// how many probes failed meanwhile.
func (b *lbBench) flip(tg lbTarget) (time.Time, time.Duration, int) {
	t := b.t
	target, oldIDs, newIDs := pool.Blue, lbGreen, lbBlue
	if b.live == pool.Blue {
		target, oldIDs, newIDs = pool.Green, lbBlue, lbGreen
	}
	for _, id := range newIDs {
		if err := b.e.cc.Agent().DisableServiceMaintenance(id); err != nil {
			harness.Fatalf(t, "unhide %s: %v", id, err)
		}
	}
	b.gen++
	at := time.Now()
	p := startSwitchProbe(b.ctx, tg.url, target)
	b.e.putState(b.gen, target, oldIDs)
	for _, id := range oldIDs {
		b.e.maintenance(id, pool.HiddenReason(b.gen))
	}
	first, errs, ok := p.wait(flipTimeout)
	if !ok {
		harness.Fatalf(t, "no answer from %s through %s within %s of publishing generation %d (%d probes failed)", target, tg.url, flipTimeout, b.gen, errs)
	}
	b.live = target
	return at, first.Sub(at), errs
}

// settle waits until the LB serves the live pool only: the cyclerd lb has
// acked the generation with exactly that pool, and 20 requests on fresh
// connections are all answered by it.
func (b *lbBench) settle(tg lbTarget) {
	ids := lbGreen
	if b.live == pool.Blue {
		ids = lbBlue
	}
	if tg.ackID != "" {
		b.e.waitAck(tg.ackID, b.gen, ids...)
	}
	waitFor(b.t, fmt.Sprintf("only %v answering through %s", ids, tg.url), func() error {
		_, err := sample(tg.url, 20, ids)
		return err
	})
}

// switchProbe starts a GET on a fresh connection every switchProbeEvery,
// each in its own goroutine, so a slow answer never delays the next probe,
// and records when the first answer from the wanted pool arrived.
type switchProbe struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	found  chan struct{}
	once   sync.Once

	mu    sync.Mutex // guards first and errs
	first time.Time
	errs  int
}

// switchProbeHTTP opens a new connection per probe: a probe is a new client, not
// one whose kept-alive connection predates the switch.
var switchProbeHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func startSwitchProbe(ctx context.Context, url string, want pool.Pool) *switchProbe {
	ctx, cancel := context.WithCancel(ctx)
	p := &switchProbe{cancel: cancel, found: make(chan struct{})}
	var inflight atomic.Int32
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(switchProbeEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.found:
				return
			case <-tick.C:
			}
			if inflight.Load() >= 64 {
				continue
			}
			inflight.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer inflight.Add(-1)
				p.probe(ctx, url, want)
			}()
		}
	}()
	return p
}

func (p *switchProbe) probe(ctx context.Context, url string, want pool.Pool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		return
	}
	resp, err := switchProbeHTTP.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			p.mu.Lock()
			p.errs++
			p.mu.Unlock()
		}
		return
	}
	_ = resp.Body.Close()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case resp.StatusCode != http.StatusOK:
		p.errs++
	case resp.Header.Get("X-App-Pool") == string(want):
		if p.first.IsZero() || now.Before(p.first) {
			p.first = now
		}
		p.once.Do(func() { close(p.found) })
	}
}

// wait returns the arrival of the first answer from the wanted pool (the
// earliest, once the probes still in flight are done) and the failed
// probes; ok is false if none came within timeout.
func (p *switchProbe) wait(timeout time.Duration) (time.Time, int, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.found:
	case <-timer.C:
	}
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first, p.errs, !p.first.IsZero()
}

// benchPause waits d or until ctx ends. It paces the benchmark; nothing waits
// for readiness with it.
func benchPause(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

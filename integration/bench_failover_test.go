//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/integration/harness"
)

// benchCommand is how `make bench-raft` runs TestBenchRaft.
const benchCommand = "CYCLER_BENCH=1 go test -tags integration -count=1 -timeout 30m -run '^TestBenchRaft$' -v ./integration/"

// Benchmark knobs, from the environment.
const (
	benchKillsEnv    = "CYCLER_BENCH_KILLS"    // leader kills to time (default 20, at least 10)
	benchDurationEnv = "CYCLER_BENCH_DURATION" // length of each throughput run (default 5s)
	benchOutEnv      = "CYCLER_BENCH_OUT"      // report directory (default <module>/docs)
	probeInterval    = 10 * time.Millisecond   // a failover probe write starts this often
	benchConcurrency = 16
)

// benchReport is docs/benchmarks-raft.json.
type benchReport struct {
	Command    string             `json:"command"`
	Date       time.Time          `json:"date"`
	Machine    benchMachine       `json:"machine"`
	Timing     string             `json:"timing"`
	Failover   failoverResult     `json:"failover"`
	Throughput []throughputResult `json:"throughput"`
	Notes      []string           `json:"notes"`
}

type benchMachine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	OSArch    string `json:"os_arch"`
	Kernel    string `json:"kernel"`
	// LoadAvg is /proc/loadavg when the run started: the machine may be shared.
	LoadAvg string `json:"loadavg_at_start"`
}

// failoverResult is the time from SIGKILL of the leader to the first write
// committed through the API by a request sent after the kill.
type failoverResult struct {
	Kills           int       `json:"kills"`
	ProbeIntervalMS float64   `json:"probe_interval_ms"`
	SamplesMS       []float64 `json:"samples_ms"`
	MinMS           float64   `json:"min_ms"`
	P50MS           float64   `json:"p50_ms"`
	P99MS           float64   `json:"p99_ms"`
	MaxMS           float64   `json:"max_ms"`
}

// throughputResult is one run of committed writes through the API.
type throughputResult struct {
	Cluster      string  `json:"cluster"`
	Target       string  `json:"target"`
	Clients      int     `json:"clients"`
	Seconds      float64 `json:"seconds"`
	Writes       int     `json:"writes"`
	Errors       int     `json:"errors"`
	WritesPerSec float64 `json:"writes_per_sec"`
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
}

// TestBenchRaft measures real `cyclerd server` processes with the production
// Raft timing: failover time after kill -9 of the leader, and committed API
// writes per second on three nodes (to the leader and through a follower) and
// on one. It asserts nothing about the numbers; it writes them to
// docs/benchmarks-raft.md and .json. Run it with `make bench-raft`.
func TestBenchRaft(t *testing.T) {
	if os.Getenv("CYCLER_BENCH") != "1" {
		t.Skip("benchmark: set CYCLER_BENCH=1 to run it (make bench-raft); it takes a few minutes and rewrites docs/benchmarks-raft.{md,json}")
	}
	kills := max(envInt(t, benchKillsEnv, 20), 10)
	dur := envDuration(t, benchDurationEnv, 5*time.Second)
	outDir := os.Getenv(benchOutEnv)
	if outDir == "" {
		outDir = filepath.Join(harness.ModuleRoot(t), "docs")
	}
	rep := benchReport{
		Command: benchCommand, Date: time.Now().UTC().Round(time.Second), Machine: machine(),
		Timing: "production Raft timing (the default: heartbeat and election timeouts 500 ms, leader lease 250 ms)",
		Notes: []string{
			"Each API write is PUT /v1/services/{svc}/freeze: two Raft commits in sequence (the freeze, then its audit record), each fsynced by raft-boltdb on a quorum.",
			"Failover: a probe write starts every 10 ms against the surviving servers; a sample is the time from SIGKILL of the leader to the first success of a probe sent after the kill. The killed server is restarted and caught up before the next kill.",
			"p99 uses the nearest rank, so with fewer than 100 samples it is the largest sample.",
			"All servers, the clients and the harness share the machine, which may be running other work too (see the load average): compare figures from the same run rather than across runs.",
		},
	}
	t.Logf("machine: %+v", rep.Machine)

	c := startCluster(t, clusterOptions{Size: 3})
	ctx := testContext(t, 25*time.Minute)
	rep.Failover = measureFailover(ctx, t, c, kills)
	leader := c.waitLeader(ctx, c.nodes...)
	follower := c.others(leader)[0]
	for _, clients := range []int{1, benchConcurrency} {
		rep.Throughput = append(rep.Throughput,
			measureWrites(ctx, t, "3 nodes", "leader", leader, clients, dur),
			measureWrites(ctx, t, "3 nodes", "follower (forwarded)", follower, clients, dur))
	}
	for _, n := range c.nodes {
		if err := n.Stop(); err != nil {
			harness.Fatal(t, err)
		}
	}

	single := startCluster(t, clusterOptions{Size: 1})
	for _, clients := range []int{1, benchConcurrency} {
		rep.Throughput = append(rep.Throughput, measureWrites(ctx, t, "1 node", "leader", single.nodes[0], clients, dur))
	}
	writeBenchReport(t, outDir, rep)
}

// measureFailover kills the leader kills times and times each failover.
func measureFailover(ctx context.Context, t *testing.T, c *cluster, kills int) failoverResult {
	t.Helper()
	res := failoverResult{Kills: kills, ProbeIntervalMS: ms(probeInterval)}
	for i := range kills {
		leader := c.waitLeader(ctx, c.nodes...)
		survivors := c.others(leader)
		p := startProber(ctx, survivors, i)
		warm := time.Now()
		if err := harness.WaitFor(ctx, "probe writes before the kill", func() error { return p.succeededAfter(warm) }); err != nil {
			p.finish()
			harness.Fatal(t, err)
		}
		killedAt := time.Now()
		if err := leader.Kill(); err != nil {
			p.finish()
			harness.Fatal(t, err)
		}
		err := harness.WaitFor(ctx, "a write committed after the kill", func() error { return p.succeededAfter(killedAt) })
		p.finish()
		if err != nil {
			harness.Fatal(t, err)
		}
		first, _ := p.firstAfter(killedAt)
		took := first.Sub(killedAt)
		res.SamplesMS = append(res.SamplesMS, ms(took))
		t.Logf("kill %d/%d of leader %s: first committed write after %s", i+1, kills, leader.ID, took.Round(time.Millisecond))

		// Bring the killed server back and let it catch up before the next kill.
		if err := leader.Restart(); err != nil {
			harness.Fatal(t, err)
		}
		c.waitMembers(ctx, c.nodes...)
		st, err := c.waitLeader(ctx, c.nodes...).self(ctx)
		if err != nil {
			harness.Fatal(t, err)
		}
		c.waitApplied(ctx, st.AppliedIndex, c.nodes...)
	}
	sorted := slices.Sorted(slices.Values(res.SamplesMS))
	res.MinMS, res.MaxMS = sorted[0], sorted[len(sorted)-1]
	res.P50MS, res.P99MS = percentile(sorted, 50), percentile(sorted, 99)
	return res
}

// prober starts a write every probeInterval, each in its own goroutine, so a
// write stuck on a dead leader never delays the next one.
type prober struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex // guards ok
	// ok maps each successful probe's send time to its answer time.
	ok map[time.Time]time.Time
}

func startProber(ctx context.Context, nodes []*clusterNode, round int) *prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &prober{cancel: cancel, ok: map[time.Time]time.Time{}}
	clients := make([]*client.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = benchClient(n)
	}
	var inflight atomic.Int32
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(probeInterval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if inflight.Load() >= 256 {
				continue
			}
			inflight.Add(1)
			p.wg.Add(1)
			go func(cl *client.Client, i int) {
				defer p.wg.Done()
				defer inflight.Add(-1)
				sent := time.Now()
				err := freezeVia(ctx, cl, fmt.Sprintf("probe-%d", i%64), fmt.Sprintf("round %d probe %d", round, i))
				if err == nil {
					p.mu.Lock()
					p.ok[sent] = time.Now()
					p.mu.Unlock()
				}
			}(clients[i%len(clients)], i)
		}
	}()
	return p
}

// succeededAfter returns nil once a probe sent after t has succeeded.
func (p *prober) succeededAfter(t time.Time) error {
	if _, ok := p.firstAfter(t); !ok {
		return fmt.Errorf("no probe sent after %s has succeeded yet", t.Format(time.StampMilli))
	}
	return nil
}

// firstAfter returns the earliest answer to a successful probe sent after t.
func (p *prober) firstAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for sent, done := range p.ok {
		if sent.After(t) && (first.IsZero() || done.Before(first)) {
			first = done
		}
	}
	return first, !first.IsZero()
}

// finish stops the prober and waits for its writes.
func (p *prober) finish() {
	p.cancel()
	p.wg.Wait()
}

// measureWrites runs clients writers against target for dur and counts the
// committed writes.
func measureWrites(ctx context.Context, t *testing.T, cluster, target string, n *clusterNode, clients int, dur time.Duration) throughputResult {
	t.Helper()
	cl := benchClient(n)
	// Half a second of warm-up fills connection pools and the log cache.
	runWriters(ctx, cl, clients, 500*time.Millisecond, "warm")
	lat, errs, elapsed := runWriters(ctx, cl, clients, dur, "tp")
	slices.Sort(lat)
	r := throughputResult{
		Cluster: cluster, Target: target + " " + n.ID, Clients: clients, Seconds: round2(elapsed.Seconds()),
		Writes: len(lat), Errors: errs, WritesPerSec: round2(float64(len(lat)) / elapsed.Seconds()),
	}
	if len(lat) > 0 {
		r.LatencyP50MS, r.LatencyP99MS = percentile(lat, 50), percentile(lat, 99)
	}
	t.Logf("%s, to the %s, %d client(s): %.0f writes/s (%d writes, %d errors, p50 %.1f ms, p99 %.1f ms)",
		cluster, r.Target, clients, r.WritesPerSec, r.Writes, r.Errors, r.LatencyP50MS, r.LatencyP99MS)
	return r
}

// runWriters runs clients sequential writers for dur and returns the
// latency of each committed write in milliseconds and the error count.
func runWriters(ctx context.Context, cl *client.Client, clients int, dur time.Duration, prefix string) ([]float64, int, time.Duration) {
	var (
		mu   sync.Mutex
		lat  []float64
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				// A bounded set of services keeps the state (and so Raft
				// snapshots) the same size however long the run is.
				svc := fmt.Sprintf("%s-%d-%d", prefix, w, i%16)
				sent := time.Now()
				err := freezeVia(ctx, cl, svc, "write "+strconv.Itoa(i))
				took := time.Since(sent)
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, ms(took))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, errs, time.Since(start)
}

// benchClient returns an API client for n whose connection pool holds a
// connection per concurrent writer, so the run measures cyclerd rather
// than TCP handshakes.
func benchClient(n *clusterNode) *client.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4 * benchConcurrency
	cl, err := client.New(client.Config{Addr: "http://" + n.APIAddr, Token: clusterToken, Timeout: 15 * time.Second,
		HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		panic(fmt.Sprintf("bench client for %s: %v", n.APIAddr, err)) // the config is built here; it cannot be wrong
	}
	return cl
}

func freezeVia(ctx context.Context, cl *client.Client, svc, reason string) error {
	return cl.Do(ctx, http.MethodPut, "/v1/services/"+svc+"/freeze", api.FreezeRequest{Reason: reason}, nil)
}

// percentile returns the nearest-rank percentile p of sorted values.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return round2(float64(d) / float64(time.Millisecond)) }

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// machine describes the host for the report.
func machine() benchMachine {
	m := benchMachine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	return m
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		harness.Fatalf(t, "$%s=%q is not a positive integer", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		harness.Fatalf(t, "$%s=%q is not a positive duration like 5s", name, v)
	}
	return d
}

// writeBenchReport writes benchmarks-raft.json and benchmarks-raft.md to dir.
func writeBenchReport(t *testing.T, dir string, rep benchReport) {
	t.Helper()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		harness.Fatal(t, err)
	}
	var md strings.Builder
	m, f := rep.Machine, rep.Failover
	fmt.Fprintf(&md, `# Raft benchmarks

Measured by `+"`make bench-raft`"+`, which runs:

    %s

on real `+"`cyclerd server`"+` processes on loopback, with the %s.
The numbers are from one run on %s; %s holds them in machine-readable form.

Machine: %d CPUs (%s), %s, %s, Linux %s; load average at the start: %s.

## Failover after kill -9 of the leader

%d kills. A sample is the time from SIGKILL of the leader to the first write committed through the API
by a request sent after the kill (probe writes start every %.0f ms against the surviving servers).

| min | p50 | p99 | max |
|---|---|---|---|
| %.0f ms | %.0f ms | %.0f ms | %.0f ms |

Samples (ms): %s

## Committed writes per second through the API

| cluster | sent to | clients | writes/s | writes | errors | p50 latency | p99 latency |
|---|---|---|---|---|---|---|---|
`, rep.Command, rep.Timing, rep.Date.Format("2006-01-02"), "`docs/benchmarks-raft.json`",
		m.NProc, m.CPUModel, m.GoVersion, m.OSArch, m.Kernel, m.LoadAvg,
		f.Kills, f.ProbeIntervalMS, f.MinMS, f.P50MS, f.P99MS, f.MaxMS, joinFloats(f.SamplesMS))
	for _, r := range rep.Throughput {
		fmt.Fprintf(&md, "| %s | %s | %d | %.0f | %d | %d | %.1f ms | %.1f ms |\n",
			r.Cluster, r.Target, r.Clients, r.WritesPerSec, r.Writes, r.Errors, r.LatencyP50MS, r.LatencyP99MS)
	}
	md.WriteString("\n## Notes\n\n")
	for _, n := range rep.Notes {
		fmt.Fprintf(&md, "- %s\n", n)
	}
	for name, data := range map[string][]byte{"benchmarks-raft.json": append(js, '\n'), "benchmarks-raft.md": []byte(md.String())} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			harness.Fatal(t, err)
		}
		t.Logf("wrote %s", path)
	}
}

func joinFloats(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strings.Join(s, ", ")
}

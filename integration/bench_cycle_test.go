//go:build integration && linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// benchCycleCommand is how `make bench-cycle` runs TestBenchCycle.
const benchCycleCommand = "CYCLER_BENCH=1 go test -tags integration -count=1 -timeout 60m -run '^TestBenchCycle$' -v ./integration/"

// Knobs of TestBenchCycle, from the environment, and its fixed settings.
const (
	benchQuickEnv     = "CYCLER_BENCH_QUICK"      // 1: 2 cycles, 1 in-place deploy, 5 flips, report to a temp dir
	benchCyclesEnv    = "CYCLER_BENCH_CYCLES"     // measured cycles and in-place deploys (default 5)
	benchCycleRateEnv = "CYCLER_BENCH_CYCLE_RATE" // wrk's target requests/s per LB (default 500)
	benchHeyRateEnv   = "CYCLER_BENCH_HEY_RATE"   // hey's requests/s per LB (default 400)
	heyBinEnv         = "CYCLER_HEY_BIN"          // default <module>/.bin/hey
	wantHeyVersion    = "v0.1.5"
	// cycleWrkConns and cycleHeyConns are each client's keepalive
	// connections per LB. wrk's rate is about conns/(delay + latency), so
	// more connections with a longer delay keep it nearer its target when
	// latency grows on a busy machine.
	cycleWrkConns = 16
	cycleHeyConns = 4
	// cycleGoRate is the Go load client's rate per LB (TestBenchLBSwitch's
	// open-loop client, which tells idle keepalive connections the LB
	// closed from failed requests).
	cycleGoRate = 100
	// cycleSampleEvery is the version recorder's period per LB.
	cycleSampleEvery = 20 * time.Millisecond
	// cycleMargin is how long the load runs before and after each deploy.
	cycleMargin = time.Second
	// The goals of the issue.
	goalRequests = 100_000
	goalRate     = 300
)

// cycleLB is one LB of the lab, as the report names it.
type cycleLB struct {
	Name string
	URL  string
	// errorLog is nginx's error log ("" for varnish).
	errorLog string
}

// cycleBench runs the cycler phase and the in-place phase on one lab.
type cycleBench struct {
	t        *testing.T
	ctx      context.Context
	l        *fleetLab
	lbs      []cycleLB
	wrk, hey string
	wrkDelay int     // ms, wrk's delay() per connection
	heyQPS   float64 // per hey worker
	rec      *versionRecorder
}

// TestBenchCycle measures what users see during full cycles: the requests
// that fail and their latency under constant load (wrk and hey, through
// nginx dynamic, nginx reload and varnish at once), against an in-place
// deploy (each live host stopped, replaced and started, unhidden) through
// the same LBs in the same run; then it runs TestBenchLBSwitch's switch
// measurement against consul-template. It asserts nothing about the
// numbers; it writes docs/benchmarks-cycle.{md,json,svg}. Run it with
// `make bench-cycle`.
func TestBenchCycle(t *testing.T) {
	if os.Getenv("CYCLER_BENCH") != "1" {
		t.Skip("benchmark: set CYCLER_BENCH=1 to run it (make bench-cycle); it takes about 15 minutes, needs wrk, hey " + wantHeyVersion +
			" and consul-template " + wantCTVersion + " (scripts/install-bench-tools.sh) and rewrites docs/benchmarks-cycle.{md,json,svg}")
	}
	started := time.Now()
	quick := os.Getenv(benchQuickEnv) == "1"
	cycles, flips := envInt(t, benchCyclesEnv, 5), envInt(t, benchFlipsEnv, 50)
	if quick {
		cycles, flips = envInt(t, benchCyclesEnv, 2), envInt(t, benchFlipsEnv, 5)
	}
	outDir := os.Getenv(benchOutEnv)
	switch {
	case outDir != "":
	case quick:
		outDir = t.TempDir()
	default:
		outDir = filepath.Join(harness.ModuleRoot(t), "docs")
		if cycles < 5 || flips < 50 {
			harness.Fatalf(t, "$%s=%d, $%s=%d: the report in docs/ needs at least 5 cycles and 50 flips; set $%s or $%s=1 for a shorter trial",
				benchCyclesEnv, cycles, benchFlipsEnv, flips, benchOutEnv, benchQuickEnv)
		}
	}
	ctBin, wrkBin := lbBenchTools(t)
	heyBin := os.Getenv(heyBinEnv)
	if heyBin == "" {
		heyBin = filepath.Join(harness.ModuleRoot(t), ".bin", "hey")
	}
	rep := cycleReport{
		Command: benchCycleCommand, Date: time.Now().UTC().Round(time.Second), Machine: machine(), Quick: quick,
		Versions:  cycleToolVersions{lbToolVersions(t, ctBin, wrkBin), heyVersion(t, heyBin)},
		WrkTarget: float64(envInt(t, benchCycleRateEnv, 500)), HeyRate: float64(envInt(t, benchHeyRateEnv, 400)), GoRate: cycleGoRate,
		WrkConns: cycleWrkConns, HeyConns: cycleHeyConns, SampleEveryMS: ms(cycleSampleEvery), Deploys: cycles,
	}
	if !strings.Contains(rep.Versions.Hey, wantHeyVersion) {
		harness.Fatalf(t, "hey at %s is %q; the benchmark pins %s (scripts/install-bench-tools.sh)", heyBin, rep.Versions.Hey, wantHeyVersion)
	}
	// As in TestBenchLBSwitch: about 1 ms of answer plus the pause makes
	// conns/rate seconds per request and connection.
	rep.WrkDelayMS = max(int(1000*cycleWrkConns/rep.WrkTarget)-1, 0)
	t.Logf("machine: %+v, versions: %+v", rep.Machine, rep.Versions)

	if !t.Run("cycles", func(t *testing.T) {
		b := &cycleBench{t: t, ctx: testContext(t, 20*time.Minute), wrk: wrkBin, hey: heyBin, wrkDelay: rep.WrkDelayMS,
			heyQPS: rep.HeyRate / cycleHeyConns}
		b.run(&rep, cycles)
	}) {
		harness.Fatal(t, "the cycle phases failed; no report written")
	}
	if !t.Run("lb-switch", func(t *testing.T) {
		lbRep := runLBSwitchBench(t, testContext(t, 20*time.Minute), flips)
		rep.Switch = lbRep.Rows
		rep.SwitchFlips = lbRep.FlipsPerRow
	}) {
		harness.Fatal(t, "the LB switch measurement failed; no report written")
	}
	rep.RunMinutes = round2(time.Since(started).Minutes())
	rep.finish()
	writeCycleReport(t, outDir, rep)
}

// heyVersion reads the module version go install recorded in hey.
func heyVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		harness.Fatalf(t, "no usable hey at %s (%v: %s); run scripts/install-bench-tools.sh or set $%s", bin, err, strings.TrimSpace(string(out)), heyBinEnv)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/rakyll/hey" {
			return "hey " + f[2]
		}
	}
	return "hey (unknown version)"
}

// run starts the lab with an nginx reload-mode LB next to its nginx dynamic
// and varnish LBs, deploys 1.0.0 (the first cycle, not measured), then
// measures n cycles and n in-place deploys under load.
func (b *cycleBench) run(rep *cycleReport, n int) {
	t, ctx := b.t, b.ctx
	// A 10 s bake, where the tests use 3 s: closer to a real bake, and it
	// makes 5 cycles carry the 100k requests through the two
	// reload-free LBs at the paced rates.
	svc := strings.Replace(labService(""), `bake_time     = "3s"`, `bake_time     = "10s"`, 1)
	if svc == labService("") {
		harness.Fatal(t, "bench: labService no longer sets bake_time = \"3s\"; update the 10 s override")
	}
	b.l = startFleetLab(t, svc)
	env := &lbEnv{t: t, consul: b.l.consul, cc: b.l.cc}
	b.l.lbs = append(b.l.lbs, startNginxLB(t, env, "nginx-reload-1", "reload"))
	names := map[string]string{"nginx-1": "nginx dynamic", "nginx-reload-1": "nginx reload", "varnish-1": "varnish"}
	for _, id := range []string{"nginx-1", "nginx-reload-1", "varnish-1"} {
		i := slices.IndexFunc(b.l.lbs, func(n *lbNode) bool { return n.ID == id })
		lb := cycleLB{Name: names[id], URL: b.l.lbs[i].Public}
		if ngx := b.l.lbs[i].Nginx; ngx != nil {
			lb.errorLog = nginxErrorLog(ngx)
		}
		b.lbs = append(b.lbs, lb)
	}

	_, v1 := b.l.pkg(ctx, "1.0.0")
	if code, c, out := b.l.deploy(ctx, b.l.c.nodes[0].APIAddr, v1); code != cycle.ExitLive {
		harness.Fatalf(t, "deploy 1.0.0 (setup): exit %d, phase %s\n%s", code, c.Phase, out)
	}
	b.l.requireServing(ctx, "1.0.0")
	// Each package is pushed just before its deploy's window (outside the
	// deploy's timing): pushing them all first would let the store's
	// garbage collection (packages.keep, 5 per name) drop the oldest.
	digests := map[string]string{}
	push := func(v string) { digests[v] = b.push(rep, v) }

	b.rec = startVersionRecorder(ctx, b.lbs)
	defer b.rec.finish()
	live := ""
	rep.Cycler = b.phase("cycler", n, func(i int) { push(fmt.Sprintf("%d.0.0", i+2)) }, func(i int, d *deployRun) {
		d.Version = fmt.Sprintf("%d.0.0", i+2)
		node := b.l.c.nodes[i%len(b.l.c.nodes)]
		code, c, out := b.l.deploy(ctx, node.APIAddr, digests[d.Version])
		d.Exit, d.Phase, d.Target = code, string(c.Phase), c.Target
		for _, s := range c.Phases {
			d.Phases = append(d.Phases, phaseSpan{Phase: string(s.Phase), Start: s.Start, End: s.End})
		}
		if code != cycle.ExitLive {
			d.Error = fmt.Sprintf("cyclerctl deploy exited %d in phase %s: %s", code, c.Phase, c.Message)
			harness.Errorf(t, "cycle %d (%s): %s\n%s", i+1, d.Version, d.Error, out)
			return
		}
		live = c.Target
	})
	if live == "" {
		harness.Fatal(t, "no measured cycle finished live; nothing to deploy in place to")
	}
	rep.InPlace = b.phase("in-place", n, func(i int) { push(fmt.Sprintf("%d.0.0", n+i+2)) }, func(i int, d *deployRun) {
		d.Version = fmt.Sprintf("%d.0.0", n+i+2)
		d.Target = live
		d.Error = b.inPlace(live, digests[d.Version], d)
	})
	rep.Chart = []chartPanel{
		buildPanel("cycler, cycle 1 of "+fmt.Sprint(n), "1.0.0", rep.Cycler.Deploys[0], b.rec, b.lbs),
		buildPanel("in-place, deploy 1 of "+fmt.Sprint(n), fmt.Sprintf("%d.0.0", n+1), rep.InPlace.Deploys[0], b.rec, b.lbs),
	}
}

// phase runs n deploys (step, after prepare) under load and returns the phase's figures:
// hey runs through the whole phase, wrk once per deploy (see the notes for
// why), from cycleMargin before the deploy to cycleMargin after it.
func (b *cycleBench) phase(name string, n int, prepare func(i int), step func(i int, d *deployRun)) phaseResult {
	t := b.t
	res := phaseResult{Name: name}
	hists := make([]latencyHist, len(b.lbs))
	for i, lb := range b.lbs {
		res.LBs = append(res.LBs, lbPhase{Name: lb.Name, WrkByStatus: map[string]int{}})
		hists[i] = latencyHist{}
	}
	heys := make([]*heyRun, len(b.lbs))
	loads := make([]*lbLoadRun, len(b.lbs))
	for i, lb := range b.lbs {
		heys[i] = startHey(t, b.hey, lb.URL+"/", cycleHeyConns, b.heyQPS)
		loads[i] = startLBLoad(b.ctx, strings.TrimPrefix(lb.URL, "http://"), cycleGoRate)
		res.LBs[i].NginxErrors = nginxErrorCounts(t, lb.errorLog)
	}
	for i := range n {
		prepare(i)
		wrks := make([]*wrkRun, len(b.lbs))
		for j, lb := range b.lbs {
			wrks[j] = startWrkScript(t, b.wrk, lb.URL+"/", cycleWrkConns, b.wrkDelay, cycleWrkScript)
		}
		from := time.Now()
		benchPause(b.ctx, cycleMargin)
		d := deployRun{Start: time.Now()}
		step(i, &d)
		d.End = time.Now()
		d.Seconds = round2(d.End.Sub(d.Start).Seconds())
		benchPause(b.ctx, cycleMargin)
		to := time.Now()
		for j, lb := range b.lbs {
			w := stopCycleWrk(t, wrks[j])
			p := &res.LBs[j]
			p.Wrk.add(w.wrkStats)
			for s, c := range w.byStatus {
				p.WrkByStatus[s] += c
			}
			hists[j].add(w.hist)
			rate := round2(float64(w.Requests) / w.Seconds)
			if p.WrkMinRate == 0 || rate < p.WrkMinRate {
				p.WrkMinRate = rate
			}
			sc := countSamples(b.rec.window(lb.Name, from, to))
			p.Sampler.add(sc)
			d.LBs = append(d.LBs, deployLB{Name: lb.Name, WrkRequests: w.Requests, WrkFailed: w.Failed, WrkRate: rate, Sampler: sc})
		}
		res.Deploys = append(res.Deploys, d)
		t.Logf("%s %d/%d (%s): %.1f s, %s", name, i+1, n, d.Version, d.Seconds, d.summary())
	}
	for j := range b.lbs {
		p := &res.LBs[j]
		p.Hey = heys[j].stop(t)
		p.Go = loads[j].stop()
		for k, v := range nginxErrorCounts(t, b.lbs[j].errorLog) {
			p.NginxErrors[k] = v - p.NginxErrors[k]
		}
		p.Wrk.Rate = round2(float64(p.Wrk.Requests) / p.Wrk.Seconds)
		p.WrkP50MS, p.WrkP99MS = hists[j].percentileMS(50), hists[j].percentileMS(99)
	}
	return res
}

// inPlace does what a hand-written release script does: for each live
// host in turn, install the package directly through the agent (which
// stops the app, switches the release and starts it again), with no hide.
// It then waits until every LB answers the new version only. It returns
// what went wrong, or "".
func (b *cycleBench) inPlace(pool, digest string, d *deployRun) string {
	t, ctx := b.t, b.ctx
	var hosts []*testAgent
	for _, a := range b.l.agents {
		if a.Pool == pool {
			hosts = append(hosts, a)
		}
	}
	for _, a := range hosts {
		var res agent.InstallResult
		start := time.Now()
		err := a.agentCall(ctx, agentAPISecret, http.MethodPost, "/v1/agent/install", agent.InstallRequest{Digest: digest}, &res)
		d.Phases = append(d.Phases, phaseSpan{Phase: "install " + a.Instance, Start: start, End: time.Now()})
		if err != nil || res.Outcome != agent.OutcomeInstalled {
			msg := fmt.Sprintf("install on %s: %v (outcome %q, step %s: %s)", a.Instance, err, res.Outcome, res.Step, res.Error)
			harness.Errorf(t, "in-place %s: %s", d.Version, msg)
			return msg
		}
	}
	want := d.Version
	start := time.Now()
	for _, lb := range b.lbs {
		waitFor(t, fmt.Sprintf("%s to answer only %s", lb.Name, want), func() error {
			for range 10 {
				v, err := appVersion(ctx, lb.URL)
				if err != nil || v != want {
					return fmt.Errorf("answered %q (%v)", v, err)
				}
			}
			return nil
		})
	}
	d.Phases = append(d.Phases, phaseSpan{Phase: "LBs serve it only", Start: start, End: time.Now()})
	return ""
}

// nginxErrorLog is the error log of an nginx the harness started, read from
// the header of its log tails ("--- name: last N lines of PATH ---").
func nginxErrorLog(p *harness.Process) string {
	for _, line := range strings.Split(p.Tails(), "\n") {
		if strings.HasPrefix(line, "--- ") && strings.HasSuffix(line, "error.log ---") {
			_, path, _ := strings.Cut(strings.TrimSuffix(line, " ---"), " lines of ")
			return path
		}
	}
	return ""
}

// nginxErrorMarks are the nginx error log lines the report counts: what
// nginx logs when it has no backend left to try, when a connect to a
// backend fails (it retries another), and when a backend closes early.
var nginxErrorMarks = []string{"no live upstreams", "connect() failed", "upstream prematurely closed"}

// nginxErrorCounts counts the nginxErrorMarks lines in path so far.
func nginxErrorCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	if path == "" {
		return out
	}
	b, err := os.ReadFile(path)
	if err != nil {
		harness.Fatalf(t, "nginx error log: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, m := range nginxErrorMarks {
			if strings.Contains(line, m) {
				out[m]++
			}
		}
	}
	return out
}

// push builds the demo package of version v and pushes it, as l.pkg does,
// but tries up to 3 times: under this load `cyclerctl package push` has
// failed with "seek ...: file already closed" (see the report), and a
// failed push is not what this benchmark measures. Retries are recorded.
func (b *cycleBench) push(rep *cycleReport, v string) string {
	t := b.t
	bin, err := os.ReadFile(b.l.demoBin)
	if err != nil {
		harness.Fatal(t, err)
	}
	path := writePackage(t, "web-"+v+".tar.gz", pkgtest.Package(t, pkgtest.Manifest(pkgtest.DemoManifest(v)),
		pkgtest.Entry{Name: pkgtest.DemoBinary, Body: bin, Mode: 0o755}))
	for attempt := 1; ; attempt++ {
		out, errOut, err := b.l.c.ctl(b.ctx, b.l.c.nodes[0].APIAddr, "--json", "package", "push", path)
		var p struct {
			Digest string `json:"digest"`
		}
		if err == nil && json.Unmarshal([]byte(out), &p) == nil && p.Digest != "" {
			return p.Digest
		}
		msg := fmt.Sprintf("push %s, attempt %d: %v: %s", v, attempt, err, strings.TrimSpace(errOut))
		rep.PushRetries = append(rep.PushRetries, msg)
		if attempt == 3 {
			harness.Fatal(t, msg)
		}
		t.Log(msg + "; retrying")
	}
}

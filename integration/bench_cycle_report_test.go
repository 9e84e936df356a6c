//go:build integration && linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
)

// cycleReport is docs/benchmarks-cycle.json.
type cycleReport struct {
	Command    string            `json:"command"`
	Date       time.Time         `json:"date"`
	Quick      bool              `json:"quick,omitempty"`
	RunMinutes float64           `json:"run_minutes"`
	Machine    benchMachine      `json:"machine"`
	Versions   cycleToolVersions `json:"versions"`
	// Deploys is the number of measured cycles, and of in-place deploys.
	Deploys int `json:"deploys_per_phase"`
	// WrkTarget is wrk's target rate per LB, paced by WrkDelayMS on each
	// of WrkConns connections; HeyRate is hey's (-q per worker times
	// HeyConns workers).
	WrkTarget     float64 `json:"wrk_target_per_lb"`
	WrkDelayMS    int     `json:"wrk_delay_ms"`
	WrkConns      int     `json:"wrk_connections_per_lb"`
	HeyRate       float64 `json:"hey_rate_per_lb"`
	HeyConns      int     `json:"hey_workers_per_lb"`
	GoRate        float64 `json:"go_client_rate_per_lb"`
	SampleEveryMS float64 `json:"version_sample_every_ms"`

	Cycler  phaseResult `json:"cycler"`
	InPlace phaseResult `json:"in_place"`
	// Switch holds TestBenchLBSwitch's rows, measured in this run.
	Switch      []lbRow      `json:"lb_switch"`
	SwitchFlips int          `json:"lb_switch_flips_per_row"`
	Chart       []chartPanel `json:"chart"`
	// PushRetries are the package pushes that failed and were retried.
	PushRetries []string `json:"push_retries,omitempty"`
	Goals       []lbGoal `json:"goals"`
	Notes       []string `json:"notes"`
}

// cycleToolVersions records what ran.
type cycleToolVersions struct {
	lbToolVersion
	Hey string `json:"hey"`
}

// phaseResult is one way of deploying (cycler or in-place) measured
// through every LB.
type phaseResult struct {
	Name    string      `json:"name"`
	LBs     []lbPhase   `json:"lbs"`
	Deploys []deployRun `json:"deploys"`
}

// lbPhase is one LB's figures over a phase.
type lbPhase struct {
	Name        string         `json:"name"`
	Wrk         wrkStats       `json:"wrk"`
	WrkByStatus map[string]int `json:"wrk_non_2xx_by_status"`
	// WrkMinRate is the lowest rate of one deploy's wrk run.
	WrkMinRate float64  `json:"wrk_min_rate_per_sec"`
	WrkP50MS   float64  `json:"wrk_latency_p50_ms"`
	WrkP99MS   float64  `json:"wrk_latency_p99_ms"`
	Hey        heyStats `json:"hey"`
	// Go is TestBenchLBSwitch's open-loop client, through the whole phase.
	Go      lbLoadStats  `json:"go_client"`
	Sampler sampleCounts `json:"version_sampler"`
	// NginxErrors counts lines of the LB's nginx error log written during
	// the phase, by what they say (nginx LBs only).
	NginxErrors map[string]int `json:"nginx_error_log,omitempty"`
}

// failed and requests count wrk and hey together.
func (p lbPhase) failed() int   { return p.Wrk.Failed + p.Hey.Failed }
func (p lbPhase) requests() int { return p.Wrk.Requests + p.Hey.Requests }

// deployRun is one deploy: a full cycle, or an in-place install on each
// live host.
type deployRun struct {
	Version string      `json:"version"`
	Target  string      `json:"target_pool"`
	Start   time.Time   `json:"start"`
	End     time.Time   `json:"end"`
	Seconds float64     `json:"seconds"`
	Exit    int         `json:"exit_code"`
	Phase   string      `json:"final_phase,omitempty"`
	Error   string      `json:"error,omitempty"`
	Phases  []phaseSpan `json:"phases"`
	LBs     []deployLB  `json:"lbs"`
}

// phaseSpan is a step of a deploy: a cycle phase, or an in-place install.
type phaseSpan struct {
	Phase string    `json:"phase"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// deployLB is one LB's figures during one deploy.
type deployLB struct {
	Name        string       `json:"name"`
	WrkRequests int          `json:"wrk_requests"`
	WrkFailed   int          `json:"wrk_failed"`
	WrkRate     float64      `json:"wrk_rate_per_sec"`
	Sampler     sampleCounts `json:"version_sampler"`
}

func (d deployRun) summary() string {
	var parts []string
	for _, l := range d.LBs {
		parts = append(parts, fmt.Sprintf("%s: wrk %d/%d failed at %.0f req/s, sampler %d/%d failed, %d version changes",
			l.Name, l.WrkFailed, l.WrkRequests, l.WrkRate, l.Sampler.Failed, l.Sampler.Requests, l.Sampler.VersionChanges))
	}
	if d.Error != "" {
		parts = append(parts, "error: "+d.Error)
	}
	return strings.Join(parts, "; ")
}

// totals sums wrk and hey over every LB of a phase.
// zeroDowntimeLBs are the LBs the zero-downtime goal is about.
var zeroDowntimeLBs = []string{"nginx dynamic", "varnish"}

// totalsOf is totals over the LBs named.
func (p phaseResult) totalsOf(names ...string) (failed, requests int) {
	for _, l := range p.LBs {
		if slices.Contains(names, l.Name) {
			failed += l.failed()
			requests += l.requests()
		}
	}
	return failed, requests
}

func (p phaseResult) totals() (failed, requests int) {
	for _, l := range p.LBs {
		failed += l.failed()
		requests += l.requests()
	}
	return failed, requests
}

// meanSeconds is the mean length of the phase's deploys.
func (p phaseResult) meanSeconds() float64 {
	if len(p.Deploys) == 0 {
		return 0
	}
	var s float64
	for _, d := range p.Deploys {
		s += d.Seconds
	}
	return round2(s / float64(len(p.Deploys)))
}

// per100k is a failure rate per 100,000 requests.
func per100k(failed, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return round2(float64(failed) * 100_000 / float64(requests))
}

// ratio renders a/b, cycler over in-place.
func ratio(a, b float64) string {
	switch {
	case b == 0 && a == 0:
		return "equal (both 0)"
	case b == 0:
		return "n/a (in-place 0)"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// finish checks the goals and writes the notes.
func (rep *cycleReport) finish() {
	// The zero-downtime goal is for nginx in dynamic mode and
	// varnish; reload mode is reported beside them (each reload closes idle
	// keep-alive connections, which wrk counts as failures).
	failed, requests := rep.Cycler.totalsOf(zeroDowntimeLBs...)
	pf, pr := rep.InPlace.totalsOf(zeroDowntimeLBs...)
	rep.Goals = append(rep.Goals, lbGoal{
		Goal:   fmt.Sprintf("0 failed requests out of at least %d during the cycles through %s (wrk + hey)", goalRequests, strings.Join(zeroDowntimeLBs, " and ")),
		Met:    failed == 0 && requests >= goalRequests,
		Detail: fmt.Sprintf("%d failed of %d over %d cycles (in-place: %d failed of %d)", failed, requests, len(rep.Cycler.Deploys), pf, pr),
	})
	for i, l := range rep.Cycler.LBs {
		p := lbPhaseAt(rep.InPlace, i)
		rep.Goals = append(rep.Goals, lbGoal{
			Goal: fmt.Sprintf("0 failed requests through %s during the cycles (wrk + hey)", l.Name),
			Met:  l.failed() == 0,
			Detail: fmt.Sprintf("%d failed of %d: wrk %d (non-2xx %d, socket errors %d), hey %d; the Go client %d of %d (%d idle keepalive connections closed by the LB); in-place: %d of %d",
				l.failed(), l.requests(), l.Wrk.Failed, l.Wrk.Non2xx, l.Wrk.Failed-l.Wrk.Non2xx, l.Hey.Failed, l.Go.Failed, l.Go.Requests, l.Go.IdleClosed, p.failed(), p.requests()),
		})
	}
	for _, l := range rep.Cycler.LBs {
		rep.Goals = append(rep.Goals, lbGoal{
			Goal:   fmt.Sprintf("at least %d req/s from wrk through %s during every cycle", goalRate, l.Name),
			Met:    l.WrkMinRate >= goalRate,
			Detail: fmt.Sprintf("lowest cycle %.0f req/s, whole phase %.0f req/s (target %.0f); hey %.0f req/s", l.WrkMinRate, l.Wrk.Rate, rep.WrkTarget, l.Hey.Rate),
		})
	}
	live := 0
	for _, d := range rep.Cycler.Deploys {
		if d.Error == "" {
			live++
		}
	}
	rep.Goals = append(rep.Goals, lbGoal{Goal: "every cycle finished live (cyclerctl deploy exit 0)", Met: live == len(rep.Cycler.Deploys),
		Detail: fmt.Sprintf("%d of %d", live, len(rep.Cycler.Deploys))})
	rep.Notes = cycleNotes(rep)
}

// writeCycleReport writes benchmarks-cycle.{json,md,svg} to dir.
func writeCycleReport(t *testing.T, dir string, rep cycleReport) {
	t.Helper()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		harness.Fatal(t, err)
	}
	files := map[string][]byte{
		"benchmarks-cycle.json": append(js, '\n'),
		"benchmarks-cycle.md":   []byte(renderCycleMarkdown(rep)),
		"benchmarks-cycle.svg":  []byte(renderCycleChart(rep)),
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			harness.Fatal(t, err)
		}
		t.Logf("wrote %s", path)
	}
}

// renderCycleMarkdown renders the report for people.
func renderCycleMarkdown(rep cycleReport) string {
	var b strings.Builder
	m, v := rep.Machine, rep.Versions
	fmt.Fprintf(&b, "# Cycle benchmarks: what users see during a deploy\n\nMeasured by `make bench-cycle`, which runs:\n\n    %s\n\n", rep.Command)
	fmt.Fprintf(&b, "It installs the tools first with `scripts/install-bench-tools.sh`. The numbers are from one run on %s that took %.1f minutes;\n"+
		"`docs/benchmarks-cycle.json` holds them in machine-readable form, with every deploy.\n\n", rep.Date.Format("2006-01-02"), rep.RunMinutes)
	if rep.Quick {
		b.WriteString("**This is a quick trial run ($CYCLER_BENCH_QUICK=1): fewer cycles and flips than the report in docs/.**\n\n")
	}
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s, %s, Linux %s; load average at the start: %s.\n\n", m.NProc, m.CPUModel, m.GoVersion, m.OSArch, m.Kernel, m.LoadAvg)
	fmt.Fprintf(&b, "Versions: %s; %s; %s; %s; %s; %s.\n\n", v.Nginx, v.Varnish, v.Consul, v.Wrk, v.Hey, v.ConsulTemplate)

	cf, cr := rep.Cycler.totals()
	pf, pr := rep.InPlace.totals()
	fmt.Fprintf(&b, "The lab: a real Consul, 3 cyclerd servers, 4 agents each supervising the demo app (2 blue, 2 green), and three LBs, each\n"+
		"driven by its own `cyclerd lb`: nginx in dynamic mode, nginx in reload mode and varnish. Every figure below comes from the same run.\n\n"+
		"- **cycler**: %d consecutive full cycles (`cyclerctl deploy`: hide, deploy, smoke, switch, bake, standby), %s.\n"+
		"- **in-place** (the peer): %d deploys the way hand-written release scripts do them: for each live host in turn, the agent is asked to install\n"+
		"  the new package directly (`POST /v1/agent/install`), which stops the app, switches the release and starts it again, with no hiding.\n\n",
		len(rep.Cycler.Deploys), versionRange(rep.Cycler), len(rep.InPlace.Deploys))
	fmt.Fprintf(&b, "Load on each LB at once, through both phases: wrk (`-t1 -c%d`, paced by `delay()` to about %.0f req/s), hey %s (`-c %d -q %g`, %.0f req/s)\n"+
		"TestBenchLBSwitch's open-loop Go client (%.0f req/s over %d keepalive connections), and a Go client that records the version of one request every %.0f ms (the chart).\n"+
		"A failed request is a non-2xx answer or a socket error. The headline figure counts wrk and hey, the two standard clients.\n\n",
		rep.WrkConns, rep.WrkTarget, strings.TrimPrefix(v.Hey, "hey "), rep.HeyConns, rep.HeyRate/float64(rep.HeyConns), rep.HeyRate, rep.GoRate, lbLoadConns, rep.SampleEveryMS)

	b.WriteString("## Summary\n\n| figure | cycler | in-place (peer) | cycler vs in-place |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| failed requests, wrk + hey, every LB | %d of %d | %d of %d | %s (per request: %.2f vs %.2f per 100k) |\n",
		cf, cr, pf, pr, ratio(per100k(cf, cr), per100k(pf, pr)), per100k(cf, cr), per100k(pf, pr))
	for i, c := range rep.Cycler.LBs {
		p := lbPhaseAt(rep.InPlace, i)
		fmt.Fprintf(&b, "| %s: failed, wrk | %d of %d | %d of %d | %s |\n", c.Name, c.Wrk.Failed, c.Wrk.Requests, p.Wrk.Failed, p.Wrk.Requests,
			ratio(per100k(c.Wrk.Failed, c.Wrk.Requests), per100k(p.Wrk.Failed, p.Wrk.Requests)))
		fmt.Fprintf(&b, "| %s: failed, hey | %d of %d | %d of %d | %s |\n", c.Name, c.Hey.Failed, c.Hey.Requests, p.Hey.Failed, p.Hey.Requests,
			ratio(per100k(c.Hey.Failed, c.Hey.Requests), per100k(p.Hey.Failed, p.Hey.Requests)))
		fmt.Fprintf(&b, "| %s: failed, Go client (idle keepalive connections the LB closed) | %d of %d (%d) | %d of %d (%d) | %s |\n", c.Name, c.Go.Failed, c.Go.Requests, c.Go.IdleClosed,
			p.Go.Failed, p.Go.Requests, p.Go.IdleClosed, ratio(per100k(c.Go.Failed, c.Go.Requests), per100k(p.Go.Failed, p.Go.Requests)))
		fmt.Fprintf(&b, "| %s: failed, version sampler | %d of %d | %d of %d | %s |\n", c.Name, c.Sampler.Failed, c.Sampler.Requests, p.Sampler.Failed, p.Sampler.Requests,
			ratio(per100k(c.Sampler.Failed, c.Sampler.Requests), per100k(p.Sampler.Failed, p.Sampler.Requests)))
		fmt.Fprintf(&b, "| %s: latency p50 / p99, wrk | %.2f / %.2f ms | %.2f / %.2f ms | %s / %s |\n", c.Name, c.WrkP50MS, c.WrkP99MS, p.WrkP50MS, p.WrkP99MS,
			ratio(c.WrkP50MS, p.WrkP50MS), ratio(c.WrkP99MS, p.WrkP99MS))
		fmt.Fprintf(&b, "| %s: latency p50 / p99, hey | %.1f / %.1f ms | %.1f / %.1f ms | %s / %s |\n", c.Name, c.Hey.P50MS, c.Hey.P99MS, p.Hey.P50MS, p.Hey.P99MS,
			ratio(c.Hey.P50MS, p.Hey.P50MS), ratio(c.Hey.P99MS, p.Hey.P99MS))
		fmt.Fprintf(&b, "| %s: req/s, wrk (lowest deploy) / hey | %.0f (%.0f) / %.0f | %.0f (%.0f) / %.0f | |\n", c.Name, c.Wrk.Rate, c.WrkMinRate, c.Hey.Rate,
			p.Wrk.Rate, p.WrkMinRate, p.Hey.Rate)
		fmt.Fprintf(&b, "| %s: version changes seen per deploy | %.1f | %.1f | |\n", c.Name,
			float64(c.Sampler.VersionChanges)/float64(max(len(rep.Cycler.Deploys), 1)), float64(p.Sampler.VersionChanges)/float64(max(len(rep.InPlace.Deploys), 1)))
	}
	fmt.Fprintf(&b, "| mean deploy time | %.1f s | %.1f s | %s |\n", rep.Cycler.meanSeconds(), rep.InPlace.meanSeconds(), ratio(rep.Cycler.meanSeconds(), rep.InPlace.meanSeconds()))
	b.WriteString("\nA ratio divides the cycler figure by the in-place one; failures are compared per request, since the phases last different times.\n" +
		"A version change is two consecutive sampler answers from different versions: 1 per deploy is a clean cut-over, more means users were\n" +
		"answered by old and new versions in turn.\n")

	b.WriteString("\n## Goals of the issue\n\n| goal | met | measured |\n|---|---|---|\n")
	for _, g := range rep.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, met, g.Detail)
	}

	fmt.Fprintf(&b, "\n## LB switch latency against consul-template\n\nTestBenchLBSwitch's measurement, run again in this run (its own Consul and demo apps, %d flips per LB;\n"+
		"see [benchmarks-lb.md](benchmarks-lb.md) for the method): from the KV write of a new generation to the first answer from the new pool.\n\n", rep.SwitchFlips)
	b.WriteString("| LB | p50 | p99 | max | p50 vs consul-template | p99 vs consul-template | failed requests under load (Go client, wrk) |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Switch {
		fmt.Fprintf(&b, "| %s | %.0f ms | %.0f ms | %.0f ms | %.2fx | %.2fx | %d of %d, %d of %d |\n", r.Name, r.P50MS, r.P99MS, r.MaxMS, r.P50VsCT, r.P99VsCT,
			r.Go.Failed, r.Go.Requests, r.Wrk.Failed, r.Wrk.Requests)
	}

	b.WriteString("\n## Versions served over time\n\n![version served through each LB during one cycle and one in-place deploy](benchmarks-cycle.svg)\n\n")
	b.WriteString("Each lane is one LB; the version sampler's answers are drawn on the row of the version that answered, failed requests as red ticks.\n" +
		"Dashed lines mark the cycle's phases (from its record) and each host's install in the in-place deploy. Both panels share one time scale.\n")

	for _, ph := range []phaseResult{rep.Cycler, rep.InPlace} {
		fmt.Fprintf(&b, "\n## Each deploy: %s\n\n| # | version | pool | time | result | steps |", ph.Name)
		for _, l := range ph.LBs {
			fmt.Fprintf(&b, " %s: wrk failed / requests (req/s) |", l.Name)
		}
		b.WriteString("\n|---|---|---|---|---|---|" + strings.Repeat("---|", len(ph.LBs)) + "\n")
		for i, d := range ph.Deploys {
			result := "live"
			if ph.Name != "cycler" {
				result = "done"
			}
			if d.Error != "" {
				result = mdCell(d.Error)
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %.1f s | %s | %s |", i+1, d.Version, d.Target, d.Seconds, result, spanSummary(d.Phases))
			for _, l := range d.LBs {
				fmt.Fprintf(&b, " %d / %d (%.0f) |", l.WrkFailed, l.WrkRequests, l.WrkRate)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n## Failures in detail\n\n")
	for _, ph := range []phaseResult{rep.Cycler, rep.InPlace} {
		for _, l := range ph.LBs {
			if l.failed()+l.Sampler.Failed+l.Go.Failed == 0 {
				continue
			}
			w, g := l.Wrk, l.Go
			fmt.Fprintf(&b, "- %s, %s: wrk non-2xx %v, socket errors connect/read/write/timeout %d/%d/%d/%d; hey statuses %v, errors %v; "+
				"Go client non-2xx %d, connect/write/read/timeout %d/%d/%d/%d, idle keepalive connections closed %d; sampler: %v; nginx error log: %v\n",
				ph.Name, l.Name, l.WrkByStatus, w.Connect, w.Read, w.Write, w.Timeout, l.Hey.ByStatus, l.Hey.Errors,
				g.Non2xx, g.Connect, g.Write, g.Read, g.Timeout, g.IdleClosed, l.Sampler.FirstErrors, l.NginxErrors)
		}
	}
	if cf+pf == 0 {
		b.WriteString("- none: no client saw a failed request in either phase.\n")
	}
	if len(rep.PushRetries) > 0 {
		b.WriteString("\n## Package pushes that failed and were retried\n\n")
		for _, r := range rep.PushRetries {
			fmt.Fprintf(&b, "- %s\n", mdCell(r))
		}
	}
	b.WriteString("\n## Notes\n\n")
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

// lbPhaseAt is ph's i-th LB, or a zero one.
func lbPhaseAt(ph phaseResult, i int) lbPhase {
	if i < len(ph.LBs) {
		return ph.LBs[i]
	}
	return lbPhase{}
}

func versionRange(ph phaseResult) string {
	if len(ph.Deploys) == 0 {
		return "none"
	}
	return fmt.Sprintf("versions %s to %s", ph.Deploys[0].Version, ph.Deploys[len(ph.Deploys)-1].Version)
}

// spanSummary renders the steps of a deploy with their lengths.
func spanSummary(spans []phaseSpan) string {
	var parts []string
	for _, s := range spans {
		d := "running"
		if !s.End.IsZero() {
			d = fmt.Sprintf("%.1f s", s.End.Sub(s.Start).Seconds())
		}
		parts = append(parts, s.Phase+" "+d)
	}
	return strings.Join(parts, ", ")
}

// cycleNotes explains the method.
func cycleNotes(rep *cycleReport) []string {
	notes := []string{
		"The first cycle (1.0.0 onto blue) sets the lab up and is not measured; each package is pushed (`cyclerctl package push`) just before its deploy's window, under hey's and the Go client's load but outside the wrk window and the deploy's timing. The lab's service config is the integration tests' (`labService`): drain 1s, bake_time 3s, bake_interval 500ms, max_parallel 2, smoke GET / on each host, bake GET /bake through every LB.",
		"The in-place phase runs after the cycler phase, on the pool the last cycle left live, one host at a time; an install returns once the new app passes its local health check, and the deploy ends when every LB answers the new version only. The Consul checks still run (every second), so an LB drops a host whose app is down once Consul marks it critical, as any Consul-driven LB would: the in-place figures are those of the same LBs, not of an LB with a static backend list.",
		fmt.Sprintf("wrk pacing: each of the %d connections pauses %d ms (Lua delay()) between an answer and its next request, which gives about %.0f req/s per LB when an answer takes about 1 ms. wrk has no fixed-rate mode (wrk2, which has one, is not available), and its delay() pacing does not survive a reconnect (after an nginx reload closes its idle connections its rate rises), so the harness runs one wrk per deploy and LB, from %s before the deploy until %s after it, and reports each run's rate; the lowest is in the summary. Its latency figures merge the latency histograms of every run of the phase (printed by the Lua done() hook), so p50 and p99 are exact over the phase.", rep.WrkConns, rep.WrkDelayMS, rep.WrkTarget, cycleMargin, cycleMargin),
		"wrk's failed requests are its own counters: non-2xx answers (counted by status in a Lua response() hook) and socket errors (connect, read, write, timeout). wrk counts a keepalive connection that the LB closes while it is idle as a read error, although no request was on it: nginx closes its idle connections on each reload.",
		fmt.Sprintf("hey runs once per phase and LB (`-z` until interrupted, `-c %d -q %g -t 5`); its figures are its own summary: answers by status and errors. hey uses Go's http.Transport, which resends an idempotent GET when a reused keepalive connection turns out to be closed before any answer, so hey does not see the idle-close errors wrk counts. Its percentiles are of answered requests, printed to 0.1 ms.", rep.HeyConns, rep.HeyRate/float64(rep.HeyConns)),
		fmt.Sprintf("The version sampler sends GET / through each LB every %.0f ms on a keepalive connection (2 s timeout) and records the version answered or the error; it runs through both phases. Its counts are per deploy window (the wrk window).", rep.SampleEveryMS),
		"nginx retries a request on another backend when connecting to one fails (proxy_next_upstream error timeout; dynamic mode allows one retry per other peer); varnish does not retry a failed backend fetch and answers 503. " +
			"In reload mode the upstream's `server` lines carry nginx's defaults, max_fails=1 and fail_timeout=10s: one failed connect takes a backend out of that worker's rotation for 10 s, so when both live hosts restart within 10 s of each other nginx has no backend left and answers 502 (`no live upstreams` in its error log, counted above) until the 10 s have passed, although both apps are up again. " +
			"Dynamic mode picks the peer in Lua (balancer_by_lua) and keeps no such failure state. A cycle never restarts a host an LB routes to, so none of this can happen in the cycler phase.",
		"The cyclerd lb processes use the integration tests' lb config: verify_interval 1s and debug logs. Every process shares the 2-CPU machine with the load clients (and possibly other work: see the load average), so compare the two phases of the same run rather than across runs.",
		"p50 and p99 use the nearest rank.",
	}
	return notes
}

//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
)

// benchScaleCommand is how `make bench-scale` runs TestBenchScale.
const benchScaleCommand = "CYCLER_BENCH=1 go test -tags integration -count=1 -timeout 60m -run '^TestBenchScale$' -v ./integration/"

// Knobs of TestBenchScale, from the environment.
const (
	scaleQuickEnv   = "CYCLER_BENCH_QUICK"   // 1: scales 4 and 50, 1 measured cycle, 2 kills (development)
	scaleHostsEnv   = "CYCLER_BENCH_SCALES"  // host counts, comma-separated (default 4,50,500)
	scaleCyclesEnv  = "CYCLER_BENCH_CYCLES"  // measured cycles per scale (default 3)
	scaleResumesEnv = "CYCLER_BENCH_RESUMES" // leader kills mid-cycle at the largest scale (default 5)
	// scaleKillLead is how long before the bake deadline the leader is
	// killed: the next phase change is then due at once, so the time to it
	// is the failover plus whatever the new leader needs to carry on.
	scaleKillLead = 150 * time.Millisecond
)

// scaleSpec is one scale of the benchmark.
type scaleSpec struct {
	Hosts       int    `json:"hosts"`
	Service     string `json:"service"`
	Real        bool   `json:"real_agents"`
	MaxParallel int    `json:"max_parallel"`
}

// scaleBenchReport is docs/benchmarks-scale.json.
type scaleBenchReport struct {
	Command string        `json:"command"`
	Date    time.Time     `json:"date"`
	Machine benchMachine  `json:"machine"`
	Quick   bool          `json:"quick"`
	RunSecs float64       `json:"run_seconds"`
	Waits   scaleWaits    `json:"configured_waits"`
	Scales  []scaleResult `json:"scales"`
	RSS     []scaleRSS    `json:"server_rss"`
	Resume  resumeResult  `json:"resume"`
	Goals   []scaleGoal   `json:"goals"`
	// ConsulTimeouts and ConsulRefused count fleetsim log lines of Consul
	// calls that timed out or were refused (429) over the whole run.
	ConsulTimeouts int      `json:"fleetsim_consul_timeouts"`
	ConsulRefused  int      `json:"fleetsim_consul_refused"`
	Simulated      []string `json:"simulated"`
	Notes          []string `json:"notes"`
}

type scaleWaits struct {
	DrainMS         float64 `json:"drain_ms"`
	BakeTimeMS      float64 `json:"bake_time_ms"`
	BakeIntervalMS  float64 `json:"bake_interval_ms"`
	CheckIntervalMS float64 `json:"sim_check_interval_ms"`
}

// scaleResult is one scale's measured cycles and its peer.
type scaleResult struct {
	scaleSpec
	Cycles        []scaleCycle `json:"cycles"`
	OverheadP50MS float64      `json:"overhead_p50_ms"`
	OverheadMaxMS float64      `json:"overhead_max_ms"`
	// PeerMS are the peer's runs: the same number of hosts (one pool)
	// installed straight through the agents, MaxParallel at a time.
	PeerMS    []float64 `json:"peer_ms"`
	PeerP50MS float64   `json:"peer_p50_ms"`
	// Ratio is OverheadP50MS / PeerP50MS.
	Ratio float64 `json:"ratio"`
	// PhaseP50MS is each phase's median time over the measured cycles.
	PhaseP50MS map[string]float64 `json:"phase_p50_ms"`
}

// scaleCycle is one measured cycle.
type scaleCycle struct {
	ID string `json:"id"`
	// WallMS runs from just before POST /v1/cycles to the cycle's finish.
	WallMS float64 `json:"wall_ms"`
	// WaitsMS is what was subtracted: bake_time, plus drain when the hide
	// phase had to wait it (it does not when the target pool is already
	// the hidden standby).
	WaitsMS     float64            `json:"waits_ms"`
	DrainWaited bool               `json:"drain_waited"`
	OverheadMS  float64            `json:"overhead_ms"`
	PhasesMS    map[string]float64 `json:"phases_ms"`
}

// scaleRSS is one server's memory at one point of the run.
type scaleRSS struct {
	When  string  `json:"when"`
	Hosts int     `json:"hosts"`
	Node  string  `json:"node"`
	Role  string  `json:"role"`
	RSSMB float64 `json:"vmrss_mb"`
	HWMMB float64 `json:"vmhwm_mb"`
}

// resumeResult is the leader kills mid-cycle.
type resumeResult struct {
	Hosts   int            `json:"hosts"`
	Samples []resumeSample `json:"samples"`
	P50MS   float64        `json:"resume_p50_ms"`
	MaxMS   float64        `json:"resume_max_ms"`
	// RaftP50MS and RaftMaxMS are the peer: kill to a new Raft leader.
	RaftP50MS float64 `json:"raft_p50_ms"`
	RaftMaxMS float64 `json:"raft_max_ms"`
}

// resumeSample is one kill -9 of the leader during a cycle's bake.
type resumeSample struct {
	Cycle  string `json:"cycle"`
	Killed string `json:"killed"`
	// RaftMS: kill to a surviving server reporting itself leader.
	RaftMS float64 `json:"raft_ms"`
	// ResumeMS: kill to the start of the phase after bake, committed by
	// the new leader (the time it stamped on the phase).
	ResumeMS float64 `json:"resume_ms"`
	// OnTopMS is ResumeMS - RaftMS: what the orchestrator adds to Raft.
	OnTopMS float64 `json:"on_top_ms"`
}

type scaleGoal struct {
	What     string  `json:"what"`
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
}

// TestBenchScale measures the orchestration overhead of a cycle at 4, 50
// and 500 hosts against a peer from the same run, the servers' memory at 4
// and 500 hosts, and how long a new leader takes to carry a cycle on after
// kill -9 of the leader. It asserts only that every cycle finished live;
// the numbers go to docs/benchmarks-scale.md and .json. Run it with `make
// bench-scale`.
func TestBenchScale(t *testing.T) {
	if os.Getenv("CYCLER_BENCH") != "1" {
		t.Skip("benchmark: set CYCLER_BENCH=1 to run it (make bench-scale); it rewrites docs/benchmarks-scale.{md,json}")
	}
	began := time.Now()
	quick := os.Getenv(scaleQuickEnv) == "1"
	hostCounts, cycles, resumes := []int{4, 50, 500}, 3, 5
	if quick {
		hostCounts, cycles, resumes = []int{4, 50}, 1, 2
	}
	if v := os.Getenv(scaleHostsEnv); v != "" {
		hostCounts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 || n%2 != 0 {
				harness.Fatalf(t, "$%s=%q: each host count must be an even number of at least 2", scaleHostsEnv, v)
			}
			hostCounts = append(hostCounts, n)
		}
		slices.Sort(hostCounts)
	}
	cycles, resumes = envInt(t, scaleCyclesEnv, cycles), envInt(t, scaleResumesEnv, resumes)
	outDir := os.Getenv(benchOutEnv)
	if outDir == "" {
		outDir = filepath.Join(harness.ModuleRoot(t), "docs")
	}
	var scales []scaleSpec
	for i, n := range hostCounts {
		real := i == 0 && n == 4 // the smallest scale runs real agent processes
		scales = append(scales, scaleSpec{Hosts: n, Service: scaleService(n, real), Real: real, MaxParallel: scaleMaxParallel(n)})
	}
	command := benchScaleCommand
	for _, k := range []string{scaleResumesEnv, scaleCyclesEnv, scaleHostsEnv, scaleQuickEnv} {
		if v := os.Getenv(k); v != "" {
			command = k + "=" + v + " " + command // the knobs this run was given
		}
	}
	rep := scaleBenchReport{Command: command, Date: time.Now().UTC().Round(time.Second), Machine: machine(), Quick: quick,
		Waits: scaleWaits{DrainMS: ms(scaleDrain), BakeTimeMS: ms(scaleBakeTime), BakeIntervalMS: ms(scaleBakeInterval),
			CheckIntervalMS: ms(scaleCheckInterval)}}
	t.Logf("machine: %+v; scales %v, %d measured cycles each, %d kills", rep.Machine, hostCounts, cycles, resumes)

	e := startScaleEnv(t, scales)
	ctx := testContext(t, 55*time.Minute)
	for i, s := range scales {
		e.startScaleAgents(ctx, s)
		rep.Scales = append(rep.Scales, e.measureScale(ctx, s, cycles))
		if i == 0 {
			rep.RSS = append(rep.RSS, e.serverMemory(ctx, "after the cycles of the first scale", s.Hosts)...)
		}
	}
	largest := scales[len(scales)-1]
	if len(scales) > 1 {
		rep.RSS = append(rep.RSS, e.serverMemory(ctx, "after the cycles of the largest scale", largest.Hosts)...)
	}
	rep.Resume = e.measureResumes(ctx, largest, resumes)
	rep.ConsulTimeouts, rep.ConsulRefused = e.consulTrouble()
	rep.RunSecs = round2(time.Since(began).Seconds())
	rep.Goals = scaleGoals(rep)
	rep.Simulated, rep.Notes = scaleNotes(scales)
	writeScaleReport(t, outDir, rep)
}

// measureScale runs two warm-up cycles on s (the first puts a pool live
// with no LB to wait for; the second is the first deploy to the other
// pool), then cycles measured cycles, each followed by the peer's install
// on the pool the cycle left as hidden standby.
func (e *scaleEnv) measureScale(ctx context.Context, s scaleSpec, cycles int) scaleResult {
	e.t.Helper()
	res := scaleResult{scaleSpec: s, PhaseP50MS: map[string]float64{}}
	for i := range 2 {
		c, sent := e.runCycle(ctx, s, "warm")
		e.t.Logf("%s: warm-up cycle %d/2 %s took %s", s.Service, i+1, c.ID, c.FinishedAt.Sub(sent).Round(time.Millisecond))
	}
	phases := map[string][]float64{}
	for i := range cycles {
		c, sent := e.runCycle(ctx, s, "v")
		sc := scaleCycle{ID: c.ID, WallMS: ms(c.FinishedAt.Sub(sent)), PhasesMS: map[string]float64{}}
		waits := scaleBakeTime
		if c.HideGeneration != c.BaseGeneration {
			waits += scaleDrain
			sc.DrainWaited = true
		}
		sc.WaitsMS = ms(waits)
		sc.OverheadMS = round2(sc.WallMS - sc.WaitsMS)
		for _, sp := range c.Phases {
			if d := sp.Duration(); d > 0 {
				sc.PhasesMS[string(sp.Phase)] += ms(d)
			}
		}
		for p, d := range sc.PhasesMS {
			phases[p] = append(phases[p], d)
		}
		res.Cycles = append(res.Cycles, sc)
		peer := e.peerInstall(ctx, s, c.From)
		res.PeerMS = append(res.PeerMS, ms(peer))
		e.t.Logf("%s: cycle %d/%d %s: wall %.0f ms, overhead %.0f ms, phases %s; peer %s", s.Service, i+1, cycles, c.ID,
			sc.WallMS, sc.OverheadMS, scaleJSON(sc.PhasesMS), peer.Round(time.Millisecond))
	}
	var over []float64
	for _, c := range res.Cycles {
		over = append(over, c.OverheadMS)
	}
	res.OverheadP50MS, res.OverheadMaxMS = scaleMedian(over), slices.Max(over)
	res.PeerP50MS = scaleMedian(res.PeerMS)
	res.Ratio = round2(res.OverheadP50MS / res.PeerP50MS)
	for p, ds := range phases {
		res.PhaseP50MS[p] = scaleMedian(ds)
	}
	return res
}

// measureResumes kills the leader with SIGKILL during the bake of n
// cycles of s, just before the bake deadline, and times the failover.
func (e *scaleEnv) measureResumes(ctx context.Context, s scaleSpec, n int) resumeResult {
	e.t.Helper()
	res := resumeResult{Hosts: s.Hosts}
	for len(res.Samples) < n {
		if smp, ok := e.resumeOnce(ctx, s); ok {
			res.Samples = append(res.Samples, smp)
			e.t.Logf("kill %d/%d of leader %s during the bake of %s: new Raft leader after %.0f ms, next phase committed after %.0f ms",
				len(res.Samples), n, smp.Killed, smp.Cycle, smp.RaftMS, smp.ResumeMS)
		}
	}
	var resume, raft []float64
	for _, smp := range res.Samples {
		resume, raft = append(resume, smp.ResumeMS), append(raft, smp.RaftMS)
	}
	res.P50MS, res.MaxMS = scaleMedian(resume), slices.Max(resume)
	res.RaftP50MS, res.RaftMaxMS = scaleMedian(raft), slices.Max(raft)
	return res
}

// resumeOnce runs one cycle and kills the leader during its bake. ok is
// false when the kill came too late to count (the old leader had already
// moved the cycle on).
func (e *scaleEnv) resumeOnce(ctx context.Context, s scaleSpec) (resumeSample, bool) {
	e.t.Helper()
	_, digest := e.pushVersion(ctx, s.Service, s.Real, "resume")
	c := e.startCycle(ctx, s.Service, digest)
	baking := e.waitCycle(ctx, e.c.nodes, c.ID, "its bake", 50*time.Millisecond, func(c cycle.Cycle) bool {
		return c.Phase == cycle.Bake && !c.BakeUntil.IsZero()
	})
	leader := e.c.waitLeader(ctx, e.c.nodes...)
	// A wait for an instant, not for a condition: the kill must land just
	// before the deadline the cycle committed.
	at := time.NewTimer(time.Until(baking.BakeUntil.Add(-scaleKillLead)))
	select {
	case <-ctx.Done():
		harness.Fatal(e.t, ctx.Err())
	case <-at.C:
	}
	killedAt := time.Now()
	if err := leader.Kill(); err != nil {
		harness.Fatal(e.t, err)
	}
	survivors := e.c.others(leader)
	raftAt := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			for _, n := range survivors {
				sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				st, err := n.self(sctx)
				cancel()
				if err == nil && st.State == "Leader" {
					raftAt <- time.Now()
					return
				}
			}
			time.Sleep(5 * time.Millisecond) // a poll interval: the survivors answer at once
		}
	}()
	next := e.waitCycle(ctx, survivors, c.ID, "the phase after bake", 20*time.Millisecond, func(c cycle.Cycle) bool { return c.Phase != cycle.Bake })
	var raft time.Time
	select {
	case raft = <-raftAt:
	case <-ctx.Done():
		harness.Fatal(e.t, ctx.Err())
	}
	var moved time.Time
	for i, sp := range next.Phases {
		if sp.Phase == cycle.Bake && i+1 < len(next.Phases) {
			moved = next.Phases[i+1].Start
		}
	}
	e.waitCycle(ctx, survivors, c.ID, "its end", 200*time.Millisecond, func(c cycle.Cycle) bool { return c.Phase == cycle.Done })
	if err := leader.Restart(); err != nil {
		harness.Fatal(e.t, err)
	}
	e.c.waitMembers(ctx, e.c.nodes...)
	st, err := e.c.waitLeader(ctx, e.c.nodes...).self(ctx)
	if err != nil {
		harness.Fatal(e.t, err)
	}
	e.c.waitApplied(ctx, st.AppliedIndex, e.c.nodes...)
	if moved.IsZero() || !moved.After(killedAt) {
		e.t.Logf("cycle %s left bake at %s, before the kill at %s; not counted", c.ID, moved.Format(time.StampMilli), killedAt.Format(time.StampMilli))
		return resumeSample{}, false
	}
	smp := resumeSample{Cycle: c.ID, Killed: leader.ID, RaftMS: ms(raft.Sub(killedAt)), ResumeMS: ms(moved.Sub(killedAt))}
	smp.OnTopMS = round2(smp.ResumeMS - smp.RaftMS)
	return smp, true
}

// median is the lower median of values (nearest rank 50).
func scaleMedian(values []float64) float64 {
	return percentile(slices.Sorted(slices.Values(values)), 50)
}

// scaleGoals checks the report against the goals of the scale issue.
func scaleGoals(rep scaleBenchReport) []scaleGoal {
	var out []scaleGoal
	for _, s := range rep.Scales {
		goal := map[int]float64{4: 1000, 500: 15000}[s.Hosts]
		if goal > 0 {
			out = append(out, scaleGoal{What: fmt.Sprintf("orchestration overhead per cycle at %d hosts (p50)", s.Hosts),
				Goal: fmt.Sprintf("< %.0f ms", goal), Measured: s.OverheadP50MS, Unit: "ms", Met: s.OverheadP50MS < goal})
		}
	}
	for _, r := range rep.RSS {
		if r.Hosts == 500 && r.Role == "leader" {
			out = append(out, scaleGoal{What: "leader VmRSS at 500 hosts after the cycles", Goal: "< 100 MB", Measured: r.RSSMB, Unit: "MB", Met: r.RSSMB < 100})
		}
	}
	if len(rep.Resume.Samples) > 0 {
		out = append(out, scaleGoal{What: fmt.Sprintf("resume after kill -9 of the leader at %d hosts (max of %d)", rep.Resume.Hosts, len(rep.Resume.Samples)),
			Goal: "< 5000 ms", Measured: rep.Resume.MaxMS, Unit: "ms", Met: rep.Resume.MaxMS < 5000})
	}
	return out
}

// writeScaleReport writes benchmarks-scale.json and .md to dir.
func writeScaleReport(t *testing.T, dir string, rep scaleBenchReport) {
	t.Helper()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		harness.Fatal(t, err)
	}
	var md strings.Builder
	m := rep.Machine
	fmt.Fprintf(&md, `# Scale benchmark

Measured by `+"`make bench-scale`"+`, which runs:

    %s

on real processes on loopback: a Consul server agent, three `+"`cyclerd server`"+`s with the production Raft timing, one nginx LB
(dynamic mode) with its `+"`cyclerd lb`"+`, and the agents of each scale (the simulated ones with Consul client agents, see the notes). The numbers are from one run on %s (%s, %.0f s);
%s holds them in machine-readable form.

Machine: %d CPUs (%s), %s, %s, Linux %s; load average at the start: %s.

## Goals

| what | goal | measured | met |
|---|---|---|---|
`, rep.Command, rep.Date.Format("2006-01-02"), map[bool]string{true: "quick run", false: "full run"}[rep.Quick], rep.RunSecs,
		"`docs/benchmarks-scale.json`", m.NProc, m.CPUModel, m.GoVersion, m.OSArch, m.Kernel, m.LoadAvg)
	for _, g := range rep.Goals {
		fmt.Fprintf(&md, "| %s | %s | %.0f %s | %s |\n", g.What, g.Goal, g.Measured, g.Unit, map[bool]string{true: "yes", false: "**no**"}[g.Met])
	}
	fmt.Fprintf(&md, `
## Orchestration overhead per cycle

Overhead = wall time − configured waits (bake_time %.0f ms, and drain %.0f ms when the hide phase waited it). The peer is the
same number of hosts installed straight through the agents, max_parallel at a time (see the notes).

| hosts | agents | max_parallel | overhead p50 | overhead max | peer p50 | overhead / peer |
|---|---|---|---|---|---|---|
`, rep.Waits.BakeTimeMS, rep.Waits.DrainMS)
	for _, s := range rep.Scales {
		fmt.Fprintf(&md, "| %d | %s | %d | %.0f ms | %.0f ms | %.0f ms | %.2f |\n", s.Hosts, scaleAgentsKind(s.scaleSpec), s.MaxParallel,
			s.OverheadP50MS, s.OverheadMaxMS, s.PeerP50MS, s.Ratio)
	}
	phases := []string{"preflight", "hide", "deploy", "smoke", "switch", "bake", "standby"}
	md.WriteString("\nMedian time per phase (ms; bake includes bake_time):\n\n| hosts | " + strings.Join(phases, " | ") + " |\n|---|" + strings.Repeat("---|", len(phases)) + "\n")
	for _, s := range rep.Scales {
		fmt.Fprintf(&md, "| %d |", s.Hosts)
		for _, p := range phases {
			fmt.Fprintf(&md, " %.0f |", s.PhaseP50MS[p])
		}
		md.WriteString("\n")
	}
	md.WriteString("\nEvery measured cycle:\n\n| hosts | cycle | wall | subtracted | drain waited | overhead | peer |\n|---|---|---|---|---|---|---|\n")
	for _, s := range rep.Scales {
		for i, c := range s.Cycles {
			fmt.Fprintf(&md, "| %d | %s | %.0f ms | %.0f ms | %v | %.0f ms | %.0f ms |\n", s.Hosts, c.ID, c.WallMS, c.WaitsMS, c.DrainWaited, c.OverheadMS, s.PeerMS[i])
		}
	}
	md.WriteString("\n## Server memory\n\n| when | hosts | node | role | VmRSS | VmHWM |\n|---|---|---|---|---|---|\n")
	for _, r := range rep.RSS {
		fmt.Fprintf(&md, "| %s | %d | %s | %s | %.1f MB | %.1f MB |\n", r.When, r.Hosts, r.Node, r.Role, r.RSSMB, r.HWMMB)
	}
	rs := rep.Resume
	fmt.Fprintf(&md, `
## Resume after kill -9 of the leader mid-cycle

%d kills at %d hosts, each during the bake of a cycle, %.0f ms before its deadline. Resume: kill → the new leader commits
the next phase (standby). Raft: kill → a surviving server reports itself leader, in the same kill.

| | p50 | max |
|---|---|---|
| resume (kill → next phase committed) | %.0f ms | %.0f ms |
| Raft failover (kill → new leader) | %.0f ms | %.0f ms |

| cycle | killed | Raft | resume | on top of Raft |
|---|---|---|---|---|
`, len(rs.Samples), rs.Hosts, ms(scaleKillLead), rs.P50MS, rs.MaxMS, rs.RaftP50MS, rs.RaftMaxMS)
	for _, smp := range rs.Samples {
		fmt.Fprintf(&md, "| %s | %s | %.0f ms | %.0f ms | %.0f ms |\n", smp.Cycle, smp.Killed, smp.RaftMS, smp.ResumeMS, smp.OnTopMS)
	}
	fmt.Fprintf(&md, "\nOver the whole run, the fleetsim logs show %d Consul calls that ran out of time and %d connections Consul refused "+
		"(429, its per-client connection limit): the one Consul agent every simulated host shares is a bottleneck a real fleet, "+
		"with one Consul agent per host, does not have.\n", rep.ConsulTimeouts, rep.ConsulRefused)
	md.WriteString("\n## What is simulated\n\n")
	for _, n := range rep.Simulated {
		fmt.Fprintf(&md, "- %s\n", n)
	}
	md.WriteString("\n## Notes\n\n")
	for _, n := range rep.Notes {
		fmt.Fprintf(&md, "- %s\n", n)
	}
	for name, b := range map[string][]byte{"benchmarks-scale.json": append(js, '\n'), "benchmarks-scale.md": []byte(md.String())} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			harness.Fatal(t, err)
		}
		t.Logf("wrote %s", path)
	}
}

func scaleAgentsKind(s scaleSpec) string {
	if s.Real {
		return "real agent processes + demo app"
	}
	return "fleetsim (one process)"
}

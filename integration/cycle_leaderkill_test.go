//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// gatedLab is a fleetLab whose cycles wait at gates the test opens, so a
// test can hold a cycle in a phase for as long as it needs, with no sleeps
// and no timing guesses:
//
//   - smoke: the service has a command smoke check that waits until the file
//     <gates>/smoke-<version> exists (CYCLER_VERSION names the version);
//   - deploy: a package built with a deploy gate has a pre_switch hook that
//     waits until <gates>/deploy-<version> exists, so every install of it
//     stays in progress on the agents until then;
//   - switch and hide: stopping (SIGSTOP) an LB's `cyclerd lb` holds every
//     phase that waits for that LB's ack.
type gatedLab struct {
	*fleetLab
	gates string
}

// gatedService is labService with the smoke gate and a bake of bakeTime;
// extra goes inside the service block.
func gatedService(gates, bakeTime, extra string) string {
	return fmt.Sprintf(`service "web" {
  min_live      = 1
  max_parallel  = 2
  drain         = "1s"
  bake_time     = %q
  bake_interval = "500ms"
  breaker {
    consecutive_failures = 4
    cooldown             = "10m"
  }
  smoke "root" {
    path    = "/"
    retries = 2
    backoff_initial = "200ms"
  }
  smoke "gate" {
    kind    = "command"
    command = ["/bin/sh", %q]
    timeout = "5m"
  }
  bake "through-lb" {
    path = "/bake"
  }
  %s
}
`, bakeTime, filepath.Join(gates, "smoke-gate.sh"), extra)
}

// startGatedLab starts a fleetLab with gatedService(bakeTime, extra).
func startGatedLab(t *testing.T, bakeTime, extra string) *gatedLab {
	t.Helper()
	gates := t.TempDir()
	script := "#!/bin/sh\n# Held until the test opens this version's smoke gate.\n" +
		"until [ -e \"$(dirname \"$0\")/smoke-$CYCLER_VERSION\" ]; do sleep 0.05; done\n"
	if err := os.WriteFile(filepath.Join(gates, "smoke-gate.sh"), []byte(script), 0o755); err != nil {
		harness.Fatal(t, err)
	}
	return &gatedLab{fleetLab: startFleetLab(t, gatedService(gates, bakeTime, extra)), gates: gates}
}

// open opens the gate name ("smoke-2.0.0", "deploy-2.0.0").
func (g *gatedLab) open(name string) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.gates, name), nil, 0o644); err != nil {
		harness.Fatal(g.t, err)
	}
}

// gatedPkg pushes the demo package of version; with deployGate its
// pre_switch hook waits for the gate deploy-<version>. It returns the
// digest.
func (g *gatedLab) gatedPkg(ctx context.Context, version string, deployGate bool) string {
	g.t.Helper()
	m := pkgtest.DemoManifest(version)
	if deployGate {
		gate := filepath.Join(g.gates, "deploy-"+version)
		m.Hooks.PreSwitch = [][]string{{"/bin/sh", "-c", "until [ -e '" + gate + "' ]; do sleep 0.05; done"}}
	}
	bin, err := os.ReadFile(g.demoBin)
	if err != nil {
		harness.Fatal(g.t, err)
	}
	body := pkgtest.Package(g.t, pkgtest.Manifest(m), pkgtest.Entry{Name: pkgtest.DemoBinary, Body: bin, Mode: 0o755})
	// Through the API rather than `cyclerctl package push`, whose retry
	// after a not_leader or unavailable answer fails with "file already
	// closed" (the HTTP client closed the file the first attempt sent);
	// each attempt here sends the bytes afresh and logs why it was retried.
	var p struct {
		Digest string `json:"digest"`
	}
	var fatal error
	err = harness.WaitFor(ctx, "push of "+version, func() error {
		n := g.c.waitLeader(ctx, g.c.nodes...)
		resp, err := n.API.DoUpload(ctx, http.MethodPost, "/v1/packages", bytes.NewReader(body), int64(len(body)), "application/octet-stream")
		if err != nil {
			if !retryable(err) {
				fatal = err
				return nil
			}
			g.t.Logf("push of %s through %s: %v; retrying", version, n.ID, err)
			return err
		}
		defer resp.Body.Close()
		fatal = json.NewDecoder(resp.Body).Decode(&p)
		return nil
	})
	if err == nil {
		err = fatal
	}
	if err != nil || p.Digest == "" {
		harness.Fatalf(g.t, "push of %s: %v (digest %q)", version, err, p.Digest)
	}
	return p.Digest
}

// deployOpen deploys version with every gate open and requires it live.
func (g *gatedLab) deployOpen(ctx context.Context, version string) {
	g.t.Helper()
	digest := g.gatedPkg(ctx, version, false)
	g.open("smoke-" + version)
	if code, c, out := g.deploy(ctx, g.c.nodes[0].APIAddr, digest); code != cycle.ExitLive {
		harness.Fatalf(g.t, "deploy %s: exit %d (%s)\n%s", version, code, c.Phase, out)
	}
	g.requireServing(ctx, version)
}

// stopLB stops (SIGSTOP) n's `cyclerd lb`, so it acks nothing until
// resumed; the LB itself keeps serving its last config. The returned
// function resumes it and is also run at cleanup.
func stopLB(t *testing.T, n *lbNode) (resume func()) {
	t.Helper()
	pid := n.Cyclerd.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		harness.Fatalf(t, "stop cyclerd lb %s (pid %d): %v", n.ID, pid, err)
	}
	resumed := false
	resume = func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	return resume
}

// asyncDeploy is a `cyclerctl deploy --follow` running in the background.
type asyncDeploy struct {
	done chan struct{}
	code int
	c    cycle.Cycle
	out  string
}

// startDeploy runs `cyclerctl --json deploy --follow digest` against addr
// in the background.
func (l *fleetLab) startDeploy(ctx context.Context, addr, digest string) *asyncDeploy {
	d := &asyncDeploy{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		stdout, stderr, err := l.c.ctl(ctx, addr, "--json", "deploy", "--follow", digest)
		d.code, d.out = exitCode(err), stdout+stderr
		_ = json.Unmarshal([]byte(stdout), &d.c)
	}()
	return d
}

// newestCycle reads the newest cycle of web through n (a local read).
func newestCycle(ctx context.Context, n *clusterNode) (cycle.Cycle, error) {
	var list []cycle.Cycle
	if err := n.API.Do(ctx, http.MethodGet, "/v1/cycles?service=web&limit=1", nil, &list); err != nil {
		return cycle.Cycle{}, err
	}
	if len(list) == 0 {
		return cycle.Cycle{}, fmt.Errorf("no cycle yet")
	}
	return list[0], nil
}

// waitCycle polls the newest cycle of package digest through n every 50
// ms until cond accepts it, and returns it.
func (l *fleetLab) waitCycle(ctx context.Context, n *clusterNode, digest, what string, cond func(cycle.Cycle) error) cycle.Cycle {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		c, err := newestCycle(ctx, n)
		switch {
		case err != nil:
			last = err
		case c.Package.Digest != digest:
			last = fmt.Errorf("newest cycle %s deploys %s", c.ID, c.Package.Digest)
		default:
			if last = cond(c); last == nil {
				return c
			}
		}
		select {
		case <-ctx.Done():
			harness.Fatalf(l.t, "wait for %s through %s: %v (last: %v)", what, n.ID, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// inPhase is a waitCycle condition: the cycle is in phase p.
func inPhase(p cycle.Phase) func(cycle.Cycle) error {
	return func(c cycle.Cycle) error {
		if c.Phase != p {
			return fmt.Errorf("cycle %s is in %s, want %s", c.ID, c.Phase, p)
		}
		return nil
	}
}

// leaderKill describes one leader-kill run: a cycle of version, held in a
// phase by gates, the leader killed there, then the gates opened.
type leaderKill struct {
	version string
	// deployGate holds the installs until the kill.
	deployGate bool
	// smokeGate holds smoke until the kill (or until stopLB stops, below).
	smokeGate bool
	// stopLB, when set, is the LB whose `cyclerd lb` is stopped: before
	// the cycle starts (stopAtSmoke false) or once the cycle is held at
	// its smoke gate, which then opens (stopAtSmoke true). It resumes
	// after the kill.
	stopLB      *lbNode
	stopAtSmoke bool
	// killAt is the phase the leader dies in; ready, if set, must also
	// accept the cycle (and may check Consul) before the kill.
	killAt cycle.Phase
	ready  func(cycle.Cycle) error
}

// runLeaderKill runs k against l: a checker throughout, a deploy followed
// through a follower, kill -9 of the leader at k.killAt, and then checks
// that the new leader ends the cycle (done, or rolled back or aborted with
// the old version still served), that the deploy command or the history
// shows the end, that the checker saw no failed request and no violation
// and that every LB serves only the final live version. It restarts the
// killed server before returning, so l has 3 servers again.
func runLeaderKill(ctx context.Context, l *gatedLab, k leaderKill) cycle.Cycle {
	t := l.t
	t.Helper()
	digest := l.gatedPkg(ctx, k.version, k.deployGate)
	if !k.smokeGate {
		l.open("smoke-" + k.version)
	}
	resume := func() {}
	if k.stopLB != nil && !k.stopAtSmoke {
		resume = stopLB(t, k.stopLB)
	}
	leader := l.c.waitLeader(ctx, l.c.nodes...)
	followers := l.c.others(leader)
	via, watch := followers[0], followers[1]

	chk := l.startChecker()
	started := time.Now()
	d := l.startDeploy(ctx, via.APIAddr, digest)
	if k.stopLB != nil && k.stopAtSmoke {
		l.waitCycle(ctx, watch, digest, "the cycle held at its smoke gate", inPhase(cycle.Smoke))
		resume = stopLB(t, k.stopLB)
		l.open("smoke-" + k.version)
	}
	at := l.waitCycle(ctx, watch, digest, "the cycle in phase "+string(k.killAt), func(c cycle.Cycle) error {
		if err := inPhase(k.killAt)(c); err != nil {
			return err
		}
		if k.ready != nil {
			return k.ready(c)
		}
		return nil
	})
	if now := l.c.waitLeader(ctx, l.c.nodes...); now != leader {
		harness.Fatalf(t, "leadership moved from %s to %s before the kill; the test needs the deploy sent through a follower", leader.ID, now.ID)
	}
	killedAt := time.Now()
	if err := leader.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	newLeader := l.c.waitLeader(ctx, followers...)
	t.Logf("killed leader %s with cycle %s in %s (rev %d) after %s; %s leads after %s",
		leader.ID, at.ID, at.Phase, at.Rev, killedAt.Sub(started).Round(time.Millisecond), newLeader.ID, time.Since(killedAt).Round(time.Millisecond))
	l.open("deploy-" + k.version)
	l.open("smoke-" + k.version)
	resume()

	select {
	case <-d.done:
	case <-ctx.Done():
		harness.Fatalf(t, "cyclerctl deploy did not end: %v", ctx.Err())
	}
	l.waitCycle(ctx, watch, digest, "the cycle's end", func(c cycle.Cycle) error {
		if !c.Phase.Terminal() {
			return fmt.Errorf("cycle %s is in %s", c.ID, c.Phase)
		}
		return nil
	})
	var final cycle.Cycle
	mustJSON(t, l.c.mustCtl(ctx, watch.APIAddr, "--json", "history", "--cycle", at.ID), &final)
	chk.cycleEnded(final)
	report := chk.finish()
	t.Logf("cycle %s ended %s after %s: %s (cyclerctl deploy --follow exited %d)",
		final.ID, final.Phase, time.Since(started).Round(time.Millisecond), final.Message, d.code)
	if !final.Phase.Terminal() {
		harness.Fatalf(t, "cycle %s is in %s after cyclerctl deploy returned (exit %d):\n%s", final.ID, final.Phase, d.code, d.out)
	}
	// deploy --follow either followed the cycle to its end through the
	// failover, or gave up with exit 1 and history tells the end.
	if d.code != 1 && (d.code != cycle.ExitCode(final.Phase) || d.c.ID != final.ID || d.c.Phase != final.Phase) {
		harness.Errorf(t, "cyclerctl deploy --follow exited %d with cycle %s in %s; history says %s ended %s (exit %d)\n%s",
			d.code, d.c.ID, d.c.Phase, final.ID, final.Phase, cycle.ExitCode(final.Phase), d.out)
	}
	if d.code == 1 {
		t.Logf("cyclerctl deploy --follow lost the cycle (exit 1); history shows its end:\n%s", d.out)
	}
	report.requireClean(t)

	live := k.version
	switch final.Phase {
	case cycle.Done:
	case cycle.Aborted:
		live = final.Previous.Version
		for lb, seen := range report.Versions {
			if seen[k.version] > 0 {
				harness.Errorf(t, "cycle %s aborted before the switch, yet LB %s served %s %d times", final.ID, lb, k.version, seen[k.version])
			}
		}
	case cycle.RolledBack:
		live = final.Previous.Version
	}
	l.requireServing(ctx, live)

	if err := leader.Restart(); err != nil {
		harness.Fatal(t, err)
	}
	l.c.waitMembers(ctx, l.c.nodes...)
	return final
}

// lbAcked is a ready condition: every LB in ids has acked generation gen
// of the cycle (read from Consul, not from the cycle).
func (l *fleetLab) lbAcked(gen func(cycle.Cycle) uint64, ids ...string) func(cycle.Cycle) error {
	return func(c cycle.Cycle) error {
		g := gen(c)
		if g == 0 {
			return fmt.Errorf("cycle %s has no generation yet", c.ID)
		}
		for _, id := range ids {
			a, err := (&lbEnv{t: l.t, consul: l.consul, cc: l.cc}).ack(id)
			if err != nil {
				return fmt.Errorf("ack of %s: %w", id, err)
			}
			if a.Generation < g {
				return fmt.Errorf("%s acked generation %d, want %d", id, a.Generation, g)
			}
		}
		return nil
	}
}

// TestCycleLeaderKill kills -9 the leader while a cycle is in deploy, in
// smoke and in switch, each held there by a gate, and checks that the new
// leader ends the cycle with no failed request and no request routed
// against an LB's ack.
func TestCycleLeaderKill(t *testing.T) {
	l := startGatedLab(t, "3s", "")
	ctx := testContext(t, 8*time.Minute)
	l.deployOpen(ctx, "1.0.0")
	tests := []struct {
		name string
		give leaderKill
	}{
		{"deploy", leaderKill{version: "2.0.0", deployGate: true, killAt: cycle.Deploy}},
		{"smoke", leaderKill{version: "3.0.0", smokeGate: true, killAt: cycle.Smoke}},
		{"switch", leaderKill{version: "4.0.0", smokeGate: true, stopAtSmoke: true, killAt: cycle.Switch}},
	}
	for _, tt := range tests {
		ok := t.Run(tt.name, func(t *testing.T) {
			parent := l.fleetLab.t
			l.fleetLab.t, l.c.t = t, t
			defer func() { l.fleetLab.t, l.c.t = parent, parent }()
			k := tt.give
			if k.killAt == cycle.Switch {
				// varnish-1 stops before the switch, so the switch waits for
				// its ack; the kill comes once nginx-1 acked the new
				// generation.
				k.stopLB = l.lbs[1]
				k.ready = l.lbAcked(func(c cycle.Cycle) uint64 { return c.SwitchGeneration }, l.lbs[0].ID)
			}
			final := runLeaderKill(ctx, l, k)
			if !slices.Contains([]cycle.Phase{cycle.Done, cycle.RolledBack, cycle.Aborted}, final.Phase) {
				harness.Fatalf(t, "cycle %s ended %s", final.ID, final.Phase)
			}
		})
		if !ok {
			break // the next run needs a lab in a known state
		}
	}
}

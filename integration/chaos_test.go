//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pool"
)

// The chaos suite, part A: faults of the servers and the LBs in the
// middle of a cycle, each with the invariant checker running throughout.
// Part B (Consul, agents, partitions) is in chaos_b_test.go.

// TestChaosLeaderKillHide kills -9 the leader while it waits for the LBs
// to ack the generation that hides the target pool. The target pool is the
// hidden standby already, so to make hide publish a generation the test
// first adds a third host to it (a scale-out of the standby pool); the
// varnish LB's `cyclerd lb` is stopped so the hide waits for its ack.
func TestChaosLeaderKillHide(t *testing.T) {
	l := startGatedLab(t, "3s", "")
	ctx := testContext(t, 6*time.Minute)
	l.deployOpen(ctx, "1.0.0")

	var servers []string
	for _, n := range l.c.nodes {
		servers = append(servers, n.APIAddr)
	}
	l.agents = append(l.agents, startAgentWith(t, servers, l.consul.HTTPAddr, "green", "web-green-3"))
	waitFor(t, "web-green-3's cyclerd-agent in Consul", func() error {
		entries, _, err := l.cc.Catalog().Service(pool.ServiceAgent, "", nil)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.ServiceID == pool.ServiceAgent+"-web-green-3" {
				return nil
			}
		}
		return fmt.Errorf("%d agents registered", len(entries))
	})
	before := l.stateGeneration()

	hideGen := func(c cycle.Cycle) uint64 {
		if c.HideGeneration <= before {
			return 0 // not committed yet, or no new generation
		}
		return c.HideGeneration
	}
	final := runLeaderKill(ctx, l, leaderKill{version: "2.0.0", stopLB: l.lbs[1], killAt: cycle.Hide,
		ready: l.lbAcked(hideGen, l.lbs[0].ID)})
	if final.Phase != cycle.Done || len(final.Hosts) != 3 || final.HideGeneration <= before {
		harness.Fatalf(t, "cycle %s: %s with %d hosts, hide generation %d (state was at %d); want done on 3 hosts with a new hide generation",
			final.ID, final.Phase, len(final.Hosts), final.HideGeneration, before)
	}
}

// TestChaosLeaderKillBake kills -9 the leader during the bake.
func TestChaosLeaderKillBake(t *testing.T) {
	l := startGatedLab(t, "8s", "")
	ctx := testContext(t, 6*time.Minute)
	l.deployOpen(ctx, "1.0.0")
	final := runLeaderKill(ctx, l, leaderKill{version: "2.0.0", killAt: cycle.Bake})
	if final.Phase != cycle.Done {
		harness.Fatalf(t, "cycle %s ended %s: %s; want done", final.ID, final.Phase, final.Message)
	}
}

// stateGeneration reads the generation published in cycler/web/state.
func (l *fleetLab) stateGeneration() uint64 {
	l.t.Helper()
	pair, _, err := l.cc.KV().Get(pool.StateKey("web"), nil)
	if err != nil || pair == nil {
		harness.Fatalf(l.t, "read %s: %v (exists %v)", pool.StateKey("web"), err, pair != nil)
	}
	st, err := pool.ParseState(pair.Value)
	if err != nil {
		harness.Fatal(l.t, err)
	}
	return st.Generation
}

// requireLBOnly fails unless 20 requests through n all get version.
func requireLBOnly(ctx context.Context, t *testing.T, n *lbNode, version string) {
	t.Helper()
	for i := range 20 {
		v, err := appVersion(ctx, n.Public)
		if err != nil || v != version {
			harness.Fatalf(t, "request %d through %s: version %q, %v; want %s", i+1, n.ID, v, err, version)
		}
	}
}

// TestChaosLBKilledMidSwitch kills -9 the nginx LB's `cyclerd lb` in the
// middle of a switch (stopped first, so it has not applied the new
// generation when it dies), checks that nginx keeps serving its last
// config, the old pool, while its cyclerd is down and that the switch
// waits, then restarts it: it applies the new generation and the cycle
// ends done.
func TestChaosLBKilledMidSwitch(t *testing.T) {
	l := startGatedLab(t, "3s", "")
	ctx := testContext(t, 6*time.Minute)
	l.deployOpen(ctx, "1.0.0")
	digest := l.gatedPkg(ctx, "2.0.0", false)
	ngx, vsh := l.lbs[0], l.lbs[1]
	leader := l.c.waitLeader(ctx, l.c.nodes...)
	via := l.c.others(leader)[0]

	chk := l.startChecker()
	d := l.startDeploy(ctx, via.APIAddr, digest)
	l.waitCycle(ctx, via, digest, "the cycle held at its smoke gate", inPhase(cycle.Smoke))
	resume := stopLB(t, ngx)
	l.open("smoke-2.0.0")
	at := l.waitCycle(ctx, via, digest, "the switch acked by varnish-1", func(c cycle.Cycle) error {
		if err := inPhase(cycle.Switch)(c); err != nil {
			return err
		}
		return l.lbAcked(func(c cycle.Cycle) uint64 { return c.SwitchGeneration }, vsh.ID)(c)
	})
	if err := ngx.Cyclerd.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	resume() // the pid is gone; nothing to resume
	requireLBOnly(ctx, t, ngx, "1.0.0")
	if a, err := (&lbEnv{t: t, consul: l.consul, cc: l.cc}).ack(ngx.ID); err != nil || a.Generation >= at.SwitchGeneration {
		harness.Fatalf(t, "ack of %s with its cyclerd dead: %+v, %v; want a generation before %d", ngx.ID, a, err, at.SwitchGeneration)
	}
	if c, err := newestCycle(ctx, via); err != nil || c.Phase != cycle.Switch {
		harness.Fatalf(t, "cycle with %s's cyclerd dead: %s, %v; want it waiting in switch", ngx.ID, c.Phase, err)
	}
	if err := ngx.Cyclerd.Restart(); err != nil {
		harness.Fatal(t, err)
	}

	select {
	case <-d.done:
	case <-ctx.Done():
		harness.Fatalf(t, "cyclerctl deploy did not end: %v", ctx.Err())
	}
	chk.cycleEnded(d.c)
	report := chk.finish()
	if d.code != cycle.ExitLive || d.c.Phase != cycle.Done {
		harness.Fatalf(t, "deploy: exit %d, cycle %s in %s: %s\n%s", d.code, d.c.ID, d.c.Phase, d.c.Message, d.out)
	}
	report.requireClean(t)
	l.requireServing(ctx, "2.0.0")
}

// nginxPrefix reads the prefix of an nginx LB from its cyclerd config.
func nginxPrefix(t *testing.T, n *lbNode) string {
	t.Helper()
	cfg, err := os.ReadFile(n.Cyclerd.ConfigPath)
	if err != nil {
		harness.Fatal(t, err)
	}
	m := regexp.MustCompile(`(?m)^\s*prefix\s*=\s*"([^"]+)"`).FindSubmatch(cfg)
	if m == nil {
		harness.Fatalf(t, "no prefix in %s", n.Cyclerd.ConfigPath)
	}
	return string(m[1])
}

// TestChaosNginxCheckFails runs a third LB, nginx in reload mode, whose
// nginx.conf an operator breaks (an unknown directive) while the cycle is
// in smoke, so `nginx -t` fails at the switch. The LB must keep its last
// good config, serving the old pool, and report the `nginx -t` error in
// its ack, never acking the switch. The switch times out (after 20 s) and
// the flip back completes without any repair, since that LB never left
// the old pool: the cycle ends rolled_back (exit 4) with a message naming
// the LB, and no request fails or breaks an invariant. Once the operator
// repairs nginx.conf the LB catches up to the newest generation, still
// serving the old pool, and the next deploy goes live everywhere.
func TestChaosNginxCheckFails(t *testing.T) {
	start := time.Now()
	l := startGatedLab(t, "3s", "timeouts {\n    switch = \"20s\"\n  }")
	ctx := testContext(t, 6*time.Minute)
	env := &lbEnv{t: t, consul: l.consul, cc: l.cc}
	reload := startNginxLB(t, env, "nginx-reload", "reload")
	l.lbs = append(l.lbs, reload)
	l.deployOpen(ctx, "1.0.0")

	mainConf := filepath.Join(nginxPrefix(t, reload), "nginx.conf")
	good, err := os.ReadFile(mainConf)
	if err != nil {
		harness.Fatal(t, err)
	}
	digest := l.gatedPkg(ctx, "2.0.0", false)
	leader := l.c.waitLeader(ctx, l.c.nodes...)
	via := l.c.others(leader)[0]
	t.Logf("lab up and 1.0.0 live after %s", time.Since(start).Round(time.Millisecond))

	chk := l.startChecker()
	d := l.startDeploy(ctx, via.APIAddr, digest)
	l.waitCycle(ctx, via, digest, "the cycle held at its smoke gate", inPhase(cycle.Smoke))
	if err := os.WriteFile(mainConf, append(good, []byte("\ncycler_chaos_broken_option on;\n")...), 0o644); err != nil {
		harness.Fatal(t, err)
	}
	l.open("smoke-2.0.0")

	at := l.waitCycle(ctx, via, digest, "the switch waiting for nginx-reload", func(c cycle.Cycle) error {
		if c.SwitchGeneration == 0 || c.Phase.Terminal() {
			return fmt.Errorf("cycle %s in %s, switch generation %d", c.ID, c.Phase, c.SwitchGeneration)
		}
		a, err := env.ack(reload.ID)
		if err != nil {
			return err
		}
		if !strings.Contains(a.LastError, "cycler_chaos_broken_option") {
			return fmt.Errorf("ack of %s: generation %d, last error %q", reload.ID, a.Generation, a.LastError)
		}
		return nil
	})
	a, _ := env.ack(reload.ID)
	t.Logf("%s reports at generation %d: %s", reload.ID, a.Generation, a.LastError)
	if a.Generation >= at.SwitchGeneration {
		harness.Fatalf(t, "%s acked generation %d with a config nginx -t refuses", reload.ID, a.Generation)
	}
	requireLBOnly(ctx, t, reload, "1.0.0")

	// The switch times out and flips back; nothing the operator does is
	// needed for the cycle to end.
	brokenAt := time.Now()
	select {
	case <-d.done:
	case <-time.After(90 * time.Second):
		c, _ := newestCycle(ctx, via)
		a, _ := env.ack(reload.ID)
		harness.Fatalf(t, "cycle %s still in %s 90s after the switch began (%s); %s is at generation %d: %s",
			c.ID, c.Phase, c.Message, reload.ID, a.Generation, a.LastError)
	}
	t.Logf("cycle %s ended %s %s after the switch began, exit %d: %s", d.c.ID, d.c.Phase,
		time.Since(brokenAt).Round(time.Millisecond), d.code, d.c.Message)
	if d.code != cycle.ExitRolledBack || d.c.Phase != cycle.RolledBack {
		harness.Fatalf(t, "deploy: exit %d, cycle %s in %s: %s; want exit %d rolled_back\n%s", d.code, d.c.ID, d.c.Phase, d.c.Message, cycle.ExitRolledBack, d.out)
	}
	if want := "LB " + reload.ID + " never applied the switch"; !strings.Contains(d.c.Message, want) {
		harness.Errorf(t, "rolled back cycle's message %q does not say %q", d.c.Message, want)
	}
	if a, err := env.ack(reload.ID); err != nil || a.Generation >= at.SwitchGeneration || !strings.Contains(a.LastError, "cycler_chaos_broken_option") {
		harness.Errorf(t, "ack of %s after the flip back, nginx.conf still broken: %+v, %v; want a generation before %d and the nginx -t error",
			reload.ID, a, err, at.SwitchGeneration)
	}
	l.requireServing(ctx, "1.0.0")

	// The operator repairs nginx.conf: the LB's retries apply the newest
	// generation, in which the old pool is live again.
	if err := os.WriteFile(mainConf, good, 0o644); err != nil {
		harness.Fatal(t, err)
	}
	repaired := time.Now()
	newest := l.stateGeneration()
	chaosWait(ctx, t, reload.ID+" to catch up after the repair", func() error {
		a, err := env.ack(reload.ID)
		if err != nil {
			return err
		}
		if a.Generation < newest || a.LastError != "" {
			return fmt.Errorf("%s acked generation %d (want %d), last error %q", reload.ID, a.Generation, newest, a.LastError)
		}
		return nil
	})
	t.Logf("%s acked generation %d %s after the repair", reload.ID, newest, time.Since(repaired).Round(time.Millisecond))
	requireLBOnly(ctx, t, reload, "1.0.0")
	report := chk.finish()
	report.requireClean(t)

	// And the next deploy goes live through every LB.
	v3 := l.gatedPkg(ctx, "3.0.0", false)
	l.open("smoke-3.0.0")
	if code, c, out := l.deploy(ctx, via.APIAddr, v3); code != cycle.ExitLive {
		harness.Fatalf(t, "deploy 3.0.0 after the repair: exit %d, cycle %s in %s: %s\n%s", code, c.ID, c.Phase, c.Message, out)
	}
	l.requireServing(ctx, "3.0.0")
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

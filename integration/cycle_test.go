//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
)

// TestCycleEndToEnd deploys v1 (the first cycle, onto blue) and v2 (onto
// green) with `cyclerctl deploy`, while a sampler sends a request through
// both LBs every 20 ms, and checks the LBs, the standby and the history.
func TestCycleEndToEnd(t *testing.T) {
	l := startFleetLab(t, labService(""))
	ctx := testContext(t, 5*time.Minute)
	_, v1 := l.pkg(ctx, "1.0.0")
	path2, _ := l.pkg(ctx, "2.0.0")

	code, c1, out := l.deploy(ctx, l.c.nodes[1].APIAddr, v1)
	if code != cycle.ExitLive || c1.Phase != cycle.Done || c1.Target != "blue" {
		harness.Fatalf(t, "deploy v1: exit %d, cycle %s in %s (target %s)\n%s", code, c1.ID, c1.Phase, c1.Target, out)
	}
	l.requireServing(ctx, "1.0.0")

	s := l.startSampler()
	// The second deploy goes through a file, pushed by deploy itself.
	code, c2, out := l.deploy(ctx, l.c.nodes[2].APIAddr, path2)
	total, failures, versions := s.finish()
	if code != cycle.ExitLive || c2.Phase != cycle.Done || c2.Target != "green" || c2.Previous.Version != "1.0.0" {
		harness.Fatalf(t, "deploy v2: exit %d, cycle %+v\n%s", code, c2, out)
	}
	l.requireServing(ctx, "2.0.0")
	if len(failures) > 0 {
		harness.Errorf(t, "%d of %d sampled requests failed during the cycle: %v", len(failures), total, failures)
	}
	for lb, seen := range versions {
		for v := range seen {
			if v != "1.0.0" && v != "2.0.0" {
				harness.Errorf(t, "LB %s served %q", lb, v)
			}
		}
	}
	t.Logf("sampled %d requests during the v2 cycle: %v", total, versions)

	// The old pool holds the previous version, hidden: the standby.
	for _, a := range l.agents {
		want := "2.0.0"
		if a.Pool == "blue" {
			want = "1.0.0"
		}
		wantVersion(t, a, want)
	}
	hidden := map[string]bool{}
	for _, a := range []string{"web-blue-1", "web-blue-2"} {
		_, on, _ := maintenanceOf(t, l, a)
		hidden[a] = on
	}
	if !hidden["web-blue-1"] || !hidden["web-blue-2"] {
		harness.Errorf(t, "blue should be hidden in Consul after the switch: %v", hidden)
	}

	// history shows per-host results.
	var hist []cycle.Cycle
	mustJSON(t, l.c.mustCtl(ctx, l.c.nodes[0].APIAddr, "--json", "history", "web"), &hist)
	if len(hist) != 2 || hist[0].ID != c2.ID {
		harness.Fatalf(t, "history: %d cycles, want 2 with %s first", len(hist), c2.ID)
	}
	for _, h := range hist[0].Hosts {
		if h.Deploy == nil || !h.Deploy.OK || h.Smoke == nil || !h.Smoke.OK || len(h.Checks) == 0 {
			harness.Errorf(t, "history of %s: host %s has no passing deploy and smoke results: %+v", c2.ID, h.Instance, h)
		}
	}
	if len(hist[0].LBs) != 2 {
		harness.Errorf(t, "history of %s: %d LB acks, want 2: %+v", c2.ID, len(hist[0].LBs), hist[0].LBs)
	}
}

// TestCycleSmokeFailureAborts deploys a package that fails the smoke check
// on one host: the cycle aborts at smoke (exit 3), no request through
// either LB ever sees the bad version, and after enough such cycles the
// breaker opens and refuses the next deploy (exit 2) until it is reset.
func TestCycleSmokeFailureAborts(t *testing.T) {
	l := startFleetLab(t, labService(""))
	ctx := testContext(t, 5*time.Minute)
	_, v1 := l.pkg(ctx, "1.0.0")
	if code, c, out := l.deploy(ctx, l.c.nodes[0].APIAddr, v1); code != cycle.ExitLive {
		harness.Fatalf(t, "deploy v1: exit %d (%s)\n%s", code, c.Phase, out)
	}
	_, bad := l.pkg(ctx, "2.0.0-bad", "-fail-path", "/", "-fail-instance", "web-green-1")

	s := l.startSampler()
	// Each such cycle counts two failures (the host and the abort); the
	// lab's breaker trips at 4, so after the second cycle.
	for i := 1; i <= 2; i++ {
		code, c, out := l.deploy(ctx, l.c.nodes[1].APIAddr, bad)
		if code != cycle.ExitAborted || c.Phase != cycle.Aborted {
			harness.Fatalf(t, "bad deploy %d: exit %d, phase %s, want exit 3 aborted\n%s", i, code, c.Phase, out)
		}
		if last := c.Phases[len(c.Phases)-1].Phase; last != cycle.Smoke {
			harness.Errorf(t, "bad deploy %d ended in phase %s, want smoke", i, last)
		}
		if !hostFailed(c, "web-green-1") || hostFailed(c, "web-green-2") {
			harness.Errorf(t, "bad deploy %d: want only web-green-1 failed: %+v", i, c.Hosts)
		}
	}
	total, failures, versions := s.finish()
	if len(failures) > 0 {
		harness.Errorf(t, "%d of %d sampled requests failed: %v", len(failures), total, failures)
	}
	for lb, seen := range versions {
		if len(seen) != 1 || seen["1.0.0"] == 0 {
			harness.Errorf(t, "LB %s served %v during the aborted cycles, want only 1.0.0", lb, seen)
		}
	}

	code, _, out := l.deploy(ctx, l.c.nodes[2].APIAddr, bad)
	if code != cycle.ExitRefused || !strings.Contains(out, "circuit breaker") || !strings.Contains(out, "lets one cycle try at") {
		harness.Fatalf(t, "deploy with the breaker open: exit %d, want 2 with the reason and the reopen time\n%s", code, out)
	}
	var br cycle.BreakerStatus
	mustJSON(t, l.c.mustCtl(ctx, l.c.nodes[0].APIAddr, "--json", "breaker", "reset", "web"), &br)
	if br.State != cycle.BreakerClosed {
		harness.Fatalf(t, "breaker after reset: %+v", br)
	}
	_, v2 := l.pkg(ctx, "2.0.0")
	if code, c, out := l.deploy(ctx, l.c.nodes[0].APIAddr, v2); code != cycle.ExitLive {
		harness.Fatalf(t, "deploy after the reset: exit %d (%s)\n%s", code, c.Phase, out)
	}
	l.requireServing(ctx, "2.0.0")
}

// TestCycleBakeFailureFlipsBack deploys a package that passes smoke but
// fails the bake check through the LBs: traffic flips back to the old pool
// by itself and deploy exits 4.
func TestCycleBakeFailureFlipsBack(t *testing.T) {
	l := startFleetLab(t, labService(""))
	ctx := testContext(t, 5*time.Minute)
	_, v1 := l.pkg(ctx, "1.0.0")
	if code, c, out := l.deploy(ctx, l.c.nodes[0].APIAddr, v1); code != cycle.ExitLive {
		harness.Fatalf(t, "deploy v1: exit %d (%s)\n%s", code, c.Phase, out)
	}
	_, bad := l.pkg(ctx, "2.0.0-nobake", "-fail-path", "/bake")
	s := l.startSampler()
	code, c, out := l.deploy(ctx, l.c.nodes[1].APIAddr, bad)
	total, failures, _ := s.finish()
	if code != cycle.ExitRolledBack || c.Phase != cycle.RolledBack || c.FlipGeneration == 0 {
		harness.Fatalf(t, "deploy: exit %d, phase %s, want exit 4 rolled_back\n%s", code, c.Phase, out)
	}
	if len(failures) > 0 {
		harness.Errorf(t, "%d of %d sampled requests failed: %v", len(failures), total, failures)
	}
	l.requireServing(ctx, "1.0.0")
	for _, a := range []string{"web-green-1", "web-green-2"} {
		if _, on, _ := maintenanceOf(t, l, a); !on {
			harness.Errorf(t, "%s should be hidden again after the flip back", a)
		}
	}
}

// TestRollbackInstant deploys v1 then v2, then rolls back: the warm
// standby (blue, on v1) goes live with no install.
func TestRollbackInstant(t *testing.T) {
	l := startFleetLab(t, labService(""))
	ctx := testContext(t, 5*time.Minute)
	_, v1 := l.pkg(ctx, "1.0.0")
	_, v2 := l.pkg(ctx, "2.0.0")
	for _, d := range []string{v1, v2} {
		if code, c, out := l.deploy(ctx, l.c.nodes[0].APIAddr, d); code != cycle.ExitLive {
			harness.Fatalf(t, "deploy %s: exit %d (%s)\n%s", d, code, c.Phase, out)
		}
	}
	before := l.agents[0].inventory(t) // web-blue-1
	stdout, stderr, err := l.c.ctl(ctx, l.c.nodes[2].APIAddr, "--json", "rollback", "web")
	if exitCode(err) != cycle.ExitLive {
		harness.Fatalf(t, "rollback: exit %d\n%s%s", exitCode(err), stdout, stderr)
	}
	var c cycle.Cycle
	mustJSON(t, stdout, &c)
	if c.Kind != cycle.KindRollback || c.Target != "blue" || c.Package.Version != "1.0.0" {
		harness.Fatalf(t, "rollback cycle: kind %s to %s on %s, want an instant rollback to 1.0.0 on blue", c.Kind, c.Package.Version, c.Target)
	}
	for _, h := range c.Hosts {
		if h.Deploy != nil {
			harness.Errorf(t, "rollback installed on %s: %+v", h.Instance, h.Deploy)
		}
	}
	l.requireServing(ctx, "1.0.0")
	after := l.agents[0].inventory(t)
	if before.LastInstall == nil || after.LastInstall == nil || !after.LastInstall.FinishedAt.Equal(before.LastInstall.FinishedAt) {
		harness.Errorf(t, "web-blue-1 installed something during the rollback: before %+v, after %+v", before.LastInstall, after.LastInstall)
	}
}

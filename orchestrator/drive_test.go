package orchestrator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/raftstore"
)

// The tests here drive whole cycles through the orchestrator over a
// simulated fleet and LB (sim_test.go) and a real 3-node in-memory Raft
// cluster. integration/cycle_test.go runs the same stories on real
// processes.

func TestDriveDeployThenDeployAgain(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())

	first := r.deploy("v1", cycle.Done)
	if first.Target != raftstore.PoolBlue {
		t.Fatalf("the first cycle targeted %s, want blue", first.Target)
	}
	second := r.deploy("v2", cycle.Done)
	if second.Target != raftstore.PoolGreen || second.From != raftstore.PoolBlue || second.Previous.Version != "v1" {
		t.Fatalf("second cycle: target %s from %s previous %q, want green from blue previous v1", second.Target, second.From, second.Previous.Version)
	}
	for _, h := range second.Hosts {
		if h.Failed || h.Deploy == nil || !h.Deploy.OK || h.Smoke == nil || !h.Smoke.OK {
			t.Errorf("host %s: failed=%t deploy=%+v smoke=%+v, want both steps ok", h.Instance, h.Failed, h.Deploy, h.Smoke)
		}
	}
	if got := w.versionsOf(raftstore.PoolGreen); !slices.Equal(got, []string{"v2", "v2"}) {
		t.Errorf("green runs %v, want v2 on both", got)
	}
	// standby "keep": the old pool keeps v1, hidden, for an instant rollback.
	if got := w.versionsOf(raftstore.PoolBlue); !slices.Equal(got, []string{"v1", "v1"}) {
		t.Errorf("blue runs %v, want v1 kept as the standby", got)
	}
	if got := w.hiddenOf(raftstore.PoolBlue); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("blue hidden %v, want both hidden", got)
	}
	s, _ := r.leader()
	st, _ := s.Service("web")
	if st.Live != raftstore.PoolGreen || st.Generation != second.SwitchGeneration || st.Pools.Blue.Version != "v1" || st.Pools.Green.Version != "v2" {
		t.Errorf("state %+v, want green live at generation %d with blue v1 and green v2", st, second.SwitchGeneration)
	}
	if len(second.LBs) != 1 || second.LBs[0].Generation < second.SwitchGeneration {
		t.Errorf("recorded acks %+v, want lb-1 at generation >= %d", second.LBs, second.SwitchGeneration)
	}
	seen, failed := w.probe(20)
	if failed != 0 || seen["v2"] != 20 {
		t.Errorf("through the LB after the cycle: %v and %d failures, want only v2", seen, failed)
	}
	phases := map[cycle.Phase]bool{}
	for _, p := range second.Phases {
		phases[p.Phase] = true
	}
	for _, p := range []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby} {
		if !phases[p] {
			t.Errorf("the cycle has no span for phase %s: %+v", p, second.Phases)
		}
	}
}

func TestDriveSmokeFailureLeavesLivePoolAlone(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())
	r.deploy("v1", cycle.Done)
	r.deploy("v2", cycle.Done)
	w.badSmoke["v3"] = true
	s, _ := r.leader()
	before, _ := s.Service("web")

	c := r.deploy("v3", cycle.Aborted)
	if !strings.Contains(c.Message, "smoke") || !strings.Contains(c.Message, "users never saw v3") {
		t.Errorf("abort message %q does not say smoke failed and that users never saw v3", c.Message)
	}
	after, _ := s.Service("web")
	if after.Live != before.Live || after.Pools != before.Pools {
		t.Errorf("state changed from %+v to %+v; an abort before the switch must leave live and the pools alone", before, after)
	}
	w.mu.Lock()
	sawBad := w.served["v3"]
	w.mu.Unlock()
	if sawBad != 0 {
		t.Errorf("the LB served v3 %d times; a version that failed smoke must never reach users", sawBad)
	}
	// The target (blue, the standby) stays hidden; green stays live.
	if got := w.hiddenOf(raftstore.PoolBlue); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("blue hidden %v after the abort, want both hidden", got)
	}
	b, _ := r.orchs[s].Breaker("web")
	if b.ConsecutiveFailures == 0 {
		t.Errorf("breaker %+v counted no failure for an aborted cycle", b)
	}
}

func TestDriveBakeFailureFlipsBack(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())
	r.deploy("v1", cycle.Done)
	w.badBake["v2"] = true

	c := r.deploy("v2", cycle.RolledBack)
	if c.FlipGeneration <= c.SwitchGeneration {
		t.Errorf("flip generation %d is not above the switch's %d", c.FlipGeneration, c.SwitchGeneration)
	}
	s, _ := r.leader()
	st, _ := s.Service("web")
	if st.Live != raftstore.PoolBlue || st.Generation != c.FlipGeneration {
		t.Errorf("after the flip back: live %s at generation %d, want blue at %d", st.Live, st.Generation, c.FlipGeneration)
	}
	if got := w.hiddenOf(raftstore.PoolGreen); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("green hidden %v after the flip back, want both hidden", got)
	}
	seen, failed := w.probe(20)
	if failed != 0 || seen["v1"] != 20 {
		t.Errorf("through the LB after the flip back: %v and %d failures, want only v1", seen, failed)
	}
	if len(c.BakeFailures) == 0 && !strings.Contains(c.Message, "bake") {
		t.Errorf("the cycle records no bake failure: %+v", c)
	}
}

// TestDriveSwitchWaitsForEveryAck holds the LB's acknowledgements while the
// cycle is in switch: the old pool must stay visible (it is what the LB
// still serves) and the cycle must not move on, until the LB acks.
func TestDriveSwitchWaitsForEveryAck(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())
	r.deploy("v1", cycle.Done)

	w.mu.Lock()
	w.holdAcks = true
	w.mu.Unlock()
	started := r.start("v2")
	c := r.wait(started.ID, "the switch to commit its generation", func(c cycle.Cycle) bool {
		s := r.c.Leader()
		if s == nil {
			return false // an election under load: ask again
		}
		st, _ := s.Service("web")
		return c.Phase == cycle.Switch && c.SwitchGeneration > 0 && st.Generation >= c.SwitchGeneration
	})
	// The LB has not acked: a few more steps must change nothing.
	for range 5 {
		seen, failed := w.probe(10)
		if failed != 0 || seen["v1"] != 10 {
			t.Fatalf("while the LB holds the old generation it served %v with %d failures, want only v1", seen, failed)
		}
		if got := w.hiddenOf(raftstore.PoolBlue); slices.Contains(got, true) {
			t.Fatalf("blue hidden %v before the LB acked generation %d: the pool the LB serves was hidden", got, c.SwitchGeneration)
		}
		s := r.c.WaitLeader()
		if now, _ := s.Cycle(c.ID); now.Phase != cycle.Switch {
			t.Fatalf("cycle moved to %s without the LB's ack", now.Phase)
		}
	}
	w.setHoldAcks(false)
	done := r.finished(c.ID)
	if done.Phase != cycle.Done {
		t.Fatalf("cycle ended %s (%s) after the ack, want done", done.Phase, done.Message)
	}
	if got := w.hiddenOf(raftstore.PoolBlue); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("blue hidden %v after the ack, want both hidden", got)
	}
}

// TestDriveResumesAfterLeaderLoss stops the leader while installs are in
// flight; the new leader's orchestrator picks the cycle up from its
// committed phase and finishes it.
func TestDriveResumesAfterLeaderLoss(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())
	r.deploy("v1", cycle.Done)

	gate := make(chan struct{})
	w.mu.Lock()
	w.installGate = gate
	w.mu.Unlock()
	started := r.start("v2")
	r.wait(started.ID, "the cycle to reach deploy", func(c cycle.Cycle) bool { return c.Phase == cycle.Deploy })
	old, _ := r.leader()
	r.c.Kill(old)
	w.mu.Lock()
	w.installGate = nil
	w.mu.Unlock()
	close(gate)

	c := r.finished(started.ID)
	if c.Phase != cycle.Done {
		t.Fatalf("after the leader change the cycle ended %s (%s), want done", c.Phase, c.Message)
	}
	if now, _ := r.leader(); now == old {
		t.Fatal("the killed node is still the leader")
	}
	if got := w.versionsOf(raftstore.PoolGreen); !slices.Equal(got, []string{"v2", "v2"}) {
		t.Errorf("green runs %v, want v2", got)
	}
}

// TestDriveBreakerOpensAndRefuses fails smoke until the breaker opens;
// the next start is refused with the reason, and a reset lets it start.
func TestDriveBreakerOpensAndRefuses(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())
	r.deploy("v1", cycle.Done)
	w.badSmoke["v2"] = true
	// Each bad cycle counts 2 host failures and 1 abort; the threshold is 4.
	r.deploy("v2", cycle.Aborted)
	r.deploy("v2", cycle.Aborted)

	_, o := r.leader()
	d := r.push("v2")
	_, err := o.Start(t.Context(), StartRequest{StartRequest: cycle.StartRequest{Service: "web", Digest: d}, By: "test"})
	var ref *Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Reason, "breaker") {
		t.Fatalf("start with the breaker open: %v, want a refusal naming the breaker", err)
	}
	if _, err := o.ResetBreaker(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	delete(w.badSmoke, "v2")
	r.deploy("v2", cycle.Done)
}

// TestDriveFlipBackPastAnLBThatNeverSwitched: an LB that cannot apply
// anything (its config check fails) holds the switch until the phase
// times out; the flip back then must not wait for that LB, which never
// left the old pool, or the cycle would hold the service's lock forever.
func TestDriveFlipBackPastAnLBThatNeverSwitched(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	spec := simSpec()
	spec.Timeouts = map[cycle.Phase]time.Duration{cycle.Switch: 500 * time.Millisecond}
	r := newSimRig(t, w, spec)
	r.deploy("v1", cycle.Done)

	w.setHoldAcks(true)
	c := r.deploy("v2", cycle.RolledBack)
	if !strings.Contains(c.Message, "timeout") || !strings.Contains(c.Message, "LB lb-1 never applied the switch") {
		t.Errorf("message %q, want the switch timeout and the LB that never switched", c.Message)
	}
	seen, failed := w.probe(20)
	if failed != 0 || seen["v1"] != 20 {
		t.Errorf("through the stuck LB: %v and %d failures, want only v1", seen, failed)
	}
	if got := w.hiddenOf(raftstore.PoolBlue); slices.Contains(got, true) {
		t.Errorf("blue hidden %v after the flip back, want it visible: it is what the LB serves", got)
	}
	// The lock is released: once the LB works again, a new cycle runs.
	w.setHoldAcks(false)
	r.deploy("v3", cycle.Done)
}

// TestDriveRecycleRefreshesStandby: a recycle installs the live release on
// the hidden standby pool and smokes it there, with no switch: the live pool,
// the generation's live side and what the LB serves stay as they were.
func TestDriveRecycleRefreshesStandby(t *testing.T) {
	w := newSimWorld(t, 2, 2)
	r := newSimRig(t, w, simSpec())
	r.deploy("v1", cycle.Done)
	r.deploy("v2", cycle.Done) // green live on v2, blue the standby on v1
	s, o := r.leader()
	before, _ := s.Service("web")

	d := r.w.digest("v2")
	started, err := o.Start(t.Context(), StartRequest{StartRequest: cycle.StartRequest{Service: "web", Digest: d}, By: "test",
		Trigger: "schedule:nightly", Kind: cycle.KindRecycle})
	if err != nil {
		t.Fatal(err)
	}
	c := r.finished(started.ID)
	if c.Phase != cycle.Done || c.Target != raftstore.PoolBlue || c.SwitchGeneration != 0 {
		t.Fatalf("recycle ended %s on %s with switch generation %d (%s), want done on blue with no switch", c.Phase, c.Target, c.SwitchGeneration, c.Message)
	}
	if got := w.versionsOf(raftstore.PoolBlue); !slices.Equal(got, []string{"v2", "v2"}) {
		t.Errorf("blue runs %v, want the live v2", got)
	}
	if got := w.hiddenOf(raftstore.PoolBlue); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("blue hidden %v, want it still hidden", got)
	}
	s, _ = r.leader()
	after, _ := s.Service("web")
	if after.Live != before.Live || after.Pools.Blue.Version != "v2" || after.Pools.Green != before.Pools.Green {
		t.Errorf("state %+v after the recycle, want green still live and blue recorded as v2", after)
	}
	seen, failed := w.probe(20)
	if failed != 0 || seen["v2"] != 20 {
		t.Errorf("through the LB: %v and %d failures, want only v2", seen, failed)
	}
}

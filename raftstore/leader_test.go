package raftstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

type hookEvent struct {
	node    string
	started bool // false: the hook's ctx was cancelled and it returned
	gen     uint64
}

// recordHook registers a hook on s that reports start and stop on events.
func recordHook(s *Store, events chan<- hookEvent) {
	s.OnLeader("test", func(ctx context.Context) {
		st, _ := s.Service("web")
		events <- hookEvent{node: s.ID(), started: true, gen: st.Generation}
		<-ctx.Done()
		events <- hookEvent{node: s.ID(), started: false}
	})
}

func nextEvent(t *testing.T, events <-chan hookEvent) hookEvent {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(TestWaitTimeout):
		t.Fatal("timed out waiting for a leader hook event")
		return hookEvent{}
	}
}

func TestLeaderHookFollowsLeadership(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	old := c.Leader()
	for gen := uint64(1); gen <= 3; gen++ {
		if _, err := old.SetServiceState(ctx, svc("web", gen, PoolBlue)); err != nil {
			t.Fatal(err)
		}
	}
	events := make(chan hookEvent, 100)
	for _, s := range c.Nodes() {
		recordHook(s, events)
	}

	// Registered while leading: starts at once, on the leader only.
	if e := nextEvent(t, events); !e.started || e.node != old.ID() {
		t.Fatalf("first event = %+v, want %s started", e, old.ID())
	}

	// Cut the leader off: its hook's ctx is cancelled, and a new leader's
	// hook starts after a barrier, seeing every committed write.
	c.Disconnect(old)
	var stopped, started bool
	for !stopped || !started {
		e := nextEvent(t, events)
		switch {
		case !e.started && e.node == old.ID():
			stopped = true
		case e.started && e.node != old.ID():
			started = true
			if e.gen != 3 {
				t.Errorf("new leader %s started its hook seeing generation %d, want 3", e.node, e.gen)
			}
		case e.started:
			t.Fatalf("the isolated node %s started its hook again", e.node)
		}
		// Anything else is a new leader losing the seat in a re-election
		// among the remaining two, which is allowed.
	}
	if old.IsLeader() {
		t.Error("the isolated node still claims leadership after its hook stopped")
	}
}

func TestLeaderHookNotRunOnFollower(t *testing.T) {
	c := NewTestCluster(t, 3)
	var runs atomic.Int32
	for _, f := range c.Followers() {
		f.OnLeader("count", func(context.Context) { runs.Add(1) })
	}
	// A write through the leader gives the followers time to misbehave.
	if _, err := c.Leader().AppendAudit(testCtx(t), AuditEntry{Action: "x"}); err != nil {
		t.Fatal(err)
	}
	c.WaitReplicated()
	if n := runs.Load(); n != 0 {
		t.Fatalf("follower hooks ran %d times", n)
	}
}

func TestShutdownWaitsForLeaderHooks(t *testing.T) {
	c := NewTestCluster(t, 1)
	s := c.Leader()
	var returned atomic.Bool
	running := make(chan struct{})
	s.OnLeader("block", func(ctx context.Context) {
		close(running)
		<-ctx.Done()
		returned.Store(true)
	})
	select {
	case <-running:
	case <-time.After(TestWaitTimeout):
		t.Fatal("hook did not start")
	}
	c.Kill(s)
	if !returned.Load() {
		t.Fatal("Shutdown returned before the leader hook did")
	}
}

func TestLeaderPublishesNodeMeta(t *testing.T) {
	c := NewTestCluster(t, 3)
	leader := c.Leader()
	c.WaitFor("the leader's node meta", func() bool {
		m, ok := leader.NodeMeta(leader.ID())
		return ok && m.APIAddr == "api."+leader.ID()
	})
}

package raftstore

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), TestWaitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func stateBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	st, _, _ := s.fsm.copyState()
	return mustEncode(t, st)
}

func TestApplyAndReadThroughLeader(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	leader := c.Leader()

	give := svc("web", 1, PoolBlue)
	give.Hidden = []string{"web-3", "web-1", "web-3"}
	got, err := leader.SetServiceState(ctx, give)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"web-1", "web-3"}; !equalStrings(got.Hidden, want) {
		t.Errorf("hidden = %v, want sorted and deduplicated %v", got.Hidden, want)
	}
	if got.UpdatedAt.IsZero() {
		t.Error("updated_at was not stamped")
	}
	entry, err := leader.AppendAudit(ctx, AuditEntry{TokenName: "ci", Action: "deploy", Target: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if entry.Seq != 1 || entry.At.IsZero() {
		t.Errorf("audit entry = %+v, want seq 1 and a stamped time", entry)
	}
	if err := leader.SetBreakerData(ctx, "gobreaker:state:web", []byte("data")); err != nil {
		t.Fatal(err)
	}

	c.WaitReplicated()
	for _, s := range c.Nodes() {
		st, ok := s.Service("web")
		if !ok || st.Generation != 1 || st.Live != PoolBlue || !st.UpdatedAt.Equal(got.UpdatedAt) {
			t.Errorf("%s: service = %+v (found %v), want generation 1 live blue", s.ID(), st, ok)
		}
		if a := s.Audit(0, 0); len(a) != 1 || a[0].Action != "deploy" {
			t.Errorf("%s: audit = %+v", s.ID(), a)
		}
		if d, _ := s.BreakerData("gobreaker:state:web"); string(d) != "data" {
			t.Errorf("%s: breaker data = %q", s.ID(), d)
		}
		if !bytes.Equal(stateBytes(t, s), stateBytes(t, leader)) {
			t.Errorf("%s: state differs from the leader's", s.ID())
		}
	}

	// Reads return copies: mutating one must not change the store.
	st, _ := leader.Service("web")
	st.Hidden[0] = "mutated"
	if again, _ := leader.Service("web"); again.Hidden[0] == "mutated" {
		t.Error("Service returned a slice shared with the state")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFollowerWriteReturnsErrNotLeader(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	leader := c.Leader()
	follower := c.Followers()[0]

	writes := []struct {
		name string
		do   func() error
	}{
		{name: "service state", do: func() error { _, err := follower.SetServiceState(ctx, svc("web", 1, PoolBlue)); return err }},
		{name: "audit", do: func() error { _, err := follower.AppendAudit(ctx, AuditEntry{Action: "x"}); return err }},
		{name: "breaker data", do: func() error { return follower.SetBreakerData(ctx, "b", []byte("x")) }},
		{name: "node meta", do: func() error { return follower.SetNodeMeta(ctx, NodeMeta{ID: "n", APIAddr: "a"}) }},
		{name: "barrier", do: func() error { return follower.Barrier(ctx) }},
		{name: "join", do: func() error { return follower.Join(ctx, "node9", "node9") }},
		{name: "remove", do: func() error { return follower.Remove(ctx, "node2") }},
	}
	for _, tt := range writes {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("err = %v, want ErrNotLeader", err)
			}
		})
	}
	c.WaitReplicated() // the leader's NodeMeta reaches the follower
	addr, id := follower.Leader()
	if id != leader.ID() || addr != leader.Addr() {
		t.Errorf("follower reports leader %q at %q, want %q at %q", id, addr, leader.ID(), leader.Addr())
	}
	if got, want := follower.LeaderAPIAddr(), "api."+leader.ID(); got != want {
		t.Errorf("LeaderAPIAddr = %q, want %q", got, want)
	}
}

func TestGenerationOnlyGrows(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	leader := c.Leader()
	if _, err := leader.SetServiceState(ctx, svc("web", 2, PoolBlue)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    ServiceState
		wantErr error
		wantGen uint64
	}{
		{name: "older generation", give: svc("web", 1, PoolGreen), wantErr: ErrStaleGeneration, wantGen: 2},
		{name: "same generation, new content", give: svc("web", 2, PoolGreen), wantErr: ErrStaleGeneration, wantGen: 2},
		{name: "retry of the current state", give: svc("web", 2, PoolBlue), wantGen: 2},
		{name: "next generation", give: svc("web", 3, PoolGreen), wantGen: 3},
		{name: "invalid", give: svc("web", 4, ""), wantErr: ErrInvalidCommand, wantGen: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leader.SetServiceState(ctx, tt.give)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if st, _ := leader.Service("web"); st.Generation != tt.wantGen {
				t.Errorf("generation = %d, want %d", st.Generation, tt.wantGen)
			}
		})
	}
}

func TestLeaderLossKeepsCommittedWrites(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	old := c.Leader()
	for gen := uint64(1); gen <= 5; gen++ {
		if _, err := old.SetServiceState(ctx, svc("web", gen, PoolBlue)); err != nil {
			t.Fatal(err)
		}
	}
	c.Kill(old)
	leader := c.WaitLeader()
	if leader == old {
		t.Fatal("the killed node is still the leader")
	}
	if st, ok := leader.Service("web"); !ok || st.Generation != 5 {
		t.Fatalf("new leader has %+v, want generation 5", st)
	}
	if _, err := leader.SetServiceState(ctx, svc("web", 6, PoolGreen)); err != nil {
		t.Fatalf("write on the new leader: %v", err)
	}
	c.WaitReplicated()
	for _, s := range c.Followers() {
		if st, _ := s.Service("web"); st.Generation != 6 {
			t.Errorf("%s: generation = %d, want 6", s.ID(), st.Generation)
		}
	}
}

func TestMinorityPartitionCannotCommit(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	old := c.Leader()
	if _, err := old.SetServiceState(ctx, svc("web", 1, PoolBlue)); err != nil {
		t.Fatal(err)
	}
	c.WaitReplicated()

	c.Disconnect(old)
	_, err := old.SetServiceState(ctx, svc("web", 2, PoolGreen))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write on the isolated leader: err = %v, want ErrNotLeader", err)
	}
	leader := c.WaitLeader()
	if st, _ := leader.Service("web"); st.Generation != 1 {
		t.Fatalf("majority sees generation %d, want 1: the minority's write committed", st.Generation)
	}
	if _, err := leader.SetServiceState(ctx, svc("web", 3, PoolBlue)); err != nil {
		t.Fatal(err)
	}

	// Once healed, the old leader drops its uncommitted entry and converges.
	c.Reconnect(old)
	c.WaitFor("the old leader to catch up", func() bool {
		st, _ := old.Service("web")
		return st.Generation == 3
	})
	c.WaitReplicated()
	for _, s := range c.Nodes() {
		if !bytes.Equal(stateBytes(t, s), stateBytes(t, leader)) {
			t.Errorf("%s: state differs from the leader's", s.ID())
		}
	}
}

func TestWriteHonoursContext(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Leader().AppendAudit(ctx, AuditEntry{Action: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestStats(t *testing.T) {
	c := NewTestCluster(t, 3)
	leader := c.Leader()
	if _, err := leader.AppendAudit(testCtx(t), AuditEntry{Action: "x"}); err != nil {
		t.Fatal(err)
	}
	st := leader.Stats()
	if st.State != raft.Leader.String() || st.Term == 0 || st.LeaderID != leader.ID() {
		t.Errorf("stats = %+v", st)
	}
	if st.AppliedIndex == 0 || st.AppliedIndex > st.CommitIndex || st.CommitIndex > st.LastIndex {
		t.Errorf("indexes out of order: applied %d, commit %d, last %d", st.AppliedIndex, st.CommitIndex, st.LastIndex)
	}
}

func TestShutdownIsIdempotentAndFailsWrites(t *testing.T) {
	c := NewTestCluster(t, 1)
	s := c.Leader()
	c.Kill(s)
	if err := s.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := s.AppendAudit(ctx, AuditEntry{Action: "x"}); !errors.Is(err, ErrShutdown) {
		t.Fatalf("write after shutdown: err = %v, want ErrShutdown", err)
	}
}

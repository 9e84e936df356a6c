package raftstore

import (
	"testing"
)

func membersByID(t *testing.T, s *Store) map[string]Member {
	t.Helper()
	ms, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func TestMembers(t *testing.T) {
	c := NewTestCluster(t, 3)
	leader := c.Leader()
	c.WaitFor("the leader's node meta", func() bool { _, ok := leader.NodeMeta(leader.ID()); return ok })
	c.WaitReplicated()
	follower := c.Followers()[0]

	tests := []struct {
		name string
		from *Store
	}{
		{name: "from the leader", from: leader},
		{name: "from a follower", from: follower},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := membersByID(t, tt.from)
			if len(ms) != 3 {
				t.Fatalf("got %d members, want 3: %+v", len(ms), ms)
			}
			for id, m := range ms {
				if !m.Voter || m.RaftAddr != id {
					t.Errorf("%s: %+v, want a voter at address %s", id, m, id)
				}
				if m.Leader != (id == leader.ID()) || m.Self != (id == tt.from.ID()) {
					t.Errorf("%s: leader=%v self=%v", id, m.Leader, m.Self)
				}
			}
			if got := ms[leader.ID()].APIAddr; got != "api."+leader.ID() {
				t.Errorf("leader api addr = %q", got)
			}
			if got := ms[leader.ID()].LastContact; got < 0 {
				t.Errorf("leader last contact = %v, want known", got)
			}
		})
	}

	// The leader reports how long it has not heard from an unreachable follower.
	c.Disconnect(follower)
	c.WaitFor("the leader to notice the lost follower", func() bool {
		return membersByID(t, leader)[follower.ID()].LastContact > 0
	})
}

func TestJoinAndRemove(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	leader := c.Leader()
	target := c.Followers()[0]
	id := target.ID()
	if err := leader.SetNodeMeta(ctx, NodeMeta{ID: id, APIAddr: "api." + id}); err != nil {
		t.Fatal(err)
	}

	if err := leader.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok := membersByID(t, leader)[id]; ok {
		t.Fatalf("%s is still a member after Remove", id)
	}
	if _, ok := leader.NodeMeta(id); ok {
		t.Errorf("%s's node meta survived Remove", id)
	}
	if err := leader.Remove(ctx, id); err != nil {
		t.Errorf("second Remove: %v", err)
	}

	steps := []struct {
		name     string
		giveAddr string
	}{
		{name: "join", giveAddr: target.Addr()},
		{name: "join again is a no-op", giveAddr: target.Addr()},
		{name: "same id, new address replaces", giveAddr: "elsewhere"},
		{name: "and back", giveAddr: target.Addr()},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := leader.Join(ctx, id, tt.giveAddr); err != nil {
				t.Fatal(err)
			}
			ms := membersByID(t, leader)
			if len(ms) != 3 || ms[id].RaftAddr != tt.giveAddr || !ms[id].Voter {
				t.Fatalf("members = %+v, want %s at %s among 3", ms, id, tt.giveAddr)
			}
		})
	}

	// The rejoined node takes part in replication again.
	if _, err := leader.AppendAudit(ctx, AuditEntry{Action: "after-rejoin"}); err != nil {
		t.Fatal(err)
	}
	c.WaitReplicated()
	if a := target.Audit(0, 0); len(a) == 0 || a[len(a)-1].Action != "after-rejoin" {
		t.Errorf("rejoined node's audit = %+v", a)
	}
}

func TestJoinExistingMemberChangesNothing(t *testing.T) {
	c := NewTestCluster(t, 3)
	leader := c.Leader()
	target := c.Followers()[0]
	before := leader.raft.GetConfiguration()
	if err := before.Error(); err != nil {
		t.Fatal(err)
	}
	if err := leader.Join(testCtx(t), target.ID(), target.Addr()); err != nil {
		t.Fatal(err)
	}
	after := leader.raft.GetConfiguration()
	if err := after.Error(); err != nil {
		t.Fatal(err)
	}
	if before.Index() != after.Index() {
		t.Errorf("configuration index moved from %d to %d", before.Index(), after.Index())
	}
}

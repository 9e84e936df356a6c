package raftstore

import (
	"context"
	"errors"
	"testing"

	"github.com/cyclerhq/cycler/cycle"
)

func newCycle(svc string) cycle.Cycle {
	return cycle.Cycle{Service: svc, Kind: cycle.KindDeploy, Trigger: "manual", By: "ops", Target: PoolBlue,
		Phase: cycle.Preflight, Package: cycle.Release{Version: "1.0", Digest: "sha256:aa"}}
}

func TestCycleLockAndRevisions(t *testing.T) {
	c := NewTestCluster(t, 3)
	s := c.WaitLeader()
	ctx := context.Background()

	changed := s.Changed()
	first, err := s.CreateCycle(ctx, newCycle("web"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not closed by the commit")
	}
	if first.ID != "web-1" || first.Rev != 1 || len(first.Phases) != 1 {
		t.Fatalf("created %+v, want id web-1, rev 1, one span", first)
	}
	// The lock: a second cycle of the same service is refused, another
	// service's is not.
	if _, err := s.CreateCycle(ctx, newCycle("web")); !errors.Is(err, cycle.ErrInProgress) {
		t.Fatalf("second cycle: err = %v, want ErrInProgress", err)
	}
	if other, err := s.CreateCycle(ctx, newCycle("api")); err != nil || other.ID != "api-1" {
		t.Fatalf("other service: %+v, %v", other, err)
	}

	// Compare-and-set: an update from a stale revision is refused.
	next := first
	next.Phase = cycle.Hide
	moved, err := s.UpdateCycle(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if moved.Rev != 2 || len(moved.Phases) != 2 || moved.Phases[0].End.IsZero() {
		t.Fatalf("moved %+v: want rev 2 and the preflight span closed", moved)
	}
	stale := first
	stale.Message = "late writer"
	if _, err := s.UpdateCycle(ctx, stale); !errors.Is(err, cycle.ErrConflict) {
		t.Fatalf("stale update: err = %v, want ErrConflict", err)
	}
	// A phase may only move along the table.
	bad := moved
	bad.Phase = cycle.Bake
	if _, err := s.UpdateCycle(ctx, bad); err == nil {
		t.Fatal("hide -> bake was accepted")
	}
	done := moved
	done.Phase = cycle.Aborted
	ended, err := s.UpdateCycle(ctx, done)
	if err != nil || ended.FinishedAt.IsZero() {
		t.Fatalf("abort: %+v, %v", ended, err)
	}
	if _, err := s.UpdateCycle(ctx, ended); !errors.Is(err, cycle.ErrFinished) {
		t.Fatalf("update after the end: err = %v, want ErrFinished", err)
	}
	// The lock is released by the terminal phase.
	if again, err := s.CreateCycle(ctx, newCycle("web")); err != nil || again.ID != "web-2" {
		t.Fatalf("after abort: %+v, %v", again, err)
	}
	// Every replica holds the same history.
	c.WaitReplicated()
	for _, n := range c.Nodes() {
		got := n.Cycles("web", 0)
		if len(got) != 2 || got[0].ID != "web-2" || got[1].Phase != cycle.Aborted {
			t.Errorf("%s: history %+v", n.ID(), got)
		}
		if act := n.ActiveCycles(); len(act) != 2 {
			t.Errorf("%s: %d active cycles, want 2 (web-2 and api-1)", n.ID(), len(act))
		}
	}
}

// TestPackageRefsKeepLastKnownGood: the release live before the newest
// finished cycle, and a running cycle's package, are never garbage.
func TestPackageRefsKeepLastKnownGood(t *testing.T) {
	c := NewTestCluster(t, 1)
	s := c.WaitLeader()
	ctx := context.Background()
	cy := newCycle("web")
	cy.Package = cycle.Release{Version: "2", Digest: "sha256:22"}
	cy.Previous = cycle.Release{Version: "1", Digest: "sha256:11"}
	cur, err := s.CreateCycle(ctx, cy)
	if err != nil {
		t.Fatal(err)
	}
	if refs := s.PackageRefs(); len(refs["sha256:22"]) == 0 {
		t.Errorf("a running cycle's package is not referenced: %v", refs)
	}
	for _, p := range []cycle.Phase{cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby, cycle.Done} {
		cur.Phase = p
		if cur, err = s.UpdateCycle(ctx, cur); err != nil {
			t.Fatalf("move to %s: %v", p, err)
		}
	}
	if refs := s.PackageRefs(); len(refs["sha256:11"]) == 0 {
		t.Errorf("the last-known-good package is not referenced: %v", refs)
	}
}

package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pool"
)

func TestHideUnhideGenerations(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	type step struct {
		hide       bool
		gen        uint64
		wantErr    error
		wantHidden bool
		wantReason string
	}
	steps := []step{
		{hide: true, gen: 5, wantHidden: true, wantReason: pool.HiddenReason(5)},
		{hide: true, gen: 5, wantHidden: true, wantReason: pool.HiddenReason(5)}, // idempotent
		{hide: false, gen: 4, wantErr: ErrStaleGeneration, wantHidden: true, wantReason: pool.HiddenReason(5)},
		{hide: true, gen: 6, wantHidden: true, wantReason: pool.HiddenReason(5)}, // Consul keeps the first reason
		{hide: false, gen: 7, wantHidden: false},
		{hide: false, gen: 7, wantHidden: false}, // idempotent
		{hide: true, gen: 6, wantErr: ErrStaleGeneration, wantHidden: false},
		{hide: true, gen: 8, wantHidden: true, wantReason: pool.HiddenReason(8)},
	}
	for i, s := range steps {
		set := a.Unhide
		if s.hide {
			set = a.Hide
		}
		m, err := set(context.Background(), s.gen)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("step %d (hide=%v gen=%d): error %v, want %v", i, s.hide, s.gen, err, s.wantErr)
		}
		_, reason, on := e.reg.service("web-blue-1")
		if on != s.wantHidden || reason != s.wantReason {
			t.Fatalf("step %d (hide=%v gen=%d): Consul maintenance %v %q, want %v %q", i, s.hide, s.gen, on, reason, s.wantHidden, s.wantReason)
		}
		if err == nil && (m.Hidden != s.wantHidden || m.Generation != s.gen) {
			t.Fatalf("step %d: answer %+v", i, m)
		}
	}
	inv := a.Inventory(context.Background())
	if !inv.Maintenance.Hidden || inv.Maintenance.Generation != 8 || inv.Maintenance.Reason != pool.HiddenReason(8) || inv.ConsulError != "" {
		t.Fatalf("inventory maintenance = %+v (consul error %q)", inv.Maintenance, inv.ConsulError)
	}
}

func TestMaintenanceSurvivesReregistrationAndConsulRestart(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	if _, err := a.Hide(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	// An install re-registers the instance; it stays hidden.
	mustInstall(t, a, e.src.add(testPackage(t, "2.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	if reg, reason, on := e.reg.service("web-blue-1"); !on || reason != pool.HiddenReason(3) || reg.Meta[pool.MetaVersion] != "2.0.0" {
		t.Fatalf("after an install while hidden: maintenance %v %q, version %q", on, reason, reg.Meta[pool.MetaVersion])
	}
	// A Consul agent that lost everything gets it back on the next round.
	e.reg.forget()
	if err := a.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reg, reason, on := e.reg.service("web-blue-1"); reg == nil || !on || reason != pool.HiddenReason(3) {
		t.Fatalf("after Consul forgot: registered %v, maintenance %v %q", reg != nil, on, reason)
	}
}

func TestHideBeforeFirstInstall(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	if _, err := a.Hide(context.Background(), 1); err != nil {
		t.Fatalf("hide with nothing installed: %v", err)
	}
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	if _, reason, on := e.reg.service("web-blue-1"); !on || reason != pool.HiddenReason(1) {
		t.Fatalf("the first registration is not hidden: %v %q", on, reason)
	}
}

func TestHideWithConsulDown(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	e.reg.mu.Lock()
	e.reg.down = true
	e.reg.mu.Unlock()
	if _, err := a.Hide(context.Background(), 2); !errors.Is(err, ErrConsul) {
		t.Fatalf("hide with Consul down: %v, want ErrConsul", err)
	}
	if inv := a.Inventory(context.Background()); !inv.Maintenance.Hidden || inv.ConsulError == "" {
		t.Fatalf("inventory = %+v; want hidden recorded and a Consul error", inv.Maintenance)
	}
	e.reg.mu.Lock()
	e.reg.down = false
	e.reg.mu.Unlock()
	if err := a.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, reason, on := e.reg.service("web-blue-1"); !on || reason != pool.HiddenReason(2) {
		t.Fatalf("after Consul came back: maintenance %v %q", on, reason)
	}
}

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/pkgfile"
)

func TestReadoptAfterAgentRestart(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.StopWithAgent = false
	a, stop := e.start()
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	before := a.Inventory(context.Background())
	stop() // the agent goes away; the app keeps running
	e.wantServing("1.0.0")

	e.cfg.StopWithAgent = true
	b, _ := e.start()
	after := b.Inventory(context.Background())
	if after.App.PID != before.App.PID || !after.App.Adopted || !after.App.Running {
		t.Fatalf("app after the agent restart = %+v; want pid %d adopted", after.App, before.App.PID)
	}
	if after.Current == nil || *after.Current != *before.Current || after.LastInstall.FinishedAt != before.LastInstall.FinishedAt {
		t.Fatalf("inventory changed across the restart:\nbefore %+v\nafter  %+v", before, after)
	}
	// The adopted app dies: the supervisor notices and starts it again.
	if err := syscall.Kill(after.App.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the app to be restarted", func() error {
		inv := b.Inventory(context.Background())
		if inv.App.PID == after.App.PID || inv.App.Health != HealthPassing || inv.App.Restarts != 1 {
			return errors.New("not yet: " + inv.App.Health)
		}
		return nil
	})
	e.wantServing("1.0.0")
}

func TestReadoptStartsAppWhenGone(t *testing.T) {
	e := newTestEnv(t)
	a, stop := e.start() // StopWithAgent: the app stops with the agent
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})), OutcomeInstalled)
	old := a.Inventory(context.Background()).App.PID
	stop()
	if _, err := e.get(); err == nil {
		t.Fatal("the app still answers after the agent stopped it")
	}
	b, _ := e.start()
	waitUntil(t, "the app to be started from current", func() error {
		if _, err := e.get(); err != nil {
			return err
		}
		return nil
	})
	if inv := b.Inventory(context.Background()); inv.App.PID == old || inv.App.Adopted {
		t.Fatalf("app = %+v; want a new, not adopted, process", inv.App)
	}
}

func TestStopKillsAStubbornApp(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.StopTimeout = 300 * time.Millisecond
	a, _ := e.start()
	mustInstall(t, a, e.src.add(testPackage(t, "1.0.0", "stubborn", pkgfile.Hooks{})), OutcomeInstalled)
	pid := a.Inventory(context.Background()).App.PID
	start := time.Now()
	if err := a.sup.stop(); err != nil {
		t.Fatal(err)
	}
	if sameProcess(pid, 0) || alive(pid) {
		t.Fatalf("pid %d survived the stop", pid)
	}
	if took := time.Since(start); took < e.cfg.StopTimeout {
		t.Fatalf("stop took %s; a process ignoring SIGTERM must get the whole stop timeout %s", took, e.cfg.StopTimeout)
	}
}

func TestStateRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, stateFile)
	st, err := loadState(path)
	if err != nil || st.Current != "" {
		t.Fatalf("missing state: %+v, %v", st, err)
	}
	st.Current = "1-0123456789ab"
	st.Releases = []Release{{Dir: "1-0123456789ab", Version: "1"}}
	st.Maintenance = Maintenance{Hidden: true, Generation: 9}
	if err := saveState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil || got.Current != st.Current || got.Maintenance != st.Maintenance || len(got.Releases) != 1 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path); err == nil {
		t.Fatal("a corrupt state file loaded")
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	_, state, err := procStat(pid)
	return err == nil && state != 'Z'
}

// TestStateLostKeepsCurrent: with agent-state.json gone, the agent follows
// `current` on disk, and installing the digest it holds changes nothing.
func TestStateLostKeepsCurrent(t *testing.T) {
	e := newTestEnv(t)
	a, stop := e.start()
	d := e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{}))
	mustInstall(t, a, d, OutcomeInstalled)
	stop()
	if err := os.Remove(filepath.Join(e.dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	b, _ := e.start()
	waitUntil(t, "the app to be started from current", func() error { _, err := e.get(); return err })
	inv := b.Inventory(context.Background())
	if inv.Current == nil || inv.Current.Version != "1.0.0" || inv.Current.Digest != "" {
		t.Fatalf("current after losing the state = %+v; want 1.0.0 with its digest unknown", inv.Current)
	}
	pid := inv.App.PID
	res := mustInstall(t, b, d, OutcomeUnchanged)
	if res.Current == nil || res.Current.Digest != d {
		t.Fatalf("current after reinstalling = %+v; want its digest recorded", res.Current)
	}
	if got := b.Inventory(context.Background()).App.PID; got != pid {
		t.Fatalf("an unchanged install restarted the app: pid %d, was %d", got, pid)
	}
}

// TestLinkAheadOfState: a crash between switching `current` and saving the
// state leaves the link ahead; the next agent follows the link.
func TestLinkAheadOfState(t *testing.T) {
	e := newTestEnv(t)
	a, stop := e.start()
	d1 := e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{}))
	d2 := e.src.add(testPackage(t, "2.0.0", "serve", pkgfile.Hooks{}))
	mustInstall(t, a, d1, OutcomeInstalled)
	mustInstall(t, a, d2, OutcomeInstalled)
	stop()
	st, err := loadState(filepath.Join(e.dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := "1.0.0-"+shortDigest(d1), "2.0.0-"+shortDigest(d2)
	st.Current, st.Previous, st.App = v1, "", nil // as saved before the switch to v2
	if err := saveState(filepath.Join(e.dir, stateFile), st); err != nil {
		t.Fatal(err)
	}
	b, _ := e.start()
	inv := b.Inventory(context.Background())
	if inv.Current == nil || inv.Current.Dir != v2 || inv.Previous == nil || inv.Previous.Dir != v1 {
		t.Fatalf("current %+v, previous %+v; want %s after %s", inv.Current, inv.Previous, v2, v1)
	}
	waitUntil(t, "the app to be started from current", func() error { _, err := e.get(); return err })
	e.wantServing("2.0.0")
}

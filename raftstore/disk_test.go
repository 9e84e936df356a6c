package raftstore

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openDisk starts a real single-node Store (TCP transport, bolt, file
// snapshots) and waits until it leads.
func openDisk(t *testing.T, dir, bind string) *Store {
	t.Helper()
	s, err := New(Config{
		NodeID:    "disk1",
		DataDir:   dir,
		BindAddr:  bind,
		APIAddr:   "127.0.0.1:7443",
		Bootstrap: true,
		Timing:    TimingFast,
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown() })
	waitDiskLeader(t, s)
	return s
}

// waitDiskLeader polls diskReady until it holds or TestWaitTimeout passes.
func waitDiskLeader(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.NewTimer(TestWaitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !diskReady(t, s) {
		select {
		case <-deadline.C:
			t.Fatal("single node never became a leader")
		case <-tick.C:
		}
	}
}

func TestDiskStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	s := openDisk(t, dir, "127.0.0.1:0")
	addr := s.Addr()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("advertised address %q has no real port", addr)
	}
	if _, err := s.SetServiceState(ctx, svc("web", 7, PoolGreen)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, AuditEntry{Action: "deploy"}); err != nil {
		t.Fatal(err)
	}
	want := stateBytes(t, s)
	wantIndex := s.AppliedIndex()
	for _, p := range []string{"raft/raft.db", "raft/snapshots"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("expected %s in the data dir: %v", p, err)
		}
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Reopen on the same address with Bootstrap still set: no re-bootstrap,
	// the log replays and the state is back.
	s2 := openDisk(t, dir, addr)
	if got := stateBytes(t, s2); !bytes.Equal(got, want) {
		t.Fatalf("state after restart:\n got %s\nwant %s", got, want)
	}
	if got := s2.AppliedIndex(); got < wantIndex {
		t.Errorf("applied index after restart = %d, want >= %d", got, wantIndex)
	}
	if _, err := s2.SetServiceState(ctx, svc("web", 8, PoolBlue)); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
}

func TestDiskStoreRestoreSurvivesRestartViaSnapshot(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	s := openDisk(t, dir, "127.0.0.1:0")
	addr := s.Addr()
	if _, err := s.SetServiceState(ctx, svc("web", 1, PoolBlue)); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	if _, err := s.SaveSnapshot(ctx, &file); err != nil {
		t.Fatal(err)
	}
	want := stateBytes(t, s)
	if _, err := s.SetServiceState(ctx, svc("web", 2, PoolGreen)); err != nil {
		t.Fatal(err)
	}
	if err := s.RestoreSnapshot(ctx, &file); err != nil {
		t.Fatal(err)
	}
	// Force a Raft snapshot so the restart goes through FSM.Restore too.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	s2 := openDisk(t, dir, addr)
	if got := stateBytes(t, s2); !bytes.Equal(got, want) {
		t.Fatalf("restored state after restart:\n got %s\nwant %s", got, want)
	}
}

func TestDiskStoreRefusesSecondOpen(t *testing.T) {
	dir := t.TempDir()
	openDisk(t, dir, "127.0.0.1:0")
	_, err := New(Config{NodeID: "disk1", DataDir: dir, BindAddr: "127.0.0.1:0", Timing: TimingFast})
	if err == nil || !strings.Contains(err.Error(), "another cyclerd") {
		t.Fatalf("second open: err = %v, want a lock error naming the cause", err)
	}
}

// diskReady reports whether s leads and has published its NodeMeta, the one
// write a new leader makes by itself.
func diskReady(t *testing.T, s *Store) bool {
	if s.Barrier(testCtx(t)) != nil {
		return false
	}
	m, _ := s.NodeMeta(s.ID())
	return m.APIAddr == s.cfg.APIAddr
}

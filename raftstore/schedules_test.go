package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func testRun(svc, sched string, fire time.Time, outcome, reason string) ScheduleRun {
	return ScheduleRun{RunID: RunID(svc, sched, fire), Service: svc, Schedule: sched, Action: "deploy-staged",
		FireTime: fire, Outcome: outcome, Reason: reason}
}

func TestApplyScheduleRunClaimsOnce(t *testing.T) {
	f := newFSM(zap.NewNop())
	fire := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	claim := testRun("web", "nightly", fire, RunStarted, "")
	claim.Digest = testDigest('a')
	applyTo(t, f, 1, PackageAddCommand, pkgMeta('a', "web", "1.0", fire))
	applyTo(t, f, 2, StageCommand, stageBody{Stage: Stage{Service: "web", Digest: testDigest('a'), Version: "1.0"}})

	rival := claim
	rival.Outcome, rival.Reason = RunSkipped, "outside window"
	done := claim
	done.CycleID = "web-1"
	tests := []struct {
		name        string
		give        scheduleRunBody
		wantOutcome string
		wantCycle   string
		wantErr     error
	}{
		{name: "first claim is stored", give: scheduleRunBody{Run: claim}, wantOutcome: RunStarted},
		{name: "a second record of the run returns the first", give: scheduleRunBody{Run: rival}, wantOutcome: RunStarted},
		{name: "completing without a cycle id is refused", give: scheduleRunBody{Run: claim, Complete: true}, wantErr: ErrInvalidCommand},
		{name: "completing with the cycle", give: scheduleRunBody{Run: done, Complete: true}, wantOutcome: RunStarted, wantCycle: "web-1"},
		{name: "a completed run does not change again", give: scheduleRunBody{Run: rival, Complete: true}, wantOutcome: RunStarted, wantCycle: "web-1"},
		{name: "an earlier fire is refused", give: scheduleRunBody{Run: testRun("web", "nightly", fire.Add(-time.Hour), RunSkipped, "missed")}, wantErr: ErrInvalidCommand},
		{name: "completing an unknown run is refused", give: scheduleRunBody{Run: testRun("web", "nightly", fire.Add(time.Hour), RunSkipped, "x"), Complete: true}, wantErr: ErrInvalidCommand},
		{name: "a skip without a reason is refused", give: scheduleRunBody{Run: testRun("web", "nightly", fire.Add(time.Hour), RunSkipped, "")}, wantErr: ErrInvalidCommand},
		{name: "a run id that does not match is refused", give: scheduleRunBody{Run: func() ScheduleRun {
			r := testRun("web", "nightly", fire.Add(time.Hour), RunStarted, "")
			r.RunID = "web/nightly/1"
			return r
		}()}, wantErr: ErrInvalidCommand},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := applyTo(t, f, uint64(i+3), ScheduleRunCommand, tt.give)
			if tt.wantErr != nil {
				if err, _ := got.(error); !errors.Is(err, tt.wantErr) {
					t.Fatalf("response = %v, want %v", got, tt.wantErr)
				}
				return
			}
			r, ok := got.(ScheduleRun)
			if !ok || r.Outcome != tt.wantOutcome || r.CycleID != tt.wantCycle {
				t.Fatalf("response = %#v, want outcome %q cycle %q", got, tt.wantOutcome, tt.wantCycle)
			}
		})
	}
	if _, ok := f.state.Staged["web"]; ok {
		t.Error("the stage was not cleared when the run's cycle was recorded")
	}
	if got := f.state.LastFires["web/nightly"]; !got.Equal(fire) {
		t.Errorf("last fire = %v, want %v", got, fire)
	}
	if n := len(f.state.ScheduleRuns["web"]); n != 1 {
		t.Errorf("%d runs stored, want 1", n)
	}
}

func TestScheduleRunsAreBounded(t *testing.T) {
	f := newFSM(zap.NewNop())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range ScheduleRunRetain + 5 {
		applyTo(t, f, uint64(i+1), ScheduleRunCommand, scheduleRunBody{Run: testRun("web", "s", t0.Add(time.Duration(i)*time.Minute), RunSkipped, "x")})
	}
	runs := f.state.ScheduleRuns["web"]
	if len(runs) != ScheduleRunRetain || !runs[0].FireTime.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("%d runs, oldest %v; want %d, oldest the 6th", len(runs), runs[0].FireTime, ScheduleRunRetain)
	}
	// The trimmed first run cannot be claimed again.
	got := applyTo(t, f, 1000, ScheduleRunCommand, scheduleRunBody{Run: testRun("web", "s", t0, RunStarted, "")})
	if err, _ := got.(error); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("claim of a trimmed run = %v, want ErrInvalidCommand", got)
	}
}

func TestApplyStage(t *testing.T) {
	f := newFSM(zap.NewNop())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	applyTo(t, f, 1, PackageAddCommand, pkgMeta('a', "web", "1.0", t0))
	applyTo(t, f, 2, PackageAddCommand, pkgMeta('b', "web", "2.0", t0))
	tests := []struct {
		name       string
		give       stageBody
		wantErr    bool
		wantDigest string // "" means nothing staged
	}{
		{name: "stage", give: stageBody{Stage: Stage{Service: "web", Digest: testDigest('a'), Version: "1.0"}}, wantDigest: testDigest('a')},
		{name: "a new stage replaces it", give: stageBody{Stage: Stage{Service: "web", Digest: testDigest('b'), Version: "2.0"}}, wantDigest: testDigest('b')},
		{name: "an unknown package is refused", give: stageBody{Stage: Stage{Service: "web", Digest: testDigest('c')}}, wantErr: true, wantDigest: testDigest('b')},
		{name: "a bad digest is refused", give: stageBody{Stage: Stage{Service: "web", Digest: "sha256:x"}}, wantErr: true, wantDigest: testDigest('b')},
		{name: "clear", give: stageBody{Stage: Stage{Service: "web"}, Clear: true}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := applyTo(t, f, uint64(i+3), StageCommand, tt.give)
			if _, isErr := got.(error); isErr != tt.wantErr {
				t.Fatalf("response = %v, want an error: %v", got, tt.wantErr)
			}
			if d := f.state.Staged["web"].Digest; d != tt.wantDigest {
				t.Errorf("staged %q, want %q", d, tt.wantDigest)
			}
		})
	}
}

func TestStagedPackageIsProtected(t *testing.T) {
	c := NewTestCluster(t, 3)
	s := c.WaitLeader()
	ctx := context.Background()
	m := pkgMeta('a', "web", "1.0", time.Time{})
	if _, err := s.AddPackage(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStage(ctx, Stage{Service: "web", Digest: m.Digest, Version: "1.0", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePackage(ctx, m.Digest); !errors.Is(err, ErrPackageProtected) || !strings.Contains(err.Error(), "staged") {
		t.Fatalf("delete of a staged package: %v, want ErrPackageProtected naming the stage", err)
	}
	if err := s.ClearStage(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePackage(ctx, m.Digest); err != nil {
		t.Fatalf("delete after the stage was cleared: %v", err)
	}
}

// TestScheduleRunReplicatesAndSurvivesSnapshots: the runs, last fires and
// stage are on every node, and in a snapshot restored into a fresh FSM.
func TestScheduleRunReplicatesAndSurvivesSnapshots(t *testing.T) {
	c := NewTestCluster(t, 3)
	s := c.WaitLeader()
	ctx := context.Background()
	fire := time.Date(2026, 3, 8, 7, 30, 0, 0, time.UTC)
	m := pkgMeta('a', "web", "1.0", time.Time{})
	if _, err := s.AddPackage(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStage(ctx, Stage{Service: "web", Digest: m.Digest, Version: "1.0", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	first, err := s.RecordScheduleRun(ctx, testRun("web", "nightly", fire, RunStarted, ""))
	if err != nil {
		t.Fatal(err)
	}
	// A second leader's claim of the same fire gets the first record back.
	second, err := s.RecordScheduleRun(ctx, testRun("web", "nightly", fire, RunStarted, ""))
	if err != nil || !second.At.Equal(first.At) {
		t.Fatalf("second claim = %+v, %v; want the first record (at %v)", second, err, first.At)
	}
	c.WaitReplicated()
	for _, n := range c.Nodes() {
		if r, ok := n.ScheduleRun("web", first.RunID); !ok || r.Outcome != RunStarted {
			t.Errorf("%s: run %+v, %v", n.ID(), r, ok)
		}
		if lf, ok := n.LastFire("web", "nightly"); !ok || !lf.Equal(fire) {
			t.Errorf("%s: last fire %v, %v", n.ID(), lf, ok)
		}
		if g, ok := n.Staged("web"); !ok || g.Digest != m.Digest {
			t.Errorf("%s: staged %+v, %v", n.ID(), g, ok)
		}
	}
	snap, err := s.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(zap.NewNop())
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if a, b := mustEncode(t, g.state), stateBytes(t, s); !bytes.Equal(a, b) {
		t.Errorf("restored state differs:\n got %s\nwant %s", a, b)
	}
	if len(g.state.ScheduleRuns["web"]) != 1 || len(g.state.LastFires) != 1 || len(g.state.Staged) != 1 {
		t.Errorf("restored schedule state: %+v %+v %+v", g.state.ScheduleRuns, g.state.LastFires, g.state.Staged)
	}
	// The restore command path (operator snapshots) decodes the same.
	fresh := newFSM(zap.NewNop())
	if got := applyTo(t, fresh, 1, RestoreStateCommand, json.RawMessage(stateBytes(t, s))); got != nil {
		t.Fatalf("restore command: %v", got)
	}
	if r := fresh.state.ScheduleRuns["web"]; len(r) != 1 || r[0].RunID != first.RunID {
		t.Errorf("after the restore command: runs %+v", r)
	}
}

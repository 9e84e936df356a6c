//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/orchestrator"
	"github.com/cyclerhq/cycler/raftstore"
)

// scheduleService is the lab's web service with a deploy-staged schedule
// firing every `every` seconds, in UTC, with no windows.
func scheduleService(every int) string {
	return labService(fmt.Sprintf(`schedule "soon" {
    cron   = "*/%d * * * * *"
    action = "deploy-staged"
  }`, every))
}

// schedules reads GET /v1/schedules/web through cyclerctl on addr.
func (l *fleetLab) schedules(ctx context.Context, addr string) (orchestrator.ServiceSchedules, error) {
	out, _, err := l.c.ctl(ctx, addr, "--json", "schedule", "list", "web")
	if err != nil {
		return orchestrator.ServiceSchedules{}, err
	}
	var list []orchestrator.ServiceSchedules
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || len(list[0].Schedules) != 1 {
		return orchestrator.ServiceSchedules{}, fmt.Errorf("schedule list: %v\n%s", err, out)
	}
	return list[0], nil
}

// history returns the cycles of web, newest first.
func (l *fleetLab) history(ctx context.Context, addr string) ([]cycle.Cycle, error) {
	out, _, err := l.c.ctl(ctx, addr, "--json", "history", "web")
	if err != nil {
		return nil, err
	}
	var cs []cycle.Cycle
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		return nil, fmt.Errorf("history: %v\n%s", err, out)
	}
	return cs, nil
}

// auditOf returns the audit entries with action by the scheduler.
func (l *fleetLab) auditOf(ctx context.Context, addr, action string) []raftstore.AuditEntry {
	l.t.Helper()
	out := l.c.mustCtl(ctx, addr, "--json", "audit", "--limit", "1000")
	var es []raftstore.AuditEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		harness.Fatalf(l.t, "audit: %v\n%s", err, out)
	}
	var got []raftstore.AuditEntry
	for _, e := range es {
		if e.Action == action && e.TokenName == "scheduler" {
			got = append(got, e)
		}
	}
	return got
}

// waitUntil blocks until the wall clock reaches at (a moment, not a
// condition: the schedule fires by the clock).
func waitUntil(ctx context.Context, t *testing.T, at time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		harness.Fatal(t, ctx.Err())
	}
}

// nextFire returns the schedule's next fire time after the first one that
// is at least `margin` away.
func nextFire(t *testing.T, s orchestrator.ServiceSchedules, margin time.Duration) time.Time {
	t.Helper()
	for _, n := range s.Schedules[0].Next {
		if time.Until(n.At) >= margin {
			return n.At
		}
	}
	harness.Fatalf(t, "no fire time %s ahead in %+v", margin, s.Schedules[0].Next)
	return time.Time{}
}

// runAt returns the schedule's run for fire time at, if recorded.
func runAt(s orchestrator.ServiceSchedules, at time.Time) (raftstore.ScheduleRun, bool) {
	for _, r := range s.Schedules[0].LastRuns {
		if r.FireTime.Equal(at) {
			return r, true
		}
	}
	return raftstore.ScheduleRun{}, false
}

// TestScheduleFiresOnceAcrossFailover: a package is staged for a schedule
// that fires every 30 s, and the leader is killed (SIGKILL) just before
// the fire. The new leader runs the fire exactly once: one cycle, with
// trigger schedule:soon, by the scheduler, its request id the run id.
func TestScheduleFiresOnceAcrossFailover(t *testing.T) {
	l := startFleetLab(t, scheduleService(30))
	ctx := testContext(t, 6*time.Minute)
	_, v1 := l.pkg(ctx, "1.0.0")
	addr := l.c.nodes[0].APIAddr

	// Stage just after a fire, so the next fire is the first to see it.
	s, err := l.schedules(ctx, addr)
	if err != nil {
		harness.Fatal(t, err)
	}
	waitUntil(ctx, t, nextFire(t, s, 0).Add(500*time.Millisecond))
	out := l.c.mustCtl(ctx, addr, "deploy", v1, "--service", "web", "--at-window")
	if !strings.Contains(out, "staged "+v1+" for the next deploy window of web") || !strings.Contains(out, "schedule soon fires next at") {
		harness.Fatalf(t, "staging said:\n%s", out)
	}
	if s, err = l.schedules(ctx, addr); err != nil {
		harness.Fatal(t, err)
	}
	fire := nextFire(t, s, 5*time.Second)
	if s.Staged == nil || s.Staged.Digest != v1 {
		harness.Fatalf(t, "staged %+v, want %s", s.Staged, v1)
	}

	leader := l.c.waitLeader(ctx, l.c.nodes...)
	waitUntil(ctx, t, fire.Add(-1500*time.Millisecond))
	if err := leader.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	t.Logf("killed leader %s %s before the fire at %s", leader.ID, time.Until(fire).Round(time.Millisecond), fire.Format(time.RFC3339))
	survivors := l.c.others(leader)
	newLeader := l.c.waitLeader(ctx, survivors...)
	t.Logf("%s leads; fire was %s ago", newLeader.ID, time.Since(fire).Round(time.Millisecond))

	runID := raftstore.RunID("web", "soon", fire)
	var run raftstore.ScheduleRun
	if err := harness.WaitFor(ctx, "the run of the fire with its cycle", func() error {
		s, err := l.schedules(ctx, survivors[0].APIAddr)
		if err != nil {
			return err
		}
		r, ok := runAt(s, fire)
		if !ok || r.CycleID == "" {
			return fmt.Errorf("run %+v (%v); runs %+v", r, ok, s.Schedules[0].LastRuns)
		}
		run = r
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}
	if run.RunID != runID || run.Outcome != raftstore.RunStarted || run.Digest != v1 {
		harness.Fatalf(t, "run %+v, want %s started with %s", run, runID, v1)
	}
	var done cycle.Cycle
	if err := harness.WaitFor(ctx, "the scheduled cycle to finish", func() error {
		cs, err := l.history(ctx, survivors[0].APIAddr)
		if err != nil {
			return err
		}
		if len(cs) != 1 {
			return fmt.Errorf("%d cycles: %+v", len(cs), cs)
		}
		if !cs[0].Phase.Terminal() {
			return fmt.Errorf("cycle %s in %s", cs[0].ID, cs[0].Phase)
		}
		done = cs[0]
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}
	if done.ID != run.CycleID || done.Trigger != "schedule:soon" || done.By != "scheduler" || done.RequestID != runID || done.Forced {
		harness.Errorf(t, "cycle %s: trigger %q by %q, request id %q, forced %v; want run %s's, schedule:soon by scheduler", done.ID, done.Trigger, done.By, done.RequestID, done.Forced, runID)
	}
	if done.Phase != cycle.Done {
		harness.Errorf(t, "cycle %s ended %s: %s", done.ID, done.Phase, done.Message)
	}
	// The next fires find nothing staged, and still no second cycle.
	if err := harness.WaitFor(ctx, "a later fire skipped for nothing staged", func() error {
		s, err := l.schedules(ctx, survivors[0].APIAddr)
		if err != nil {
			return err
		}
		if s.Staged != nil {
			return fmt.Errorf("still staged: %+v", s.Staged)
		}
		if r := s.Schedules[0].LastRuns[0]; !r.FireTime.After(fire) || r.Outcome != raftstore.RunSkipped || !strings.Contains(r.Reason, "nothing is staged") {
			return fmt.Errorf("newest run %+v", r)
		}
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}
	if cs, err := l.history(ctx, survivors[0].APIAddr); err != nil || len(cs) != 1 {
		harness.Fatalf(t, "history: %d cycles (%v), want 1", len(cs), err)
	}
	starts := l.auditOf(ctx, survivors[0].APIAddr, "cycle.start")
	if len(starts) != 1 || starts[0].Target != done.ID || !strings.Contains(starts[0].Detail, "trigger schedule:soon") {
		harness.Errorf(t, "scheduler's cycle.start audit entries: %+v", starts)
	}
}

// TestFreezeBlocksSchedule: while web is frozen a manual deploy is refused
// with exit 2, with --force too, and each fire of its schedule is skipped
// and recorded (run and audit) with the freeze as the reason; after
// unfreeze the next fire runs the staged package.
func TestFreezeBlocksSchedule(t *testing.T) {
	l := startFleetLab(t, scheduleService(20))
	ctx := testContext(t, 6*time.Minute)
	_, v1 := l.pkg(ctx, "1.0.0")
	addr := l.c.nodes[1].APIAddr

	l.c.mustCtl(ctx, addr, "freeze", "web", "--reason", "release freeze")
	for _, args := range [][]string{{v1, "--service", "web"}, {v1, "--service", "web", "--force"}} {
		code, _, out := l.deploy(ctx, addr, args...)
		if code != cycle.ExitRefused || !strings.Contains(out, "frozen") {
			harness.Fatalf(t, "deploy %v while frozen: exit %d, want 2 naming the freeze\n%s", args, code, out)
		}
	}
	l.c.mustCtl(ctx, addr, "deploy", v1, "--service", "web", "--at-window")
	staged := time.Now()

	var skipped raftstore.ScheduleRun
	if err := harness.WaitFor(ctx, "a fire skipped because of the freeze", func() error {
		s, err := l.schedules(ctx, addr)
		if err != nil {
			return err
		}
		for _, r := range s.Schedules[0].LastRuns {
			if r.FireTime.After(staged) && r.Outcome == raftstore.RunSkipped && strings.Contains(r.Reason, "frozen") {
				skipped = r
				return nil
			}
		}
		return fmt.Errorf("runs %+v", s.Schedules[0].LastRuns)
	}); err != nil {
		harness.Fatal(t, err)
	}
	if !strings.Contains(skipped.Reason, "release freeze") {
		harness.Errorf(t, "skip reason %q does not name the freeze", skipped.Reason)
	}
	if cs, err := l.history(ctx, addr); err != nil || len(cs) != 0 {
		harness.Fatalf(t, "history while frozen: %+v (%v), want no cycle", cs, err)
	}
	found := false
	for _, e := range l.auditOf(ctx, addr, "schedule.skip") {
		found = found || strings.Contains(e.Detail, "release freeze")
	}
	if !found {
		t.Error("no schedule.skip audit entry names the freeze")
	}

	l.c.mustCtl(ctx, addr, "unfreeze", "web")
	var run raftstore.ScheduleRun
	if err := harness.WaitFor(ctx, "the next fire after unfreeze to start a cycle", func() error {
		s, err := l.schedules(ctx, addr)
		if err != nil {
			return err
		}
		if r := s.Schedules[0].LastRuns[0]; r.Outcome == raftstore.RunStarted && r.CycleID != "" {
			run = r
			return nil
		}
		return fmt.Errorf("newest run %+v", s.Schedules[0].LastRuns[0])
	}); err != nil {
		harness.Fatal(t, err)
	}
	if !run.FireTime.After(skipped.FireTime) {
		harness.Errorf(t, "the started run fired at %s, not after the skipped one at %s", run.FireTime, skipped.FireTime)
	}
	if err := harness.WaitFor(ctx, "the scheduled cycle to finish", func() error {
		cs, err := l.history(ctx, addr)
		if err != nil {
			return err
		}
		if len(cs) != 1 || !cs[0].Phase.Terminal() {
			return fmt.Errorf("cycles %+v", cs)
		}
		if cs[0].ID != run.CycleID || cs[0].Trigger != "schedule:soon" || cs[0].Phase != cycle.Done {
			return fmt.Errorf("cycle %s %s trigger %s: %s", cs[0].ID, cs[0].Phase, cs[0].Trigger, cs[0].Message)
		}
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}
	l.requireServing(ctx, "1.0.0")
}

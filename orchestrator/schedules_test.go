package orchestrator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/raftstore"
)

// oneAgentFleet has one reachable agent in the blue pool, enough for the
// preflight of a service with nothing live yet.
type oneAgentFleet struct{}

func (oneAgentFleet) Agents(context.Context, string) ([]fleet.Agent, error) {
	return []fleet.Agent{{Service: "web", Pool: raftstore.PoolBlue, Instance: "web-blue-1"}}, nil
}
func (oneAgentFleet) Install(context.Context, fleet.Agent, string) (agent.InstallResult, error) {
	return agent.InstallResult{}, nil
}
func (oneAgentFleet) SetHidden(context.Context, fleet.Agent, uint64, bool) (agent.Maintenance, error) {
	return agent.Maintenance{}, nil
}
func (oneAgentFleet) Inventory(context.Context, fleet.Agent) (agent.Inventory, error) {
	return agent.Inventory{}, nil
}

// testClock is an injected clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type schedLab struct {
	t      *testing.T
	c      *raftstore.TestCluster
	clock  *testClock
	spec   Spec
	digest string
}

const testDigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// newSchedLab starts a 3-node in-memory cluster with package web 1.0
// pushed and staged, and a web service defined by spec.
func newSchedLab(t *testing.T, spec Spec) *schedLab {
	t.Helper()
	c := raftstore.NewTestCluster(t, 3)
	s := c.WaitLeader()
	ctx := context.Background()
	if _, err := s.AddPackage(ctx, raftstore.PackageMeta{Digest: testDigestA, Name: "web", Version: "1.0", Size: 1}); err != nil {
		t.Fatal(err)
	}
	spec.Name, spec.MinLive = "web", 1
	l := &schedLab{t: t, c: c, clock: &testClock{}, spec: spec, digest: testDigestA}
	l.stage()
	return l
}

// orch returns an orchestrator on the current leader.
func (l *schedLab) orch() *Orchestrator {
	return New(Config{Store: l.c.WaitLeader(), Fleet: oneAgentFleet{}, Clock: l.clock.Now,
		Services: func() map[string]Spec { return map[string]Spec{"web": l.spec} }})
}

func (l *schedLab) stage() {
	l.t.Helper()
	if _, err := l.c.WaitLeader().SetStage(context.Background(), raftstore.Stage{Service: "web", Digest: l.digest, Version: "1.0", By: "ops"}); err != nil {
		l.t.Fatal(err)
	}
}

// entry returns the lab's schedule name as the orchestrator sees it.
func (l *schedLab) entry(o *Orchestrator, name string) scheduleEntry {
	l.t.Helper()
	for _, e := range o.scheduleEntries() {
		if e.cfg.Name == name {
			return e
		}
	}
	l.t.Fatalf("no schedule %q", name)
	return scheduleEntry{}
}

// finishActive ends the active cycle, as if it had run.
func (l *schedLab) finishActive() {
	l.t.Helper()
	s := l.c.WaitLeader()
	if c, ok := s.LastCycle("web"); ok && c.Active() {
		c.Phase = cycle.Aborted
		if _, err := s.UpdateCycle(context.Background(), c); err != nil {
			l.t.Fatal(err)
		}
	}
}

func (l *schedLab) fire(o *Orchestrator, name string, now time.Time, onTime bool) {
	l.t.Helper()
	l.clock.Set(now)
	err := o.fireSchedule(context.Background(), l.entry(o, name), now, onTime)
	// An election on a loaded machine: fireSchedule is idempotent, so the
	// new leader's orchestrator simply handles the fire again.
	for i := 0; i < 3 && errors.Is(err, raftstore.ErrNotLeader); i++ {
		o = l.orch()
		err = o.fireSchedule(context.Background(), l.entry(o, name), now, onTime)
	}
	if err != nil {
		l.t.Fatalf("fire at %v: %v", now, err)
	}
}

func (l *schedLab) runs() []raftstore.ScheduleRun {
	rs := l.c.WaitLeader().ScheduleRuns("web", "", 0)
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i] // oldest first
	}
	return rs
}

func schedule(name, spec, zone string) config.Schedule {
	return config.Schedule{Name: name, Cron: spec, TimeZone: zone, Action: config.ActionDeployStaged, MaxDelay: "15m"}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestScheduleAcrossDST runs a daily 02:30 deploy-staged schedule with a
// 01:00-04:00 window through each 2026 DST change of Europe/Berlin and
// America/New_York, two days either side, with the clock injected. What
// robfig/cron does, and so what cycler does:
//   - spring: 02:30 does not exist on the change day, and nothing fires
//     that day;
//   - autumn: a wall time in the repeated hour fires twice, once in each
//     offset (Berlin repeats 02:00-03:00, so 02:30 fires twice; New York
//     repeats 01:00-02:00, so 02:30 fires once);
//   - the window compares wall-clock time, so every fire is inside it.
func TestScheduleAcrossDST(t *testing.T) {
	tests := []struct {
		name  string
		zone  string
		day   [3]int // the change day
		want  []string
		edges map[string]bool // a local wall time on the change day, as UTC, and whether the window is open
	}{
		{name: "Berlin spring forward", zone: "Europe/Berlin", day: [3]int{2026, 3, 29},
			want:  []string{"03-27 02:30 CET", "03-28 02:30 CET", "03-30 02:30 CEST", "03-31 02:30 CEST"},
			edges: map[string]bool{"2026-03-29T00:30:00Z": true, "2026-03-29T01:30:00Z": true, "2026-03-29T02:00:00Z": false}},
		{name: "Berlin fall back", zone: "Europe/Berlin", day: [3]int{2026, 10, 25},
			want:  []string{"10-23 02:30 CEST", "10-24 02:30 CEST", "10-25 02:30 CEST", "10-25 02:30 CET", "10-26 02:30 CET", "10-27 02:30 CET"},
			edges: map[string]bool{"2026-10-24T23:00:00Z": true, "2026-10-25T01:30:00Z": true, "2026-10-25T03:00:00Z": false}},
		{name: "New York spring forward", zone: "America/New_York", day: [3]int{2026, 3, 8},
			want:  []string{"03-06 02:30 EST", "03-07 02:30 EST", "03-09 02:30 EDT", "03-10 02:30 EDT"},
			edges: map[string]bool{"2026-03-08T06:30:00Z": true, "2026-03-08T07:30:00Z": true, "2026-03-08T08:00:00Z": false}},
		{name: "New York fall back", zone: "America/New_York", day: [3]int{2026, 11, 1},
			want:  []string{"10-30 02:30 EDT", "10-31 02:30 EDT", "11-01 02:30 EST", "11-02 02:30 EST", "11-03 02:30 EST"},
			edges: map[string]bool{"2026-11-01T05:30:00Z": true, "2026-11-01T06:30:00Z": true, "2026-11-01T08:30:00Z": true, "2026-11-01T09:00:00Z": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := mustZone(t, tt.zone)
			win := config.Window{Name: "night", Start: "01:00", End: "04:00", TimeZone: tt.zone}
			l := newSchedLab(t, Spec{Schedules: []config.Schedule{schedule("nightly", "30 2 * * *", tt.zone)}, Windows: []config.Window{win}})
			o := l.orch()
			e := l.entry(o, "nightly")
			start := time.Date(tt.day[0], time.Month(tt.day[1]), tt.day[2]-2, 0, 0, 0, 0, loc)
			end := time.Date(tt.day[0], time.Month(tt.day[1]), tt.day[2]+2, 12, 0, 0, 0, loc)
			fires, _ := firesBetween(e.sched, start, end, 100)
			var got []string
			for i, f := range fires {
				got = append(got, f.In(loc).Format("01-02 15:04 MST"))
				if !win.Contains(f) {
					t.Errorf("fire %s is outside the window", f.In(loc))
				}
				// The fire runs on time: cron's job at that instant. The
				// first fire has no LastFire; the rest follow it.
				l.fire(o, "nightly", f.Add(50*time.Millisecond), true)
				rs := l.runs()
				if len(rs) != i+1 || rs[i].Outcome != raftstore.RunStarted || rs[i].CycleID == "" || !rs[i].FireTime.Equal(f) {
					t.Fatalf("after the fire at %s: runs %+v", f.In(loc), rs)
				}
				l.finishActive()
				l.stage()
			}
			if strings.Join(got, ", ") != strings.Join(tt.want, ", ") {
				t.Errorf("fires:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(tt.want, ", "))
			}
			if n := len(l.c.WaitLeader().Cycles("web", 0)); n != len(tt.want) {
				t.Errorf("%d cycles, want one per fire: %d", n, len(tt.want))
			}
			for at, want := range tt.edges {
				ts, _ := time.Parse(time.RFC3339, at)
				if got := win.Contains(ts); got != want {
					t.Errorf("window at %s (%s): open %v, want %v", at, ts.In(loc).Format("15:04 MST"), got, want)
				}
			}
		})
	}
}

// TestMissedRunPolicy: what a new leader does with the fires no leader
// handled (onTime false), and what a refused on-time fire records.
func TestMissedRunPolicy(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC) // the last recorded fire
	hourly := schedule("hourly", "0 * * * *", "UTC")
	night := []config.Window{{Name: "w", Start: "09:00", End: "14:00", TimeZone: "UTC"}}
	type run struct{ outcome, reason string }
	tests := []struct {
		name    string
		windows []config.Window
		noLast  bool
		prepare func(l *schedLab)
		now     time.Time
		onTime  bool
		want    []run // the runs after t0's, oldest first
	}{
		{name: "a new schedule does not catch up", noLast: true, now: t0.Add(5 * time.Minute)},
		{name: "one missed, 5m late: runs", now: t0.Add(65 * time.Minute), want: []run{{"started", ""}}},
		{name: "one missed, 20m late: skipped", now: t0.Add(80 * time.Minute), want: []run{{"skipped", "later than max_delay 15m0s"}}},
		{name: "three missed: the newest runs", now: t0.Add(3*time.Hour + 10*time.Minute),
			want: []run{{"skipped", "missed: superseded by the fire at 2026-06-01 13:00:00 UTC"}, {"skipped", "missed: superseded"}, {"started", ""}}},
		{name: "windows, inside: runs however late", windows: night, now: t0.Add(3*time.Hour + 50*time.Minute),
			want: []run{{"skipped", "superseded"}, {"skipped", "superseded"}, {"started", ""}}},
		{name: "windows, outside: skipped", windows: night, now: t0.Add(4*time.Hour + 5*time.Minute),
			want: []run{{"skipped", "superseded"}, {"skipped", "superseded"}, {"skipped", "superseded"}, {"skipped", "missed: outside window (the next opens at 2026-06-02 09:00 UTC)"}}},
		{name: "on time but frozen", onTime: true, now: t0.Add(time.Hour),
			prepare: func(l *schedLab) {
				if err := l.c.WaitLeader().SetFreeze(context.Background(), raftstore.Freeze{Service: "web", Reason: "release freeze", By: "ops"}, true); err != nil {
					l.t.Fatal(err)
				}
			},
			want: []run{{"skipped", `service "web" is frozen by ops`}}},
		{name: "on time, nothing staged", onTime: true, now: t0.Add(time.Hour),
			prepare: func(l *schedLab) {
				if err := l.c.WaitLeader().ClearStage(context.Background(), "web"); err != nil {
					l.t.Fatal(err)
				}
			},
			want: []run{{"skipped", "nothing is staged"}}},
		{name: "on time, outside the window", onTime: true, windows: night, now: t0.Add(5 * time.Hour),
			want: []run{{"skipped", "superseded"}, {"skipped", "superseded"}, {"skipped", "superseded"}, {"skipped", "superseded"}, {"skipped", "outside its deploy windows"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSchedLab(t, Spec{Schedules: []config.Schedule{hourly}, Windows: tt.windows})
			o := l.orch()
			if !tt.noLast {
				if _, err := l.c.WaitLeader().RecordScheduleRun(context.Background(), raftstore.ScheduleRun{RunID: raftstore.RunID("web", "hourly", t0),
					Service: "web", Schedule: "hourly", FireTime: t0, Outcome: raftstore.RunSkipped, Reason: "earlier"}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.prepare != nil {
				tt.prepare(l)
			}
			l.fire(o, "hourly", tt.now, tt.onTime)
			rs := l.runs()
			if !tt.noLast {
				rs = rs[1:]
			}
			if len(rs) != len(tt.want) {
				t.Fatalf("runs %+v, want %d", rs, len(tt.want))
			}
			for i, w := range tt.want {
				if rs[i].Outcome != w.outcome || !strings.Contains(rs[i].Reason, w.reason) {
					t.Errorf("run %d (%s): %s %q, want %s %q", i, rs[i].FireTime, rs[i].Outcome, rs[i].Reason, w.outcome, w.reason)
				}
				if !rs[i].FireTime.Equal(t0.Add(time.Duration(i+1) * time.Hour)) {
					t.Errorf("run %d fired at %s, want %s", i, rs[i].FireTime, t0.Add(time.Duration(i+1)*time.Hour))
				}
			}
			wantCycles := 0
			if n := len(tt.want); n > 0 && tt.want[n-1].outcome == "started" {
				wantCycles = 1
				c, _ := l.c.WaitLeader().LastCycle("web")
				if c.Trigger != "schedule:hourly" || c.By != "scheduler" || c.Forced || c.RequestID != rs[n-1].RunID || c.ID != rs[n-1].CycleID {
					t.Errorf("cycle %+v for run %+v", c, rs[n-1])
				}
				if _, staged := l.c.WaitLeader().Staged("web"); staged {
					t.Error("the stage was not cleared by the started run")
				}
			}
			if n := len(l.c.WaitLeader().Cycles("web", 0)); n != wantCycles {
				t.Errorf("%d cycles, want %d", n, wantCycles)
			}
			if skips := auditActions(l.c.WaitLeader(), "schedule.skip"); skips != len(tt.want)-wantCycles {
				t.Errorf("%d skips audited, want %d", skips, len(tt.want)-wantCycles)
			}
		})
	}
}

func auditActions(s *raftstore.Store, action string) int {
	n := 0
	for _, e := range s.Audit(0, 0) {
		if e.Action == action && e.TokenName == "scheduler" {
			n++
		}
	}
	return n
}

// TestScheduleExactlyOnceAcrossLeaders: a fire claimed by one leader is
// never started twice, whether that leader died right after the claim,
// right after creating the cycle, or two schedulers race on it.
func TestScheduleExactlyOnceAcrossLeaders(t *testing.T) {
	fire := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	claim := raftstore.ScheduleRun{RunID: raftstore.RunID("web", "hourly", fire), Service: "web", Schedule: "hourly",
		Action: config.ActionDeployStaged, FireTime: fire, Outcome: raftstore.RunStarted, Digest: testDigestA, Version: "1.0"}
	tests := []struct {
		name  string
		first func(l *schedLab, o *Orchestrator) // what the first leader got done
	}{
		{name: "died after the claim", first: func(l *schedLab, o *Orchestrator) {
			if _, err := o.cfg.Store.RecordScheduleRun(context.Background(), claim); err != nil {
				l.t.Fatal(err)
			}
		}},
		{name: "died after creating the cycle", first: func(l *schedLab, o *Orchestrator) {
			if _, err := o.cfg.Store.RecordScheduleRun(context.Background(), claim); err != nil {
				l.t.Fatal(err)
			}
			if _, err := o.Start(context.Background(), StartRequest{StartRequest: cycle.StartRequest{Service: "web", Digest: testDigestA, RequestID: claim.RunID},
				By: "scheduler", Trigger: "schedule:hourly"}); err != nil {
				l.t.Fatal(err)
			}
		}},
		{name: "finished the run", first: func(l *schedLab, o *Orchestrator) {
			l.fire(o, "hourly", fire.Add(time.Second), true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSchedLab(t, Spec{Schedules: []config.Schedule{schedule("hourly", "0 * * * *", "UTC")}})
			l.clock.Set(fire.Add(time.Second))
			old := l.c.WaitLeader()
			tt.first(l, l.orch())
			l.c.WaitReplicated()
			l.c.Kill(old)
			l.c.WaitFor("a new leader", func() bool { s := l.c.Leader(); return s != nil && s != old })
			o := l.orch() // the new leader's
			// The new leader catches up, then cron fires the same time again
			// (a clock a little behind), then the retry tick runs.
			l.fire(o, "hourly", fire.Add(3*time.Second), false)
			l.fire(o, "hourly", fire.Add(4*time.Second), true)
			if err := o.retryRuns(context.Background(), l.entry(o, "hourly")); err != nil {
				t.Fatal(err)
			}
			cs := l.c.WaitLeader().Cycles("web", 0)
			rs := l.runs()
			if len(cs) != 1 || len(rs) != 1 || rs[0].CycleID != cs[0].ID || cs[0].RequestID != claim.RunID {
				t.Fatalf("cycles %+v\nruns %+v\nwant one cycle, recorded in the one run", cs, rs)
			}
		})
	}

	t.Run("two schedulers race", func(t *testing.T) {
		l := newSchedLab(t, Spec{Schedules: []config.Schedule{schedule("hourly", "0 * * * *", "UTC")}})
		l.clock.Set(fire.Add(time.Second))
		a, b := l.orch(), l.orch()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, o := range []*Orchestrator{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = o.fireSchedule(context.Background(), l.entry(o, "hourly"), fire.Add(time.Second), true)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		cs := l.c.WaitLeader().Cycles("web", 0)
		rs := l.runs()
		if len(cs) != 1 || len(rs) != 1 || rs[0].CycleID != cs[0].ID {
			t.Fatalf("cycles %+v\nruns %+v\nwant one cycle, recorded in the one run", cs, rs)
		}
	})
}

func TestPrevFireAndAnchoredEvery(t *testing.T) {
	now := time.Date(2026, 6, 1, 10, 7, 30, 0, time.UTC)
	tests := []struct {
		name string
		spec string
		want time.Time
	}{
		{name: "hourly", spec: "0 * * * *", want: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)},
		{name: "seconds", spec: "*/20 * * * * *", want: time.Date(2026, 6, 1, 10, 7, 20, 0, time.UTC)},
		{name: "exactly now", spec: "30 7 10 * * *", want: now},
		{name: "yearly", spec: "@yearly", want: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "every 6h is anchored", spec: "@every 6h", want: time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseSchedule(schedule("x", tt.spec, "UTC"))
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := prevFire(s, now); !ok || !got.Equal(tt.want) {
				t.Errorf("prevFire = %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
}

// TestRunSchedulesStartsAndStops: the cron runs schedules with the real
// clock while the term lasts, and runSchedules returns once ctx ends.
func TestRunSchedulesStartsAndStops(t *testing.T) {
	l := newSchedLab(t, Spec{Schedules: []config.Schedule{schedule("often", "* * * * * *", "UTC")}})
	o := New(Config{Store: l.c.WaitLeader(), Fleet: oneAgentFleet{},
		Services: func() map[string]Spec { return map[string]Spec{"web": l.spec} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.runSchedules(ctx)
	}()
	l.c.WaitFor("a scheduled cycle", func() bool {
		rs := l.c.WaitLeader().ScheduleRuns("web", "often", 0)
		return len(rs) > 0 && rs[len(rs)-1].CycleID != ""
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("runSchedules did not return after its ctx ended")
	}
	if n := len(l.c.WaitLeader().Cycles("web", 0)); n != 1 {
		t.Errorf("%d cycles, want 1 (later fires find the cycle active or nothing staged)", n)
	}
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/raftstore"
)

// Scheduled runs, in short (docs/architecture.md, "Schedules and windows"):
//
//   - A fire time is computed from the cron spec, never read from the
//     clock, so every leader computes the same one and the same run id,
//     "<service>/<schedule>/<unix seconds>".
//   - Before starting anything the leader commits the run, "started", with
//     the package it will deploy. Raft keeps the first record of a run id,
//     so that commit is the claim: a second leader gets the first record
//     back and never starts a second cycle.
//   - The cycle's RequestID is the run id, and Start is idempotent on it: a
//     leader that finds a started run without a cycle (its predecessor died
//     in between) completes it by calling Start again.
//   - A refused fire (freeze, breaker, window, lock, nothing to deploy) is a
//     skip record with the reason, also written to the audit trail.

// schedulerName is the By of scheduled cycles and the audit entries.
const schedulerName = "scheduler"

// missedKeep is how many missed fires of one schedule are recorded one by
// one; older ones are counted in the oldest record's reason.
const missedKeep = 20

// missedLookback bounds how far back missed fires are looked for.
const missedLookback = 35 * 24 * time.Hour

// scheduleEntry is one schedule of one service with its parsed spec.
type scheduleEntry struct {
	spec  Spec
	cfg   config.Schedule
	sched cron.Schedule
}

func (e scheduleEntry) key() string { return e.spec.Name + "/" + e.cfg.Name }

// anchored replaces robfig's "@every D", which counts from whenever it is
// asked, with fires at whole multiples of D (since year 1, UTC), so every
// leader computes the same fire times.
type anchored struct{ every time.Duration }

// Next implements cron.Schedule.
func (a anchored) Next(t time.Time) time.Time { return t.Truncate(a.every).Add(a.every) }

// parseSchedule parses a schedule with config's one cron parser.
func parseSchedule(s config.Schedule) (cron.Schedule, error) {
	sched, err := s.CronSchedule()
	if err != nil {
		return nil, err
	}
	if cd, ok := sched.(cron.ConstantDelaySchedule); ok {
		return anchored{every: cd.Delay}, nil
	}
	return sched, nil
}

// scheduleEntries returns every schedule of every defined service, by
// service and name. A spec that does not parse (config check refuses it)
// is logged and left out.
func (o *Orchestrator) scheduleEntries() []scheduleEntry {
	specs := o.cfg.Services()
	var out []scheduleEntry
	for _, name := range sortedKeys(specs) {
		spec := specs[name]
		for _, sc := range spec.Schedules {
			sched, err := parseSchedule(sc)
			if err != nil {
				o.log.Error("schedule left out", zap.String("service", name), zap.String("schedule", sc.Name), zap.Error(err))
				continue
			}
			out = append(out, scheduleEntry{spec: spec, cfg: sc, sched: sched})
		}
	}
	return out
}

// prevFire returns the newest fire time of s at or before now.
func prevFire(s cron.Schedule, now time.Time) (time.Time, bool) {
	for d := time.Second; d <= 2*366*24*time.Hour; d *= 4 {
		t := s.Next(now.Add(-d))
		if t.IsZero() || t.After(now) {
			continue
		}
		for {
			n := s.Next(t)
			if n.IsZero() || n.After(now) {
				return t, true
			}
			t = n
		}
	}
	return time.Time{}, false
}

// firesBetween returns the fire times of s in (after, now], oldest first:
// at most keep of them, the newest, and how many there were in all
// (looking back at most missedLookback).
func firesBetween(s cron.Schedule, after, now time.Time, keep int) ([]time.Time, int) {
	if floor := now.Add(-missedLookback); after.Before(floor) {
		after = floor
	}
	var out []time.Time
	n := 0
	for t := s.Next(after); !t.IsZero() && !t.After(now); t = s.Next(t) {
		n++
		out = append(out, t)
		if len(out) > keep {
			out = out[1:]
		}
	}
	return out, n
}

// fireSchedule handles the fires of schedule e up to now. onTime says that
// cron fired it, so its newest fire is on time; otherwise (a new leader
// catching up) every fire since the last recorded one was missed and the
// missed-run policy decides. A schedule with no recorded fire does not
// catch up on fires from before it existed.
func (o *Orchestrator) fireSchedule(ctx context.Context, e scheduleEntry, now time.Time, onTime bool) error {
	unlock := o.lockSchedule(e.key())
	defer unlock()
	if err := o.completeRuns(ctx, e); err != nil {
		return err
	}
	var fires []time.Time
	total := 0
	if last, ok := o.cfg.Store.LastFire(e.spec.Name, e.cfg.Name); ok {
		fires, total = firesBetween(e.sched, last, now, missedKeep+1)
	} else if onTime {
		if f, ok := prevFire(e.sched, now); ok {
			fires, total = []time.Time{f}, 1
		}
	}
	if len(fires) == 0 {
		return nil
	}
	newest := fires[len(fires)-1]
	for i, f := range fires[:len(fires)-1] {
		reason := fmt.Sprintf("missed: superseded by the fire at %s", e.local(newest))
		if i == 0 && total > len(fires) {
			reason += fmt.Sprintf(" (%d earlier fires were missed too)", total-len(fires))
		}
		if err := o.skip(ctx, e, f, reason); err != nil {
			return err
		}
	}
	if !onTime {
		if reason := o.missedPolicy(e, newest, now); reason != "" {
			return o.skip(ctx, e, newest, reason)
		}
	}
	return o.fire(ctx, e, newest)
}

// missedPolicy says why a missed fire must not run now, or "" when it may:
// with windows, it runs only inside one; without, only when it is less
// than the schedule's max_delay late.
func (o *Orchestrator) missedPolicy(e scheduleEntry, fire, now time.Time) string {
	if len(e.spec.Windows) > 0 {
		if ok, next := inWindows(e.spec.Windows, now); !ok {
			return fmt.Sprintf("missed: outside window (the next opens at %s)", next)
		}
		return ""
	}
	if late, limit := now.Sub(fire), e.cfg.MaxDelayDuration(); late >= limit {
		return fmt.Sprintf("missed: %s late, later than max_delay %s", late.Round(time.Second), limit)
	}
	return ""
}

// fire runs one fire time: it works out what to deploy, asks admit, claims
// the run in Raft and starts the cycle. Every refusal is a skip record.
func (o *Orchestrator) fire(ctx context.Context, e scheduleEntry, at time.Time) error {
	svc := e.spec.Name
	kind, rel, why := o.scheduledPackage(e)
	if why == "" {
		var r *Refusal
		if err := o.admit(e.spec, kind, false, ""); errors.As(err, &r) {
			why = r.Reason
		}
	}
	if why != "" {
		return o.skip(ctx, e, at, why)
	}
	run, err := o.cfg.Store.RecordScheduleRun(ctx, raftstore.ScheduleRun{RunID: raftstore.RunID(svc, e.cfg.Name, at), Service: svc,
		Schedule: e.cfg.Name, Action: e.cfg.Action, FireTime: at, Outcome: raftstore.RunStarted, Digest: rel.Digest, Version: rel.Version})
	if err != nil {
		return fmt.Errorf("schedule %s: claim: %w", e.key(), err)
	}
	return o.completeRun(ctx, e, run)
}

// scheduledPackage returns the kind of cycle and the package a fire of e
// starts, or why it starts nothing.
func (o *Orchestrator) scheduledPackage(e scheduleEntry) (cycle.Kind, cycle.Release, string) {
	svc := e.spec.Name
	if e.cfg.Action == config.ActionRecycle {
		st, ok := o.cfg.Store.Service(svc)
		live := poolRelease(st, st.Live)
		switch {
		case !ok || live.IsZero():
			return cycle.KindRecycle, live, fmt.Sprintf("nothing to recycle: service %q has no live version yet", svc)
		case poolRelease(st, other(st.Live)) == live:
			return cycle.KindRecycle, live, fmt.Sprintf("the standby pool %s already runs the live version %s", other(st.Live), live.Version)
		}
		return cycle.KindRecycle, live, ""
	}
	g, ok := o.cfg.Store.Staged(svc)
	if !ok {
		return cycle.KindDeploy, cycle.Release{}, fmt.Sprintf("nothing is staged for %q; stage a package with `cyclerctl deploy --at-window`", svc)
	}
	return cycle.KindDeploy, cycle.Release{Version: g.Version, Digest: g.Digest}, ""
}

// completeRuns re-drives the started runs of e that have no cycle yet: a
// leader died between the claim and recording the cycle.
func (o *Orchestrator) completeRuns(ctx context.Context, e scheduleEntry) error {
	for _, r := range o.cfg.Store.ScheduleRuns(e.spec.Name, e.cfg.Name, 0) {
		if r.Completed() {
			continue
		}
		if err := o.completeRun(ctx, e, r); err != nil {
			return err
		}
	}
	return nil
}

// completeRun makes sure claimed run r has its cycle: the one an earlier
// attempt created (found by its RequestID, the run id), or a new one from
// Start, which is idempotent on the RequestID too. A refusal completes the
// run as a skip.
func (o *Orchestrator) completeRun(ctx context.Context, e scheduleEntry, r raftstore.ScheduleRun) error {
	if r.Completed() {
		return nil // recorded already, by this leader or an earlier one
	}
	log := o.log.With(zap.String("service", r.Service), zap.String("schedule", r.Schedule), zap.String("run_id", r.RunID))
	c, found := o.cycleOfRun(r)
	if !found {
		kind := cycle.KindDeploy
		if r.Action == config.ActionRecycle {
			kind = cycle.KindRecycle
		}
		var err error
		c, err = o.Start(ctx, StartRequest{StartRequest: cycle.StartRequest{Service: r.Service, Digest: r.Digest, RequestID: r.RunID},
			By: schedulerName, Trigger: "schedule:" + r.Schedule, Kind: kind})
		var ref *Refusal
		reason := ""
		switch {
		case errors.As(err, &ref):
			reason = ref.Reason
		case errors.Is(err, ErrUnknownPackage), errors.Is(err, ErrUnknownService):
			reason = err.Error()
		case err != nil:
			return fmt.Errorf("schedule %s: start: %w", e.key(), err)
		}
		if reason != "" {
			if c2, ok := o.cycleOfRun(r); ok {
				// Refused by the lock of this run's own cycle, which a
				// racing attempt created meanwhile: record that cycle.
				c, found = c2, true
				reason = ""
			}
		}
		if reason != "" {
			r.Outcome, r.Reason = raftstore.RunSkipped, reason
			if _, err := o.cfg.Store.CompleteScheduleRun(ctx, r); err != nil {
				return fmt.Errorf("schedule %s: record the skip: %w", e.key(), err)
			}
			log.Info("scheduled run skipped", zap.String("reason", reason))
			o.auditScheduler(ctx, "schedule.skip", r.Service, fmt.Sprintf("schedule %s, fire %s: %s", r.Schedule, e.local(r.FireTime), reason))
			return nil
		}
	}
	r.CycleID = c.ID
	if _, err := o.cfg.Store.CompleteScheduleRun(ctx, r); err != nil {
		return fmt.Errorf("schedule %s: record cycle %s: %w", e.key(), c.ID, err)
	}
	log.Info("scheduled cycle started", zap.String("cycle_id", c.ID), zap.String("version", c.Package.Version))
	if !found {
		o.auditScheduler(ctx, "cycle.start", c.ID, fmt.Sprintf("%s %s (%s) to pool %s, trigger %s, fire %s",
			c.Kind, c.Package.Version, c.Package.Digest, c.Target, c.Trigger, e.local(r.FireTime)))
	}
	return nil
}

// cycleOfRun finds the cycle a claimed run created, by its RequestID.
func (o *Orchestrator) cycleOfRun(r raftstore.ScheduleRun) (cycle.Cycle, bool) {
	for _, c := range o.cfg.Store.Cycles(r.Service, 0) {
		if c.RequestID == r.RunID {
			return c, true
		}
	}
	return cycle.Cycle{}, false
}

// skip records fire at of e as skipped and audits it. A fire recorded
// already (by another leader) keeps its record.
func (o *Orchestrator) skip(ctx context.Context, e scheduleEntry, at time.Time, reason string) error {
	svc := e.spec.Name
	run, err := o.cfg.Store.RecordScheduleRun(ctx, raftstore.ScheduleRun{RunID: raftstore.RunID(svc, e.cfg.Name, at), Service: svc,
		Schedule: e.cfg.Name, Action: e.cfg.Action, FireTime: at, Outcome: raftstore.RunSkipped, Reason: reason})
	if err != nil {
		return fmt.Errorf("schedule %s: record a skip: %w", e.key(), err)
	}
	if run.Outcome != raftstore.RunSkipped || run.Reason != reason {
		return o.completeRun(ctx, e, run) // another leader claimed it first
	}
	o.log.Info("scheduled run skipped", zap.String("service", svc), zap.String("schedule", e.cfg.Name),
		zap.String("run_id", run.RunID), zap.String("reason", reason))
	o.auditScheduler(ctx, "schedule.skip", svc, fmt.Sprintf("schedule %s, fire %s: %s", e.cfg.Name, e.local(at), reason))
	return nil
}

// auditScheduler appends an audit entry by the scheduler. The change is
// committed already, so a failure is logged, not returned.
func (o *Orchestrator) auditScheduler(ctx context.Context, action, target, detail string) {
	_, err := o.cfg.Store.AppendAudit(ctx, raftstore.AuditEntry{TokenName: schedulerName, Action: action, Target: target, Detail: detail})
	if err != nil && ctx.Err() == nil {
		o.log.Warn("audit append", zap.String("action", action), zap.String("target", target), zap.Error(err))
	}
}

// local formats t in the schedule's zone.
func (e scheduleEntry) local(t time.Time) string {
	return t.In(e.cfg.Location()).Format("2006-01-02 15:04:05 MST")
}

// lockSchedule serialises the handling of one schedule on this server, so
// cron's job and a catch-up never work on the same fire at once.
func (o *Orchestrator) lockSchedule(key string) (unlock func()) {
	o.schedMu.Lock()
	if o.schedLocks == nil {
		o.schedLocks = map[string]chan struct{}{}
	}
	l, ok := o.schedLocks[key]
	if !ok {
		l = make(chan struct{}, 1)
		o.schedLocks[key] = l
	}
	o.schedMu.Unlock()
	l <- struct{}{}
	return func() { <-l }
}

// nextFires returns the next n fire times of e after t, in its zone.
func (e scheduleEntry) nextFires(t time.Time, n int) []time.Time {
	var out []time.Time
	for range n {
		t = e.sched.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t.In(e.cfg.Location()))
	}
	return out
}

// sortRuns orders runs newest fire first.
func sortRuns(rs []raftstore.ScheduleRun) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].FireTime.After(rs[j].FireTime) })
}

package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ScheduleRunRetain is how many schedule runs of each service the replicated
// state keeps, newest last. A constant, like CycleRetain, because every
// replica must trim identically.
const ScheduleRunRetain = 100

// Outcomes of a schedule run.
const (
	// RunStarted: the run was claimed to start a cycle. While CycleID is
	// empty the cycle may not exist yet; the leader completes the run by
	// starting the cycle with RequestID = RunID, which is idempotent.
	RunStarted = "started"
	// RunSkipped: the fire started nothing; Reason says why.
	RunSkipped = "skipped"
)

// ScheduleRun is the record of one fire time of one schedule. Its RunID is
// unique, and Apply keeps the first record of a RunID: committing the
// record is how a leader claims the fire time, so two leaders never run it
// both.
type ScheduleRun struct {
	// RunID is "<service>/<schedule>/<fire time in unix seconds>"; see RunID.
	RunID    string `json:"run_id"`
	Service  string `json:"service"`
	Schedule string `json:"schedule"`
	// Action is the schedule's action when it fired (deploy-staged or recycle).
	Action string `json:"action"`
	// FireTime is the time the schedule fired for, in UTC; it is computed
	// from the cron spec, so every leader computes the same one.
	FireTime time.Time `json:"fire_time"`
	// Outcome is RunStarted or RunSkipped.
	Outcome string `json:"outcome"`
	// Reason says why a run was skipped.
	Reason string `json:"reason,omitempty"`
	// Digest and Version are the package a started run deploys.
	Digest  string `json:"digest,omitempty"`
	Version string `json:"version,omitempty"`
	// CycleID is the cycle a started run created, once it exists.
	CycleID string `json:"cycle_id,omitempty"`
	// At is stamped by the leader when it commits the record (and again
	// when it completes a started run).
	At time.Time `json:"at"`
}

// RunID returns the run id of a schedule's fire time.
func RunID(service, schedule string, fire time.Time) string {
	return fmt.Sprintf("%s/%s/%d", service, schedule, fire.Unix())
}

// scheduleKey is the key of a schedule in State.LastFires.
func scheduleKey(service, schedule string) string { return service + "/" + schedule }

// Completed reports whether the run needs nothing more: it was skipped, or
// its cycle exists.
func (r ScheduleRun) Completed() bool { return r.Outcome == RunSkipped || r.CycleID != "" }

// validate checks a run's own fields. It is pure, so Apply may call it.
func (r ScheduleRun) validate() error {
	var errs []error
	if r.Service == "" {
		errs = append(errs, errors.New("service: must be set"))
	}
	if r.Schedule == "" || strings.Contains(r.Schedule, "/") {
		errs = append(errs, fmt.Errorf("schedule: %q must be set and hold no '/'", r.Schedule))
	}
	if r.FireTime.IsZero() {
		errs = append(errs, errors.New("fire_time: must be set"))
	}
	if want := RunID(r.Service, r.Schedule, r.FireTime); r.RunID != want {
		errs = append(errs, fmt.Errorf("run_id: %q is not %q", r.RunID, want))
	}
	switch r.Outcome {
	case RunStarted:
	case RunSkipped:
		if r.Reason == "" {
			errs = append(errs, errors.New("reason: a skipped run must say why"))
		}
	default:
		errs = append(errs, fmt.Errorf("outcome: %q is not %q or %q", r.Outcome, RunStarted, RunSkipped))
	}
	return errors.Join(errs...)
}

// Stage is a package staged with `cyclerctl deploy --at-window`: the
// service's deploy-staged schedules deploy it at their next fire time.
type Stage struct {
	Service string `json:"service"`
	Digest  string `json:"digest"`
	Version string `json:"version"`
	// By is the token name that staged it.
	By string `json:"by"`
	// At is stamped by the leader.
	At time.Time `json:"at"`
}

// scheduleRunBody records a run. With Complete it completes a started run
// that has no cycle yet: with its cycle id, or as skipped.
type scheduleRunBody struct {
	Run      ScheduleRun `json:"run"`
	Complete bool        `json:"complete,omitempty"`
}

// applyScheduleRun records a schedule run. A RunID is recorded once: a
// second record of it returns the stored one unchanged, which is the
// exactly-once claim. The only change allowed afterwards is completing a
// started run without a cycle: setting its cycle id (which also clears the
// service's stage when the run deploys the staged package) or turning it
// into a skip. A new record for a fire time at or before the schedule's
// last recorded fire, whose record has been trimmed, is refused, so a
// trimmed run can never be claimed again.
func applyScheduleRun(st *State, body []byte) any {
	var cmd scheduleRunBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(ScheduleRunCommand, err)
	}
	r := cmd.Run
	if err := r.validate(); err != nil {
		return invalid(ScheduleRunCommand, err)
	}
	list := st.ScheduleRuns[r.Service]
	for i := len(list) - 1; i >= 0; i-- {
		cur := list[i]
		if cur.RunID != r.RunID {
			continue
		}
		if !cmd.Complete || cur.Completed() {
			return cur
		}
		if r.Outcome == RunStarted && r.CycleID == "" {
			return invalid(ScheduleRunCommand, errors.New("completing a started run needs its cycle id"))
		}
		cur.Outcome, cur.Reason, cur.CycleID, cur.At = r.Outcome, r.Reason, r.CycleID, r.At
		list[i] = cur
		if cur.CycleID != "" && cur.Digest != "" {
			if sg, ok := st.Staged[cur.Service]; ok && sg.Digest == cur.Digest {
				delete(st.Staged, cur.Service) // the staged package is on its way
			}
		}
		return cur
	}
	if cmd.Complete {
		return invalid(ScheduleRunCommand, fmt.Errorf("run %s was never claimed", r.RunID))
	}
	key := scheduleKey(r.Service, r.Schedule)
	if last, ok := st.LastFires[key]; ok && !r.FireTime.After(last) {
		return invalid(ScheduleRunCommand, fmt.Errorf("run %s: fire time %s is not after the last recorded fire %s of the schedule, whose record is gone",
			r.RunID, r.FireTime.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339)))
	}
	st.LastFires[key] = r.FireTime
	list = append(list, r)
	if len(list) > ScheduleRunRetain {
		list = list[len(list)-ScheduleRunRetain:]
	}
	st.ScheduleRuns[r.Service] = list
	return r
}

// stageBody stages a package (Clear false) or drops the stage of a service.
type stageBody struct {
	Stage
	Clear bool `json:"clear,omitempty"`
}

// applyStage stages a package for a service, replacing an earlier stage,
// or clears the stage.
func applyStage(st *State, body []byte) any {
	var cmd stageBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(StageCommand, err)
	}
	if cmd.Service == "" {
		return invalid(StageCommand, errors.New("service: must be set"))
	}
	if cmd.Clear {
		delete(st.Staged, cmd.Service)
		return cmd.Stage
	}
	if !digestRE.MatchString(cmd.Digest) {
		return invalid(StageCommand, fmt.Errorf("digest: %q is not \"sha256:\" and 64 lower-case hex digits", cmd.Digest))
	}
	if _, ok := st.Packages[cmd.Digest]; !ok {
		return invalid(StageCommand, fmt.Errorf("package %s is not in the package store", cmd.Digest))
	}
	st.Staged[cmd.Service] = cmd.Stage
	return cmd.Stage
}

// RecordScheduleRun commits r, stamping At, and returns the stored record
// of r.RunID: r itself when it is the first, else the record committed
// first, unchanged. Compare the answer's Outcome, CycleID and At to learn
// what happened.
func (s *Store) RecordScheduleRun(ctx context.Context, r ScheduleRun) (ScheduleRun, error) {
	return s.scheduleRun(ctx, "record schedule run", r, false)
}

// CompleteScheduleRun completes a started run that has no cycle yet: with
// the cycle it created (r.Outcome RunStarted, r.CycleID set), or as a skip
// (r.Outcome RunSkipped, r.Reason set). A run completed already is
// returned unchanged.
func (s *Store) CompleteScheduleRun(ctx context.Context, r ScheduleRun) (ScheduleRun, error) {
	return s.scheduleRun(ctx, "complete schedule run", r, true)
}

func (s *Store) scheduleRun(ctx context.Context, op string, r ScheduleRun, complete bool) (ScheduleRun, error) {
	r.FireTime = r.FireTime.UTC().Round(0)
	if err := r.validate(); err != nil {
		return ScheduleRun{}, fmt.Errorf("raftstore: %s: %w", op, invalid(ScheduleRunCommand, err))
	}
	r.At = s.now()
	resp, err := s.apply(ctx, op, ScheduleRunCommand, scheduleRunBody{Run: r, Complete: complete})
	if err != nil {
		return ScheduleRun{}, err
	}
	return resp.(ScheduleRun), nil
}

// SetStage stages a package for g.Service, replacing an earlier stage. g.At
// is stamped here. The package must be in the store.
func (s *Store) SetStage(ctx context.Context, g Stage) (Stage, error) {
	if g.Service == "" {
		return Stage{}, fmt.Errorf("raftstore: set stage: %w", invalid(StageCommand, errors.New("service: must be set")))
	}
	g.At = s.now()
	resp, err := s.apply(ctx, "set stage", StageCommand, stageBody{Stage: g})
	if err != nil {
		return Stage{}, err
	}
	return resp.(Stage), nil
}

// ClearStage drops the staged package of service, if any.
func (s *Store) ClearStage(ctx context.Context, service string) error {
	if service == "" {
		return fmt.Errorf("raftstore: clear stage: %w", invalid(StageCommand, errors.New("service: must be set")))
	}
	_, err := s.apply(ctx, "clear stage", StageCommand, stageBody{Stage: Stage{Service: service}, Clear: true})
	return err
}

// Staged returns the package staged for service.
func (s *Store) Staged(service string) (g Stage, ok bool) {
	s.fsm.read(func(st *State) { g, ok = st.Staged[service] })
	return g, ok
}

// ScheduleRuns returns up to limit runs of service's schedule (every
// schedule when empty), newest first. limit <= 0 means all that are kept.
func (s *Store) ScheduleRuns(service, schedule string, limit int) []ScheduleRun {
	var out []ScheduleRun
	s.fsm.read(func(st *State) {
		list := st.ScheduleRuns[service]
		for i := len(list) - 1; i >= 0; i-- {
			if schedule != "" && list[i].Schedule != schedule {
				continue
			}
			if limit > 0 && len(out) == limit {
				break
			}
			out = append(out, list[i])
		}
	})
	return out
}

// ScheduleRun returns the record of runID.
func (s *Store) ScheduleRun(service, runID string) (r ScheduleRun, ok bool) {
	s.fsm.read(func(st *State) {
		list := st.ScheduleRuns[service]
		for i := len(list) - 1; i >= 0; i-- {
			if list[i].RunID == runID {
				r, ok = list[i], true
				return
			}
		}
	})
	return r, ok
}

// LastFire returns the newest fire time recorded for a schedule.
func (s *Store) LastFire(service, schedule string) (t time.Time, ok bool) {
	s.fsm.read(func(st *State) { t, ok = st.LastFires[scheduleKey(service, schedule)] })
	return t, ok
}

// checkSchedules validates the schedule fields of a decoded State.
func (s *State) checkSchedules() []error {
	if s.ScheduleRuns == nil {
		s.ScheduleRuns = map[string][]ScheduleRun{}
	}
	if s.LastFires == nil {
		s.LastFires = map[string]time.Time{}
	}
	if s.Staged == nil {
		s.Staged = map[string]Stage{}
	}
	var errs []error
	for svc, runs := range s.ScheduleRuns {
		for i, r := range runs {
			if r.Service != svc {
				errs = append(errs, fmt.Errorf("schedule_runs[%q][%d]: service field is %q", svc, i, r.Service))
			}
			if err := r.validate(); err != nil {
				errs = append(errs, fmt.Errorf("schedule_runs[%q][%d]: %w", svc, i, err))
			}
		}
	}
	for k, v := range s.Staged {
		if k != v.Service {
			errs = append(errs, fmt.Errorf("staged[%q]: service field is %q", k, v.Service))
		}
	}
	return errs
}

// cloneSchedules copies the schedule fields of s into c.
func (s *State) cloneSchedules(c *State) {
	c.ScheduleRuns = make(map[string][]ScheduleRun, len(s.ScheduleRuns))
	for k, v := range s.ScheduleRuns {
		c.ScheduleRuns[k] = append([]ScheduleRun(nil), v...) // no reference fields
	}
	c.LastFires = make(map[string]time.Time, len(s.LastFires))
	for k, v := range s.LastFires {
		c.LastFires[k] = v
	}
	c.Staged = make(map[string]Stage, len(s.Staged))
	for k, v := range s.Staged {
		c.Staged[k] = v
	}
}

// stagedRefs adds the staged packages to a reference map (see packageRefs).
func stagedRefs(st *State, refs map[string][]string) {
	svcs := make([]string, 0, len(st.Staged))
	for n := range st.Staged {
		svcs = append(svcs, n)
	}
	sort.Strings(svcs)
	for _, n := range svcs {
		d := st.Staged[n].Digest
		refs[d] = append(refs[d], fmt.Sprintf("package staged for the next deploy window of service %s", n))
	}
}

package orchestrator

import (
	"context"
	"fmt"
	"time"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/raftstore"
)

// NextFire is the next fire time of one schedule.
type NextFire struct {
	Schedule string `json:"schedule"`
	// At is in the schedule's zone; Local is At written out with the zone's
	// abbreviation, for people.
	At    time.Time `json:"at"`
	Local string    `json:"local"`
}

// StageResult is the answer to a staging (POST /v1/cycles with at_window).
type StageResult struct {
	Staged  bool   `json:"staged"`
	Service string `json:"service"`
	Digest  string `json:"digest"`
	Version string `json:"version"`
	// Next lists the next fire of each deploy-staged schedule of the service.
	Next []NextFire `json:"next"`
}

// Stage stages a package for the service's deploy-staged schedules, which
// deploy it at their next fire (inside the windows). It must run on the
// leader. The package and service are checked as Start checks them; a
// service without a deploy-staged schedule is refused, since nothing would
// ever deploy the package.
func (o *Orchestrator) Stage(ctx context.Context, req cycle.StartRequest, by string) (StageResult, error) {
	pkg, ok := o.cfg.Store.Package(req.Digest)
	if !ok {
		return StageResult{}, fmt.Errorf("%w: no package %s was pushed; push it with `cyclerctl package push FILE` or pass the file to deploy", ErrUnknownPackage, req.Digest)
	}
	svc := req.Service
	if svc == "" {
		svc = pkg.Name
	}
	spec, ok := o.spec(svc)
	if !ok {
		return StageResult{}, fmt.Errorf("%w: %q is not defined in the servers' config (service blocks); pass --service", ErrUnknownService, svc)
	}
	if pkg.Name != svc {
		return StageResult{}, refuse("package %s is named %q in its manifest, not %q; stage it for its own service", req.Digest, pkg.Name, svc)
	}
	var next []NextFire
	now := o.now()
	for _, e := range o.entriesOf(spec) {
		if e.cfg.Action != config.ActionDeployStaged {
			continue
		}
		for _, t := range e.nextFires(now, 1) {
			next = append(next, NextFire{Schedule: e.cfg.Name, At: t, Local: e.local(t)})
		}
	}
	if len(next) == 0 {
		return StageResult{}, refuse("service %q has no schedule with action \"deploy-staged\", so nothing would deploy a staged package; "+
			"add one to its service block, or deploy now without --at-window", svc)
	}
	if _, err := o.cfg.Store.SetStage(ctx, raftstore.Stage{Service: svc, Digest: pkg.Digest, Version: pkg.Version, By: by}); err != nil {
		return StageResult{}, err
	}
	return StageResult{Staged: true, Service: svc, Digest: pkg.Digest, Version: pkg.Version, Next: next}, nil
}

// entriesOf returns the parsed schedules of one service.
func (o *Orchestrator) entriesOf(spec Spec) []scheduleEntry {
	var out []scheduleEntry
	for _, sc := range spec.Schedules {
		if sched, err := parseSchedule(sc); err == nil {
			out = append(out, scheduleEntry{spec: spec, cfg: sc, sched: sched})
		}
	}
	return out
}

// ScheduleStatus is one schedule in GET /v1/schedules.
type ScheduleStatus struct {
	Name     string `json:"name"`
	Cron     string `json:"cron"`
	TimeZone string `json:"time_zone"`
	Action   string `json:"action"`
	MaxDelay string `json:"max_delay"`
	// Next are the next three fire times, in the schedule's zone.
	Next []NextFire `json:"next"`
	// LastRuns are the newest recorded runs, newest first.
	LastRuns []raftstore.ScheduleRun `json:"last_runs"`
}

// ServiceSchedules is one service in GET /v1/schedules.
type ServiceSchedules struct {
	Service   string           `json:"service"`
	Schedules []ScheduleStatus `json:"schedules"`
	// Staged is the package the deploy-staged schedules deploy next.
	Staged *raftstore.Stage `json:"staged,omitempty"`
	// WindowOpen says whether a cycle may start now by the windows;
	// Window says it in words ("open now", "no windows", "opens at ...").
	WindowOpen bool   `json:"window_open"`
	Window     string `json:"window"`
	// Frozen is the reason of a freeze (replicated or in the config).
	Frozen string `json:"frozen,omitempty"`
}

// lastRunsShown is how many runs per schedule ServiceSchedules carries.
const lastRunsShown = 5

// Schedules returns the schedules of service (every defined service when
// empty), read from this server's state.
func (o *Orchestrator) Schedules(service string) ([]ServiceSchedules, error) {
	specs := o.cfg.Services()
	names := sortedKeys(specs)
	if service != "" {
		if _, ok := specs[service]; !ok {
			return nil, fmt.Errorf("%w: %q is not defined in the servers' config", ErrUnknownService, service)
		}
		names = []string{service}
	}
	now := o.now()
	out := make([]ServiceSchedules, 0, len(names))
	for _, name := range names {
		spec := specs[name]
		s := ServiceSchedules{Service: name, Schedules: []ScheduleStatus{}}
		for _, e := range o.entriesOf(spec) {
			st := ScheduleStatus{Name: e.cfg.Name, Cron: e.cfg.Cron, TimeZone: e.cfg.TimeZone, Action: e.cfg.Action,
				MaxDelay: e.cfg.MaxDelay, Next: []NextFire{}, LastRuns: o.cfg.Store.ScheduleRuns(name, e.cfg.Name, lastRunsShown)}
			if st.LastRuns == nil {
				st.LastRuns = []raftstore.ScheduleRun{}
			}
			sortRuns(st.LastRuns)
			for _, t := range e.nextFires(now, 3) {
				st.Next = append(st.Next, NextFire{Schedule: e.cfg.Name, At: t, Local: e.local(t)})
			}
			s.Schedules = append(s.Schedules, st)
		}
		if g, ok := o.cfg.Store.Staged(name); ok {
			s.Staged = &g
		}
		switch open, next := inWindows(spec.Windows, now); {
		case len(spec.Windows) == 0:
			s.WindowOpen, s.Window = true, "no windows: cycles may start at any time"
		case open:
			s.WindowOpen, s.Window = true, "open now"
		default:
			s.Window = "closed; the next opens at " + next
		}
		if f, ok := o.cfg.Store.Freeze(name); ok {
			s.Frozen = f.Reason
		} else if spec.Freeze != "" {
			s.Frozen = spec.Freeze + " (server config)"
		}
		out = append(out, s)
	}
	return out, nil
}

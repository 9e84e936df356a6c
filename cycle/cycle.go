// Package cycle defines a blue/green cycle as the controller records it: its
// phases, the per-host and per-LB results, and the rules for moving from one
// phase to the next. It has no I/O, so the Raft FSM, the orchestrator on the
// leader, the API and cyclerctl share one definition.
package cycle

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cyclerhq/cycler/smoke"
)

// Phase is where a cycle stands.
type Phase string

// The phases, in the order a deploy cycle passes through them.
const (
	// Preflight re-checks the breaker, freeze, lock and fleet before anything changes.
	Preflight Phase = "preflight"
	// Hide makes sure the target pool is hidden, acked by every LB and drained.
	Hide Phase = "hide"
	// Deploy installs the package on the hidden pool, max_parallel hosts at a time.
	Deploy Phase = "deploy"
	// Smoke runs the smoke checks against every hidden host directly.
	Smoke Phase = "smoke"
	// Switch makes the target pool live and proves every LB switched.
	Switch Phase = "switch"
	// Bake watches the new live pool through every LB for bake_time.
	Bake Phase = "bake"
	// Standby applies the standby policy to the pool that was live (keep or refresh).
	Standby Phase = "standby"
	// FlipBack makes the previous pool live again after a failed switch or bake.
	FlipBack Phase = "flip_back"
	// Done: the new version is live. Terminal.
	Done Phase = "done"
	// Aborted: stopped before the switch; users never saw the package. Terminal.
	Aborted Phase = "aborted"
	// RolledBack: the switch happened and was undone. Terminal.
	RolledBack Phase = "rolled_back"
)

// Terminal reports whether p ends a cycle.
func (p Phase) Terminal() bool { return p == Done || p == Aborted || p == RolledBack }

// Known reports whether p is one of the phases above.
func (p Phase) Known() bool {
	switch p {
	case Preflight, Hide, Deploy, Smoke, Switch, Bake, Standby, FlipBack, Done, Aborted, RolledBack:
		return true
	}
	return false
}

// BeforeSwitch reports whether users cannot have seen the cycle's package
// yet: stopping now is an abort, not a rollback.
func (p Phase) BeforeSwitch() bool {
	return p == Preflight || p == Hide || p == Deploy || p == Smoke
}

// Kind says what a cycle does.
type Kind string

// Cycle kinds.
const (
	// KindDeploy deploys a package to the hidden pool and switches to it.
	KindDeploy Kind = "deploy"
	// KindRollback flips to the warm standby pool with no install.
	KindRollback Kind = "rollback"
	// KindRecycle refreshes the hidden pool to the live version; no switch.
	KindRecycle Kind = "recycle"
)

// next lists the phases each phase may move to.
var next = map[Phase][]Phase{
	Preflight: {Hide, Switch, Aborted},
	Hide:      {Deploy, Aborted},
	Deploy:    {Smoke, Aborted},
	Smoke:     {Switch, Done, Aborted},
	Switch:    {Bake, FlipBack},
	Bake:      {Standby, FlipBack},
	Standby:   {Done},
	FlipBack:  {RolledBack},
}

// CanMove reports whether a cycle in phase from may move to phase to.
func CanMove(from, to Phase) bool { return slices.Contains(next[from], to) }

// Release is a package version and its content address.
type Release struct {
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// IsZero reports whether r names no release.
func (r Release) IsZero() bool { return r.Digest == "" && r.Version == "" }

// Cycle is one cycle of one service, as committed to Raft. Every change is a
// new revision; see Validate for the rules a revision must follow.
type Cycle struct {
	// ID is "<service>-<n>", assigned when the cycle is created.
	ID string `json:"id"`
	// Rev grows by one with every committed change; a change must name the
	// revision it replaces, so two writers cannot overwrite each other.
	Rev     uint64 `json:"rev"`
	Service string `json:"service"`
	Kind    Kind   `json:"kind"`
	// Trigger says what started the cycle: "manual", "rollback" or
	// "schedule:<name>".
	Trigger string `json:"trigger"`
	// By is the API token name that started it, or "scheduler".
	By string `json:"by"`
	// RequestID is the client's id of the request that started the cycle.
	RequestID string `json:"request_id,omitempty"`
	// Forced is set when the start ignored the deploy windows.
	Forced bool `json:"forced,omitempty"`
	// Package is what the cycle puts live (for a rollback, the standby's release).
	Package Release `json:"package"`
	// Previous is the release live when the cycle started (zero on the first).
	Previous Release `json:"previous"`
	// From is the live pool when the cycle started ("" when none was live);
	// Target is the pool the cycle deploys to and makes live.
	From   string `json:"from"`
	Target string `json:"target"`
	// BaseGeneration is the service generation when the cycle started.
	BaseGeneration uint64 `json:"base_generation"`
	// HideGeneration, SwitchGeneration and FlipGeneration are the service
	// generations the cycle published, reserved before use so a new leader
	// re-uses them instead of publishing twice. 0 until reserved.
	HideGeneration   uint64 `json:"hide_generation,omitempty"`
	SwitchGeneration uint64 `json:"switch_generation,omitempty"`
	FlipGeneration   uint64 `json:"flip_generation,omitempty"`
	// DrainUntil is when the target pool's drain period ends.
	DrainUntil time.Time `json:"drain_until,omitzero"`
	// BakeUntil is when the bake ends.
	BakeUntil time.Time `json:"bake_until,omitzero"`
	Phase     Phase     `json:"phase"`
	// Message says what the cycle is doing or why it ended.
	Message string `json:"message"`
	// Paused holds the cycle before its next step.
	Paused bool `json:"paused,omitempty"`
	// AbortRequested holds the reason an operator asked to stop; the cycle
	// stops at its next step.
	AbortRequested string `json:"abort_requested,omitempty"`
	// Hosts holds one entry per host of the target pool, sorted by instance.
	Hosts []Host `json:"hosts"`
	// LBs holds the switch's acknowledgements and probes, one per LB.
	LBs []LB `json:"lbs,omitempty"`
	// Bake summarises the bake.
	BakeRounds   int      `json:"bake_rounds,omitempty"`
	BakeFailures []string `json:"bake_failures,omitempty"`
	// Phases records when each phase started and ended.
	Phases    []Span    `json:"phases"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// FinishedAt is set with a terminal phase.
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Span is one phase's time.
type Span struct {
	Phase Phase     `json:"phase"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// Duration is the span's length, or 0 while it runs.
func (s Span) Duration() time.Duration {
	if s.End.IsZero() {
		return 0
	}
	return s.End.Sub(s.Start)
}

// Host is one host's results in a cycle.
type Host struct {
	Instance string `json:"instance"`
	Pool     string `json:"pool"`
	Address  string `json:"address,omitempty"`
	Port     int    `json:"port,omitempty"`
	// Deploy is the install's result; nil until it finished.
	Deploy *Step `json:"deploy,omitempty"`
	// Smoke is the smoke run's result; nil until it finished.
	Smoke *Step `json:"smoke,omitempty"`
	// Checks are the smoke checks' results.
	Checks []smoke.CheckResult `json:"checks,omitempty"`
	// Failed is set once the host failed deploy or smoke; it stays hidden
	// and out of the switch.
	Failed bool `json:"failed,omitempty"`
}

// Step is the result of one step on one host.
type Step struct {
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// LB is one load balancer's part in the switch.
type LB struct {
	ID string `json:"id"`
	// Generation is the generation it acked; AckedAt when the leader saw it.
	Generation uint64    `json:"generation"`
	AckedAt    time.Time `json:"acked_at,omitzero"`
	// AckMS is the time from publishing to seeing the ack, in milliseconds.
	AckMS int64 `json:"ack_ms"`
	// Probe is the result of the checks through this LB after the switch.
	Probe string `json:"probe,omitempty"`
}

// Active reports whether the cycle still runs.
func (c Cycle) Active() bool { return !c.Phase.Terminal() }

// Failures counts the hosts that failed.
func (c Cycle) Failures() int {
	n := 0
	for _, h := range c.Hosts {
		if h.Failed {
			n++
		}
	}
	return n
}

// HostsDone counts the hosts with a result for the current phase.
func (c Cycle) HostsDone() int {
	n := 0
	for _, h := range c.Hosts {
		switch {
		case h.Failed:
			n++
		case c.Phase == Deploy && h.Deploy != nil:
			n++
		case c.Phase == Smoke && h.Smoke != nil:
			n++
		case c.Phase != Deploy && c.Phase != Smoke:
			n++
		}
	}
	return n
}

// Host returns a pointer to the host entry of instance, or nil.
func (c *Cycle) Host(instance string) *Host {
	for i := range c.Hosts {
		if c.Hosts[i].Instance == instance {
			return &c.Hosts[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (c Cycle) Clone() Cycle {
	c.Hosts = slices.Clone(c.Hosts)
	for i := range c.Hosts {
		h := &c.Hosts[i]
		if h.Deploy != nil {
			d := *h.Deploy
			h.Deploy = &d
		}
		if h.Smoke != nil {
			s := *h.Smoke
			h.Smoke = &s
		}
		h.Checks = slices.Clone(h.Checks)
	}
	c.LBs = slices.Clone(c.LBs)
	c.BakeFailures = slices.Clone(c.BakeFailures)
	c.Phases = slices.Clone(c.Phases)
	return c
}

// Errors a change can be refused with.
var (
	// ErrInProgress: the service already has an active cycle.
	ErrInProgress = errors.New("a cycle is already in progress")
	// ErrConflict: the change names an older revision than the stored one.
	ErrConflict = errors.New("the cycle changed meanwhile")
	// ErrFinished: the cycle is in a terminal phase and cannot change.
	ErrFinished = errors.New("the cycle has finished")
)

// Validate checks a cycle's own fields. It is pure, so the FSM may call it.
func (c Cycle) Validate() error {
	var errs []error
	if c.Service == "" {
		errs = append(errs, errors.New("service: must be set"))
	}
	switch c.Kind {
	case KindDeploy, KindRollback, KindRecycle:
	default:
		errs = append(errs, fmt.Errorf("kind: %q is not deploy, rollback or recycle", c.Kind))
	}
	if !c.Phase.Known() {
		errs = append(errs, fmt.Errorf("phase: %q is not a known phase", c.Phase))
	}
	if c.Target != "blue" && c.Target != "green" {
		errs = append(errs, fmt.Errorf("target: %q is not blue or green", c.Target))
	}
	if c.Package.Digest == "" {
		errs = append(errs, errors.New("package.digest: must be set"))
	}
	return errors.Join(errs...)
}

// CheckChange reports whether next may replace cur (the stored revision).
// It is pure, so the FSM may call it.
func CheckChange(cur, next Cycle) error {
	if cur.Phase.Terminal() {
		return fmt.Errorf("cycle %s is %s: %w", cur.ID, cur.Phase, ErrFinished)
	}
	if next.Rev != cur.Rev+1 {
		return fmt.Errorf("cycle %s: change of revision %d, but the stored revision is %d: %w", cur.ID, next.Rev-1, cur.Rev, ErrConflict)
	}
	if next.Service != cur.Service || next.Kind != cur.Kind || next.Target != cur.Target || next.Package != cur.Package {
		return fmt.Errorf("cycle %s: service, kind, target and package cannot change", cur.ID)
	}
	if next.Phase != cur.Phase && !CanMove(cur.Phase, next.Phase) {
		return fmt.Errorf("cycle %s: phase %s cannot move to %s", cur.ID, cur.Phase, next.Phase)
	}
	return nil
}

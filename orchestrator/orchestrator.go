// Package orchestrator runs blue/green cycles on the Raft leader. Each phase
// is a reconciler of idempotent steps that re-reads Raft, Consul and the
// agents and moves the cycle one notch, committing every notch to Raft
// before acting on it. A new leader therefore resumes any cycle from its
// committed phase, and a step repeated after a crash changes nothing that
// was already done.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/raftstore"
	"github.com/cyclerhq/cycler/smoke"
)

// Fleet is how the orchestrator reaches the agents.
type Fleet interface {
	Agents(ctx context.Context, service string) ([]fleet.Agent, error)
	Install(ctx context.Context, a fleet.Agent, digest string) (agent.InstallResult, error)
	SetHidden(ctx context.Context, a fleet.Agent, gen uint64, hidden bool) (agent.Maintenance, error)
	Inventory(ctx context.Context, a fleet.Agent) (agent.Inventory, error)
}

// Observer receives metrics. *metrics.Metrics implements it; nil is allowed.
type Observer interface {
	CycleFinished(service, kind, outcome string)
	PhaseDuration(service, phase string, d time.Duration)
	HostInstall(service string, ok bool, d time.Duration)
	SmokeCheck(service string, ok bool)
	LBAck(service, lb string, d time.Duration)
	SetBreaker(service, state string)
	SetCycleActive(service string, active bool)
}

// Config wires an Orchestrator.
type Config struct {
	Store     *raftstore.Store
	Fleet     Fleet
	Discovery Discovery
	// Services returns the service definitions by name. It is called on
	// every step, so a config reload takes effect at the next step.
	Services func() map[string]Spec
	Smoke    *smoke.Runner
	Logger   *zap.Logger
	// Observer receives metrics; nil means none.
	Observer Observer
	// Clock is time.Now unless a test sets it.
	Clock func() time.Time
	// Retry is the pause after a step that could not make progress
	// (waiting for an ack, an unreachable agent). Zero means 250 ms.
	Retry time.Duration
}

// Orchestrator starts and drives cycles. Start and the operator actions may
// be called on any server but only succeed on the leader (the Raft writes
// fail elsewhere); Run drives the cycles and must run only while leading.
type Orchestrator struct {
	cfg      Config
	log      *zap.Logger
	breakers *breakers

	// schedMu guards schedLocks, one lock per schedule (see lockSchedule).
	schedMu    sync.Mutex
	schedLocks map[string]chan struct{}
}

// New returns an Orchestrator.
func New(cfg Config) *Orchestrator {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Retry == 0 {
		cfg.Retry = 250 * time.Millisecond
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	o := &Orchestrator{cfg: cfg, log: cfg.Logger}
	o.breakers = newBreakers(cfg.Store, cfg.Clock)
	return o
}

// spec returns the definition of service.
func (o *Orchestrator) spec(service string) (Spec, bool) {
	s, ok := o.cfg.Services()[service]
	return s, ok
}

// Run drives every active cycle and runs the services' schedules until
// ctx ends. Register it with
// raftstore.Store.OnLeader: it starts after the new leader's Barrier, so
// it sees every committed phase, and its ctx ends when leadership is lost,
// which stops every cycle's goroutine before another leader takes over.
func (o *Orchestrator) Run(ctx context.Context) {
	o.log.Info("orchestrator started")
	var wg sync.WaitGroup
	running := map[string]bool{}
	finished := make(chan string)
	republish := time.NewTicker(5 * time.Second)
	defer republish.Stop()
	o.republish(ctx)
	// The schedules' cron lives exactly as long as this term of
	// leadership: it starts here, after the leader's Barrier, and is
	// stopped (its running jobs waited for) before Run returns.
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.runSchedules(ctx)
	}()
	for {
		changed := o.cfg.Store.Changed()
		for _, c := range o.cfg.Store.ActiveCycles() {
			if running[c.ID] {
				continue
			}
			running[c.ID] = true
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				o.drive(ctx, id)
				select {
				case finished <- id:
				case <-ctx.Done():
				}
			}(c.ID)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			o.log.Info("orchestrator stopped")
			return
		case id := <-finished:
			delete(running, id)
		case <-changed:
		case <-republish.C:
			o.republish(ctx)
		}
	}
}

// republish makes sure Consul holds every service's committed state: a
// Consul agent restarted without its data (dev mode) or a publish that
// failed during a leader change is repaired within one tick.
func (o *Orchestrator) republish(ctx context.Context) {
	for _, st := range o.cfg.Store.Services() {
		if err := o.cfg.Discovery.PublishState(ctx, st.Service, toPoolState(st)); err != nil && ctx.Err() == nil {
			o.log.Warn("state not published", zap.String("service", st.Service), zap.Error(err))
		}
	}
}

// drive runs one cycle's steps until it ends or ctx ends. A panic in a
// step is logged and ends this goroutine only; Run starts the cycle again
// on the next state change, and the server keeps serving.
func (o *Orchestrator) drive(ctx context.Context, id string) {
	defer func() {
		if r := recover(); r != nil {
			o.log.Error("cycle step panicked", zap.String("cycle_id", id), zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	log := o.log
	backoff := o.cfg.Retry
	for ctx.Err() == nil {
		changed := o.cfg.Store.Changed()
		c, ok := o.cfg.Store.Cycle(id)
		if !ok || c.Phase.Terminal() {
			return
		}
		log = o.log.With(zap.String("cycle_id", c.ID), zap.String("service", c.Service), zap.String("pool", c.Target))
		if c.Paused && c.AbortRequested == "" {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		err := o.step(ctx, log, c)
		switch {
		case err == nil:
			backoff = o.cfg.Retry
			continue
		case ctx.Err() != nil:
			return
		case errors.Is(err, cycle.ErrConflict):
			continue // an operator changed the cycle meanwhile: re-read it
		case errors.Is(err, errWaiting):
			log.Debug("waiting", zap.Error(err))
		default:
			log.Warn("step will be retried", zap.String("phase", string(c.Phase)), zap.Error(err))
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// errWaiting marks a step that is waiting for something outside (an ack, a
// health check) rather than failing.
var errWaiting = errors.New("waiting")

func waiting(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errWaiting, fmt.Sprintf(format, args...))
}

// step moves cycle c one notch. It returns nil after committing progress.
func (o *Orchestrator) step(ctx context.Context, log *zap.Logger, c cycle.Cycle) error {
	spec, ok := o.spec(c.Service)
	if !ok {
		if c.Phase.BeforeSwitch() {
			return o.finish(ctx, log, c, cycle.Aborted, fmt.Sprintf("service %q is no longer defined in this server's config", c.Service))
		}
		spec = defaultSpec(c.Service) // finish the switch or flip-back safely
	}
	if c.AbortRequested != "" {
		switch {
		case c.Phase.BeforeSwitch():
			return o.finish(ctx, log, c, cycle.Aborted, "aborted by an operator: "+c.AbortRequested)
		case c.Phase == cycle.Switch || c.Phase == cycle.Bake:
			return o.move(ctx, log, c, cycle.FlipBack, "flipping back: aborted by an operator: "+c.AbortRequested)
		}
	}
	if limit := spec.timeout(c.Phase); limit > 0 && len(c.Phases) > 0 {
		started := c.Phases[len(c.Phases)-1].Start
		if o.now().Sub(started) > limit {
			msg := fmt.Sprintf("phase %s ran longer than its timeout %s", c.Phase, limit)
			switch {
			case c.Phase.BeforeSwitch():
				o.breakers.failure(c.Service, spec)
				return o.finish(ctx, log, c, cycle.Aborted, msg)
			case c.Phase == cycle.Switch || c.Phase == cycle.Bake:
				o.breakers.failure(c.Service, spec)
				return o.move(ctx, log, c, cycle.FlipBack, "flipping back: "+msg)
			case c.Phase == cycle.Standby:
				return o.finish(ctx, log, c, cycle.Done, c.Message+"; "+msg+", so the standby pool was left as it was")
			}
		}
	}
	if c.Phase.BeforeSwitch() && c.Phase != cycle.Preflight {
		if open, why := o.breakers.open(c.Service, spec); open {
			return o.finish(ctx, log, c, cycle.Aborted, "stopped: "+why)
		}
	}
	switch c.Phase {
	case cycle.Preflight:
		return o.preflightStep(ctx, log, c, spec)
	case cycle.Hide:
		return o.hideStep(ctx, log, c, spec)
	case cycle.Deploy:
		return o.deployStep(ctx, log, c, spec)
	case cycle.Smoke:
		return o.smokeStep(ctx, log, c, spec)
	case cycle.Switch:
		return o.switchStep(ctx, log, c, spec)
	case cycle.Bake:
		return o.bakeStep(ctx, log, c, spec)
	case cycle.Standby:
		return o.standbyStep(ctx, log, c, spec)
	case cycle.FlipBack:
		return o.flipBackStep(ctx, log, c, spec)
	}
	return fmt.Errorf("cycle %s: phase %q has no step", c.ID, c.Phase)
}

func (o *Orchestrator) now() time.Time { return o.cfg.Clock() }

// update commits c (the next revision of the stored one).
func (o *Orchestrator) update(ctx context.Context, c cycle.Cycle) (cycle.Cycle, error) {
	return o.cfg.Store.UpdateCycle(ctx, c)
}

// move commits a phase change. Every transition goes through here (and
// finish), so each is logged once with from and to.
func (o *Orchestrator) move(ctx context.Context, log *zap.Logger, c cycle.Cycle, to cycle.Phase, msg string) error {
	from := c.Phase
	c.Phase, c.Message = to, msg
	next, err := o.update(ctx, c)
	if err != nil {
		return err
	}
	if n := len(next.Phases); n >= 2 {
		o.cfg.Observer.PhaseDuration(c.Service, string(from), next.Phases[n-2].Duration())
	}
	log.Info("phase changed", zap.String("from", string(from)), zap.String("to", string(to)), zap.String("message", msg))
	return nil
}

// finish moves c to a terminal phase and records the outcome.
func (o *Orchestrator) finish(ctx context.Context, log *zap.Logger, c cycle.Cycle, to cycle.Phase, msg string) error {
	from := c.Phase
	c.Phase, c.Message = to, msg
	next, err := o.update(ctx, c)
	if err != nil {
		return err
	}
	if n := len(next.Phases); n >= 1 {
		o.cfg.Observer.PhaseDuration(c.Service, string(from), next.Phases[n-1].Duration())
	}
	o.cfg.Observer.CycleFinished(c.Service, string(c.Kind), string(to))
	o.cfg.Observer.SetCycleActive(c.Service, false)
	log.Info("cycle finished", zap.String("from", string(from)), zap.String("outcome", string(to)), zap.String("message", msg))
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type nopObserver struct{}

func (nopObserver) CycleFinished(string, string, string)        {}
func (nopObserver) PhaseDuration(string, string, time.Duration) {}
func (nopObserver) HostInstall(string, bool, time.Duration)     {}
func (nopObserver) SmokeCheck(string, bool)                     {}
func (nopObserver) LBAck(string, string, time.Duration)         {}
func (nopObserver) SetBreaker(string, string)                   {}
func (nopObserver) SetCycleActive(string, bool)                 {}

package lb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/pool"
)

// Defaults for Config's zero durations.
const (
	// DefaultVerifyInterval is how often the set is read back from the LB.
	DefaultVerifyInterval = 15 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the backoff between retries
	// of a failed apply or ack write.
	DefaultRetryMin = time.Second
	DefaultRetryMax = 30 * time.Second
)

// opTimeout bounds one driver call or one ack write, so an LB or a Consul
// that hangs cannot stall the loop (and its drift checks) forever. The
// drivers bound their own steps more tightly; this is the backstop.
const opTimeout = 2 * time.Minute

// ErrReadBack is returned when the LB reports a different generation or set
// from the one just applied.
var ErrReadBack = errors.New("read-back differs from the set applied")

// Config wires a Reconciler.
type Config struct {
	// Service is the Consul service whose live pool the LB routes. Required.
	Service string
	// LBID names this LB in its ack key cycler/<svc>/lb/<lb-id>. Required.
	LBID string
	// MinLive is the fewest backends the LB applies; a smaller set is
	// refused and the last good one kept. At least 1.
	MinLive int
	// Driver applies sets to the LB and reads them back. Required.
	Driver lbdrivers.Driver
	// Store receives the acks; NewConsulStore in production. Required.
	Store Store
	// VerifyInterval is how often the set is read back to repair drift.
	// Default DefaultVerifyInterval.
	VerifyInterval time.Duration
	// RetryMin and RetryMax bound the backoff of failed applies and ack
	// writes. Defaults DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// Logger receives the reconciler's logs. Default: no logs.
	Logger *zap.Logger
}

// applied is a set the LB was proved to serve. It is never modified after
// creation, so it can be shared outside the lock.
type applied struct {
	gen      uint64
	backends []lbdrivers.Backend
	at       time.Time
}

// Reconciler keeps one service's set on one LB equal to the live pool. See
// the package doc for the rules.
type Reconciler struct {
	cfg  Config
	log  *zap.Logger
	key  string
	kick chan struct{}

	// mu guards everything below. It is never held across I/O: the loop
	// copies what it needs, talks to the LB or Consul unlocked, then
	// records the outcome. The watchers only replace inputs and signal.
	mu       sync.Mutex
	in       inputs
	stateErr error // the last state document that did not parse
	cur      plan  // the plan of the last pass
	applied  *applied
	// dirty means the LB may not hold applied any more (a failed apply or
	// a read-back that differed), so the next pass applies even an
	// unchanged set.
	dirty      bool
	checkedAt  time.Time
	applyErr   string
	applyErrAt time.Time
	refusedAt  time.Time
	written    *Ack // the last ack stored
	started    time.Time
	contact    time.Time // last successful Consul answer
	consulErr  string
	consulAt   time.Time // when consulErr was first seen
}

// New checks cfg and returns a Reconciler. It does not start anything.
func New(cfg Config) (*Reconciler, error) {
	var errs []error
	if cfg.Service == "" || cfg.LBID == "" {
		errs = append(errs, fmt.Errorf("service %q and lb id %q must both be set", cfg.Service, cfg.LBID))
	}
	if cfg.MinLive < 1 {
		errs = append(errs, fmt.Errorf("min_live %d must be at least 1: an LB never applies an empty set", cfg.MinLive))
	}
	if cfg.Driver == nil || cfg.Store == nil {
		errs = append(errs, errors.New("a driver and a store are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("lb reconciler: %w", err)
	}
	if cfg.VerifyInterval <= 0 {
		cfg.VerifyInterval = DefaultVerifyInterval
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	r := &Reconciler{
		cfg:     cfg,
		log:     cfg.Logger.Named("lb").With(zap.String("service", cfg.Service), zap.String("driver", cfg.Driver.Name())),
		key:     pool.AckKey(cfg.Service, cfg.LBID),
		kick:    make(chan struct{}, 1),
		started: time.Now(),
	}
	r.cur = desired(cfg.Service, cfg.MinLive, r.in)
	return r, nil
}

// Service returns the service r reconciles.
func (r *Reconciler) Service() string { return r.cfg.Service }

// signal asks the loop for a pass. The one-slot channel coalesces bursts:
// however many inputs arrive during a pass, one more pass follows, and it
// reads the newest of each.
func (r *Reconciler) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// SetState delivers a state view (from pool.WatchState). A document that
// does not parse is reported and the last good state kept.
func (r *Reconciler) SetState(v pool.StateView) {
	r.mu.Lock()
	r.contactLocked(time.Now())
	switch {
	case v.Err != nil:
		r.stateErr = v.Err
		r.log.Warn("state document unreadable; keeping the last good state", zap.Error(v.Err))
	case !v.Exists:
		r.in.state, r.in.haveState, r.stateErr = pool.State{}, false, nil
	default:
		r.in.state, r.in.haveState, r.stateErr = v.State, true, nil
	}
	r.mu.Unlock()
	r.signal()
}

// SetInstances delivers the service's instances (from pool.WatchInstances).
func (r *Reconciler) SetInstances(v pool.Instances) {
	r.mu.Lock()
	r.contactLocked(time.Now())
	r.in.inst, r.in.haveInst = v, true
	r.mu.Unlock()
	r.signal()
}

// ConsulError records a failed Consul call. The LB keeps its set; the
// status reports the error and how stale the view is.
func (r *Reconciler) ConsulError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.consulErr == "" {
		r.consulAt = time.Now()
		r.log.Warn("consul unreachable; keeping the current set", zap.Error(err))
	} else {
		r.log.Debug("consul still unreachable", zap.Error(err))
	}
	r.consulErr = err.Error()
}

// contactLocked records a successful Consul answer at now.
func (r *Reconciler) contactLocked(now time.Time) {
	if r.consulErr != "" {
		r.log.Info("consul reachable again", zap.Duration("unreachable_for", now.Sub(r.consulAt)))
	}
	r.contact, r.consulErr, r.consulAt = now, "", time.Time{}
}

// Watch feeds r from Consul blocking queries on the service's state key and
// health until ctx ends.
func (r *Reconciler) Watch(ctx context.Context, c *consulapi.Client) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		pool.WatchState(ctx, c, r.cfg.Service, func(v pool.StateView) {
			// A leader unhides the target pool and then publishes the state.
			// The instance watch may not have caught up with the last unhide
			// yet, so read the instances afresh before acting on a new state:
			// otherwise the LB applies a partial set and then the full one
			// (two reloads or VCL compiles per switch instead of one).
			if v.Exists && v.Err == nil {
				if in, err := pool.ReadInstances(ctx, c, r.cfg.Service); err == nil {
					r.SetInstances(in)
				}
			}
			r.SetState(v)
		}, r.ConsulError)
	}()
	go func() {
		defer wg.Done()
		pool.WatchInstances(ctx, c, r.cfg.Service, r.SetInstances, r.ConsulError)
	}()
	wg.Wait()
}

// Run reconciles until ctx ends: a pass on start, on every new input, on
// retries after failures (capped exponential backoff with jitter) and after
// every drift check. Call it once per Reconciler.
func (r *Reconciler) Run(ctx context.Context) {
	r.adopt(ctx)
	verify := time.NewTicker(r.cfg.VerifyInterval)
	defer verify.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var backoff time.Duration
	for {
		err := r.pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(2*backoff, r.cfg.RetryMin), r.cfg.RetryMax)
			wait := backoff + rand.N(backoff/2+1)
			r.log.Debug("pass failed; retrying", zap.Duration("in", wait), zap.Error(err))
			retry.Reset(wait)
		default:
			backoff = 0
			retry.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-retry.C:
		case <-verify.C:
			r.verify(ctx)
		}
	}
}

// adopt reads back what the LB serves when the reconciler starts (cyclerd
// lb restarted while the LB kept running), so an ack written before the
// first apply tells the truth. A failure is not fatal: the first apply
// proves the set anyway.
func (r *Reconciler) adopt(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	gen, set, err := r.cfg.Driver.Applied(ctx)
	if err != nil {
		r.log.Info("could not read the set back at start; the first apply will", zap.Error(err))
		return
	}
	if gen == 0 || len(set) == 0 {
		return
	}
	now := time.Now()
	r.mu.Lock()
	r.applied = &applied{gen: gen, backends: lbdrivers.Sorted(set), at: now}
	r.checkedAt = now
	r.mu.Unlock()
	r.log.Info("LB already serves a set", zap.Uint64("generation", gen), zap.Int("backends", len(set)))
}

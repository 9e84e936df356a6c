package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/raftstore"
)

// breakers holds one gobreaker DistributedCircuitBreaker per service, its
// counts and state kept in Raft (raftstore.BreakerStore), so a new leader
// continues with the same counts.
//
// What counts: every host that fails deploy or smoke, every failed bake or
// switch, and every cycle that ends aborted by a failure, each as one
// failure; a cycle that finishes live is one success, which closes a
// half-open breaker and resets the consecutive count. Host successes are not
// reported one by one, so the order in which parallel hosts finish cannot
// change whether the breaker trips. Operator aborts do not count.
type breakers struct {
	store *raftstore.Store
	clock func() time.Time

	mu sync.Mutex
	cb map[string]*svcBreaker
}

type svcBreaker struct {
	failures uint32
	cooldown time.Duration
	cb       *gobreaker.DistributedCircuitBreaker[struct{}]
}

func newBreakers(s *raftstore.Store, clock func() time.Time) *breakers {
	return &breakers{store: s, clock: clock, cb: map[string]*svcBreaker{}}
}

// stateKey is where gobreaker keeps a breaker's shared state.
func stateKey(service string) string { return "gobreaker:state:" + service }

func (b *breakers) get(spec Spec) (*gobreaker.DistributedCircuitBreaker[struct{}], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A missing shared state (never created, or deleted by a reset) must be
	// re-created by NewDistributedCircuitBreaker: gobreaker's Execute fails
	// without one, and only it knows the shape of a fresh state.
	_, stored := b.store.BreakerData(stateKey(spec.Name))
	if e := b.cb[spec.Name]; stored && e != nil && e.failures == spec.BreakerFailures && e.cooldown == spec.BreakerCooldown {
		return e.cb, nil
	}
	threshold := max(spec.BreakerFailures, 1)
	cb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](b.store.Breakers(), gobreaker.Settings{
		Name: spec.Name,
		// One trial cycle while half-open: it closes or re-opens the breaker.
		MaxRequests: 1,
		Timeout:     spec.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
	})
	if err != nil {
		return nil, fmt.Errorf("breaker %s: %w", spec.Name, err)
	}
	b.cb[spec.Name] = &svcBreaker{failures: spec.BreakerFailures, cooldown: spec.BreakerCooldown, cb: cb}
	return cb, nil
}

var errCounted = errors.New("counted failure")

// failure counts one failure against the service's breaker. An error to
// reach Raft is ignored here: the cycle itself still stops on its own
// failure limit, and the next failure is counted again.
func (b *breakers) failure(service string, spec Spec) {
	spec.Name = service
	if cb, err := b.get(spec); err == nil {
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, errCounted })
	}
}

// success counts a cycle that finished live.
func (b *breakers) success(service string, spec Spec) {
	spec.Name = service
	if cb, err := b.get(spec); err == nil {
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, nil })
	}
}

// open reports whether the breaker refuses cycles, and why, with the time
// it lets a cycle try again.
func (b *breakers) open(service string, spec Spec) (bool, string) {
	st := b.status(service, spec)
	if st.State != cycle.BreakerOpen {
		return false, ""
	}
	return true, fmt.Sprintf("the circuit breaker of %q is open after %d consecutive failures (threshold %d); it lets one cycle try at %s, or run `cyclerctl breaker reset %s`",
		service, st.ConsecutiveFailures, st.Threshold, st.ReopensAt.UTC().Format(time.RFC3339), service)
}

// status reads the breaker from this server's replicated state; it works on
// followers too and writes nothing.
func (b *breakers) status(service string, spec Spec) cycle.BreakerStatus {
	out := cycle.BreakerStatus{Service: service, State: cycle.BreakerClosed, Threshold: spec.BreakerFailures,
		Cooldown: spec.BreakerCooldown.String()}
	data, ok := b.store.BreakerData(stateKey(service))
	if !ok {
		return out
	}
	var sh gobreaker.SharedState
	if json.Unmarshal(data, &sh) != nil {
		return out
	}
	out.ConsecutiveFailures = sh.Counts.ConsecutiveFailures
	switch sh.State {
	case gobreaker.StateOpen:
		if b.clock().Before(sh.Expiry) {
			out.State, out.ReopensAt = cycle.BreakerOpen, sh.Expiry
		} else {
			out.State = cycle.BreakerHalfOpen
		}
	case gobreaker.StateHalfOpen:
		out.State = cycle.BreakerHalfOpen
	}
	return out
}

// reset closes the breaker: its shared state is deleted, and the next
// use creates a fresh, closed one.
func (b *breakers) reset(ctx context.Context, service string) error {
	b.mu.Lock()
	delete(b.cb, service)
	b.mu.Unlock()
	return b.store.SetBreakerData(ctx, stateKey(service), nil)
}

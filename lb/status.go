package lb

import (
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/pool"
)

// Report is the answer of GET /v1/lb/status: every service of one LB.
type Report struct {
	// LBID is the LB's id (lb_id).
	LBID string `json:"lb_id"`
	// Driver is the configured driver ("nginx", "varnish", "exec").
	Driver string `json:"driver"`
	// Services holds one Status per service, in config order.
	Services []Status `json:"services"`
}

// Status is one service's reconciler as GET /v1/lb/status reports it.
type Status struct {
	// Service is the Consul service.
	Service string `json:"service"`
	// Driver names the LB driver.
	Driver string `json:"driver"`
	// Generation is the generation the LB serves, proved by read-back; 0
	// before the first apply.
	Generation uint64 `json:"generation"`
	// Backends is the set applied for Generation; never null.
	Backends []lbdrivers.Backend `json:"backends"`
	// AppliedAt is when Generation was applied.
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// CheckedAt is the last read-back that matched.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Published is the newest generation the leader published (0: none).
	Published uint64 `json:"published_generation"`
	// Live is the published live pool.
	Live pool.Pool `json:"live,omitempty"`
	// InSync is true when the LB serves exactly what the published state
	// asks for.
	InSync bool `json:"in_sync"`
	// Waiting says why nothing is applied yet.
	Waiting string `json:"waiting,omitempty"`
	// Refused says why the desired set is refused.
	Refused string `json:"refused,omitempty"`
	// LastError is the current problem (an apply error or the refusal).
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError was first seen.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// StateError says why the newest state document was not used.
	StateError string `json:"state_error,omitempty"`
	// ConsulError is the last Consul failure, while Consul is unreachable.
	ConsulError string `json:"consul_error,omitempty"`
	// LastConsulContact is the last successful answer from Consul.
	LastConsulContact time.Time `json:"last_consul_contact,omitzero"`
	// StalenessSeconds is the time since LastConsulContact (since start
	// when Consul never answered): how old the view the LB acts on may be.
	// While Consul is healthy it stays below the verify interval.
	StalenessSeconds float64 `json:"staleness_seconds"`
}

// Status reports the reconciler's state.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{
		Service:           r.cfg.Service,
		Driver:            r.cfg.Driver.Name(),
		Backends:          []lbdrivers.Backend{},
		CheckedAt:         r.checkedAt,
		Published:         r.cur.gen,
		Live:              r.cur.live,
		Waiting:           r.cur.waiting,
		Refused:           r.cur.refused,
		ConsulError:       r.consulErr,
		LastConsulContact: r.contact,
	}
	if app := r.applied; app != nil {
		s.Generation, s.Backends, s.AppliedAt = app.gen, app.backends, app.at
		s.InSync = !r.dirty && r.cur.waiting == "" && r.cur.refused == "" && app.gen == r.cur.gen && sameSet(app.backends, r.cur.backends)
	}
	if ack, ok := r.ackLocked(); ok {
		s.LastError, s.LastErrorAt = ack.LastError, ack.LastErrorAt
	}
	if r.stateErr != nil {
		s.StateError = r.stateErr.Error()
	}
	since := r.contact
	if since.IsZero() {
		since = r.started
	}
	s.StalenessSeconds = time.Since(since).Seconds()
	return s
}

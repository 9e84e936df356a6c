// Package metrics exports cyclerd's Prometheus metrics: cycle outcomes,
// phase and host-install durations, smoke checks, LB acknowledgement latency,
// circuit-breaker state, whether a cycle is running, and the Raft state of the
// server. Each Metrics owns its registry, so tests and several servers in one
// process never share series. A nil *Metrics is valid and records nothing, so
// callers can leave metrics out.
package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes passed to CycleFinished.
const (
	// OutcomeDone is a cycle that finished every phase.
	OutcomeDone = "done"
	// OutcomeAborted is a cycle stopped by an operator or an error.
	OutcomeAborted = "aborted"
	// OutcomeRolledBack is a cycle that switched traffic back to the old pool.
	OutcomeRolledBack = "rolled_back"
	// OutcomeRefused is a cycle that was never started (breaker open, another
	// cycle in progress, invalid request).
	OutcomeRefused = "refused"
)

// Breaker states passed to SetBreaker; they match gobreaker's State.String.
const (
	// BreakerClosed lets cycles run.
	BreakerClosed = "closed"
	// BreakerOpen refuses cycles.
	BreakerOpen = "open"
	// BreakerHalfOpen lets a trial cycle run.
	BreakerHalfOpen = "half-open"
)

// breakerStates is every state SetBreaker writes a series for.
var breakerStates = [...]string{BreakerClosed, BreakerOpen, BreakerHalfOpen}

// Histogram buckets, in seconds.
var (
	// durationBuckets covers phases and host installs: 0.1 s to 1 h.
	durationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	// lbAckBuckets covers LB acknowledgements: 5 ms to 60 s.
	lbAckBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
)

// Metrics holds cyclerd's metrics and the registry that exports them. Create
// it with New. All methods are safe for concurrent use and are no-ops on a nil
// *Metrics.
type Metrics struct {
	reg *prometheus.Registry

	cycles      *prometheus.CounterVec
	phase       *prometheus.HistogramVec
	hostInstall *prometheus.HistogramVec
	smoke       *prometheus.CounterVec
	lbAck       *prometheus.HistogramVec
	breaker     *prometheus.GaugeVec
	active      *prometheus.GaugeVec
	raft        *raftCollector
}

// New returns Metrics with a fresh registry holding the cycler metrics and the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cycler_cycles_total",
			Help: "Cycles finished, by service, kind and outcome (done, aborted, rolled_back, refused).",
		}, []string{"service", "kind", "outcome"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cycler_phase_duration_seconds",
			Help:    "Time spent in each cycle phase.",
			Buckets: durationBuckets,
		}, []string{"service", "phase"}),
		hostInstall: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cycler_host_install_duration_seconds",
			Help:    "Time to install a release on one host, by result (ok, failed).",
			Buckets: durationBuckets,
		}, []string{"service", "result"}),
		smoke: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cycler_smoke_checks_total",
			Help: "Smoke checks run, by result (ok, failed).",
		}, []string{"service", "result"}),
		lbAck: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cycler_lb_ack_latency_seconds",
			Help:    "Time for a load balancer to acknowledge a pool switch.",
			Buckets: lbAckBuckets,
		}, []string{"service", "lb"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cycler_breaker_state",
			Help: "Circuit-breaker state per service: 1 for the current state (closed, open, half-open), 0 for the others.",
		}, []string{"service", "state"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cycler_cycle_active",
			Help: "1 while a cycle of the service is running, else 0.",
		}, []string{"service"}),
		raft: newRaftCollector(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.cycles, m.phase, m.hostInstall, m.smoke, m.lbAck, m.breaker, m.active,
		m.raft,
	)
	return m
}

// Handler serves the registry in the Prometheus exposition formats. On a nil
// *Metrics it answers 404 Not Found.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// CycleFinished counts one cycle of service that ended with outcome (one of
// the Outcome constants). kind is the cycle kind as the orchestrator names it.
func (m *Metrics) CycleFinished(service, kind, outcome string) {
	if m == nil {
		return
	}
	m.cycles.WithLabelValues(service, kind, outcome).Inc()
}

// PhaseDuration records that service spent d in phase.
func (m *Metrics) PhaseDuration(service, phase string, d time.Duration) {
	if m == nil {
		return
	}
	m.phase.WithLabelValues(service, phase).Observe(d.Seconds())
}

// HostInstall records one host install of service that took d and succeeded
// when ok.
func (m *Metrics) HostInstall(service string, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	m.hostInstall.WithLabelValues(service, result(ok)).Observe(d.Seconds())
}

// SmokeCheck counts one smoke check of service that passed when ok.
func (m *Metrics) SmokeCheck(service string, ok bool) {
	if m == nil {
		return
	}
	m.smoke.WithLabelValues(service, result(ok)).Inc()
}

// LBAck records that load balancer lb took d to acknowledge a switch of
// service.
func (m *Metrics) LBAck(service, lb string, d time.Duration) {
	if m == nil {
		return
	}
	m.lbAck.WithLabelValues(service, lb).Observe(d.Seconds())
}

// SetBreaker records the breaker state of service: the series for state is set
// to 1 and the other two of closed, open and half-open to 0. An unknown state
// sets all three to 0 and adds no series, so the label set stays bounded.
func (m *Metrics) SetBreaker(service, state string) {
	if m == nil {
		return
	}
	for _, s := range breakerStates {
		m.breaker.WithLabelValues(service, s).Set(boolFloat(s == state))
	}
}

// SetCycleActive records whether a cycle of service is running.
func (m *Metrics) SetCycleActive(service string, active bool) {
	if m == nil {
		return
	}
	m.active.WithLabelValues(service).Set(boolFloat(active))
}

// RegisterRaft makes every scrape export the stats fn returns as the
// cycler_raft_* gauges. fn is called once per scrape, possibly concurrently,
// so it must be cheap and safe for concurrent use. A later call replaces fn; a
// nil fn stops the export.
func (m *Metrics) RegisterRaft(fn func() RaftStats) {
	if m == nil {
		return
	}
	m.raft.set(fn)
}

// result is the result label for ok.
func result(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// boolFloat is 1 for true and 0 for false.
func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// RaftStats is the Raft state of this server at one moment.
type RaftStats struct {
	// IsLeader is true when this server is the leader.
	IsLeader bool
	// Term is the current Raft term.
	Term uint64
	// LastIndex is the index of the last log entry.
	LastIndex uint64
	// AppliedIndex is the index of the last entry applied to the FSM.
	AppliedIndex uint64
	// Leader is the address (or id) of the known leader; empty when there is
	// none.
	Leader string
}

// raftCollector exports RaftStats at scrape time. It is registered by New and
// exports nothing until a stats function is set, so RegisterRaft never has to
// touch the registry and can be called again.
type raftCollector struct {
	fn atomic.Pointer[func() RaftStats]

	leader     *prometheus.Desc
	term       *prometheus.Desc
	lastIndex  *prometheus.Desc
	applied    *prometheus.Desc
	leaderInfo *prometheus.Desc
}

func newRaftCollector() *raftCollector {
	return &raftCollector{
		leader:     prometheus.NewDesc("cycler_raft_leader", "1 if this server is the Raft leader, else 0.", nil, nil),
		term:       prometheus.NewDesc("cycler_raft_term", "Current Raft term.", nil, nil),
		lastIndex:  prometheus.NewDesc("cycler_raft_last_index", "Index of the last Raft log entry.", nil, nil),
		applied:    prometheus.NewDesc("cycler_raft_applied_index", "Index of the last Raft log entry applied to the FSM.", nil, nil),
		leaderInfo: prometheus.NewDesc("cycler_raft_leader_info", "Always 1; the leader label names the known Raft leader (empty when there is none).", []string{"leader"}, nil),
	}
}

func (c *raftCollector) set(fn func() RaftStats) {
	if fn == nil {
		c.fn.Store(nil)
		return
	}
	c.fn.Store(&fn)
}

// Describe implements prometheus.Collector.
func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.leader
	ch <- c.term
	ch <- c.lastIndex
	ch <- c.applied
	ch <- c.leaderInfo
}

// Collect implements prometheus.Collector.
func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.fn.Load()
	if fn == nil {
		return
	}
	s := (*fn)()
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, boolFloat(s.IsLeader))
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(s.Term))
	ch <- prometheus.MustNewConstMetric(c.lastIndex, prometheus.GaugeValue, float64(s.LastIndex))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(s.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(c.leaderInfo, prometheus.GaugeValue, 1, s.Leader)
}

var _ prometheus.Collector = (*raftCollector)(nil)

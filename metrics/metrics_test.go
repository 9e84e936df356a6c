package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The buckets the histograms must have, written out here rather than taken
// from the package so a change to them fails a test.
var (
	wantDurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	wantLBAckBuckets    = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
)

// cyclerNames is every metric name the package exports.
var cyclerNames = []string{
	"cycler_cycles_total",
	"cycler_phase_duration_seconds",
	"cycler_host_install_duration_seconds",
	"cycler_smoke_checks_total",
	"cycler_lb_ack_latency_seconds",
	"cycler_breaker_state",
	"cycler_cycle_active",
	"cycler_raft_leader",
	"cycler_raft_term",
	"cycler_raft_last_index",
	"cycler_raft_applied_index",
	"cycler_raft_leader_info",
}

// histogramSeries renders the exposition lines of one histogram series that
// holds the single observation v; labels are the series' labels in name
// order, without braces.
func histogramSeries(name, labels string, buckets []float64, v float64) string {
	var b strings.Builder
	for _, le := range buckets {
		n := 0
		if v <= le {
			n = 1
		}
		fmt.Fprintf(&b, "%s_bucket{%s,le=\"%g\"} %d\n", name, labels, le, n)
	}
	fmt.Fprintf(&b, "%s_bucket{%s,le=\"+Inf\"} 1\n", name, labels)
	fmt.Fprintf(&b, "%s_sum{%s} %g\n", name, labels, v)
	fmt.Fprintf(&b, "%s_count{%s} 1\n", name, labels)
	return b.String()
}

const (
	cyclesHeader = `# HELP cycler_cycles_total Cycles finished, by service, kind and outcome (done, aborted, rolled_back, refused).
# TYPE cycler_cycles_total counter
`
	phaseHeader = `# HELP cycler_phase_duration_seconds Time spent in each cycle phase.
# TYPE cycler_phase_duration_seconds histogram
`
	hostInstallHeader = `# HELP cycler_host_install_duration_seconds Time to install a release on one host, by result (ok, failed).
# TYPE cycler_host_install_duration_seconds histogram
`
	smokeHeader = `# HELP cycler_smoke_checks_total Smoke checks run, by result (ok, failed).
# TYPE cycler_smoke_checks_total counter
`
	lbAckHeader = `# HELP cycler_lb_ack_latency_seconds Time for a load balancer to acknowledge a pool switch.
# TYPE cycler_lb_ack_latency_seconds histogram
`
	breakerHeader = `# HELP cycler_breaker_state Circuit-breaker state per service: 1 for the current state (closed, open, half-open), 0 for the others.
# TYPE cycler_breaker_state gauge
`
	activeHeader = `# HELP cycler_cycle_active 1 while a cycle of the service is running, else 0.
# TYPE cycler_cycle_active gauge
`
)

func TestRecord(t *testing.T) {
	tests := []struct {
		name string
		give func(m *Metrics)
		want string
	}{
		{
			name: "cycles counted per outcome",
			give: func(m *Metrics) {
				m.CycleFinished("web", "rolling", OutcomeDone)
				m.CycleFinished("web", "rolling", OutcomeDone)
				m.CycleFinished("web", "rolling", OutcomeRolledBack)
				m.CycleFinished("api", "manual", OutcomeRefused)
				m.CycleFinished("api", "manual", OutcomeAborted)
			},
			want: cyclesHeader + `cycler_cycles_total{kind="manual",outcome="aborted",service="api"} 1
cycler_cycles_total{kind="manual",outcome="refused",service="api"} 1
cycler_cycles_total{kind="rolling",outcome="done",service="web"} 2
cycler_cycles_total{kind="rolling",outcome="rolled_back",service="web"} 1
`,
		},
		{
			name: "phase duration",
			give: func(m *Metrics) { m.PhaseDuration("web", "deploy", 90*time.Second) },
			want: phaseHeader + histogramSeries("cycler_phase_duration_seconds", `phase="deploy",service="web"`, wantDurationBuckets, 90),
		},
		{
			name: "phase duration below the first bucket",
			give: func(m *Metrics) { m.PhaseDuration("web", "hide", 50*time.Millisecond) },
			want: phaseHeader + histogramSeries("cycler_phase_duration_seconds", `phase="hide",service="web"`, wantDurationBuckets, 0.05),
		},
		{
			name: "host install ok",
			give: func(m *Metrics) { m.HostInstall("web", true, 1500*time.Millisecond) },
			want: hostInstallHeader + histogramSeries("cycler_host_install_duration_seconds", `result="ok",service="web"`, wantDurationBuckets, 1.5),
		},
		{
			name: "host install failed",
			give: func(m *Metrics) { m.HostInstall("web", false, 20*time.Minute) },
			want: hostInstallHeader + histogramSeries("cycler_host_install_duration_seconds", `result="failed",service="web"`, wantDurationBuckets, 1200),
		},
		{
			name: "smoke checks counted per result",
			give: func(m *Metrics) {
				m.SmokeCheck("web", true)
				m.SmokeCheck("web", true)
				m.SmokeCheck("web", false)
			},
			want: smokeHeader + `cycler_smoke_checks_total{result="failed",service="web"} 1
cycler_smoke_checks_total{result="ok",service="web"} 2
`,
		},
		{
			name: "lb ack latency",
			give: func(m *Metrics) { m.LBAck("web", "nginx-1", 40*time.Millisecond) },
			want: lbAckHeader + histogramSeries("cycler_lb_ack_latency_seconds", `lb="nginx-1",service="web"`, wantLBAckBuckets, 0.04),
		},
		{
			name: "breaker open",
			give: func(m *Metrics) { m.SetBreaker("web", BreakerOpen) },
			want: breakerHeader + `cycler_breaker_state{service="web",state="closed"} 0
cycler_breaker_state{service="web",state="half-open"} 0
cycler_breaker_state{service="web",state="open"} 1
`,
		},
		{
			name: "breaker half-open",
			give: func(m *Metrics) { m.SetBreaker("web", BreakerHalfOpen) },
			want: breakerHeader + `cycler_breaker_state{service="web",state="closed"} 0
cycler_breaker_state{service="web",state="half-open"} 1
cycler_breaker_state{service="web",state="open"} 0
`,
		},
		{
			name: "breaker open then closed",
			give: func(m *Metrics) {
				m.SetBreaker("web", BreakerOpen)
				m.SetBreaker("web", BreakerClosed)
			},
			want: breakerHeader + `cycler_breaker_state{service="web",state="closed"} 1
cycler_breaker_state{service="web",state="half-open"} 0
cycler_breaker_state{service="web",state="open"} 0
`,
		},
		{
			name: "breaker unknown state adds no series",
			give: func(m *Metrics) {
				m.SetBreaker("web", BreakerOpen)
				m.SetBreaker("web", "unknown state: 7")
			},
			want: breakerHeader + `cycler_breaker_state{service="web",state="closed"} 0
cycler_breaker_state{service="web",state="half-open"} 0
cycler_breaker_state{service="web",state="open"} 0
`,
		},
		{
			name: "breaker per service",
			give: func(m *Metrics) {
				m.SetBreaker("web", BreakerOpen)
				m.SetBreaker("api", BreakerClosed)
			},
			want: breakerHeader + `cycler_breaker_state{service="api",state="closed"} 1
cycler_breaker_state{service="api",state="half-open"} 0
cycler_breaker_state{service="api",state="open"} 0
cycler_breaker_state{service="web",state="closed"} 0
cycler_breaker_state{service="web",state="half-open"} 0
cycler_breaker_state{service="web",state="open"} 1
`,
		},
		{
			name: "cycle active",
			give: func(m *Metrics) { m.SetCycleActive("web", true) },
			want: activeHeader + `cycler_cycle_active{service="web"} 1
`,
		},
		{
			name: "cycle active then finished",
			give: func(m *Metrics) {
				m.SetCycleActive("web", true)
				m.SetCycleActive("api", true)
				m.SetCycleActive("web", false)
			},
			want: activeHeader + `cycler_cycle_active{service="api"} 1
cycler_cycle_active{service="web"} 0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			tt.give(m)
			// Comparing every cycler name also checks that nothing else was
			// recorded.
			if err := testutil.GatherAndCompare(m.reg, strings.NewReader(tt.want), cyclerNames...); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRaft(t *testing.T) {
	const raftHeaders = `# HELP cycler_raft_leader 1 if this server is the Raft leader, else 0.
# TYPE cycler_raft_leader gauge
# HELP cycler_raft_term Current Raft term.
# TYPE cycler_raft_term gauge
# HELP cycler_raft_last_index Index of the last Raft log entry.
# TYPE cycler_raft_last_index gauge
# HELP cycler_raft_applied_index Index of the last Raft log entry applied to the FSM.
# TYPE cycler_raft_applied_index gauge
# HELP cycler_raft_leader_info Always 1; the leader label names the known Raft leader (empty when there is none).
# TYPE cycler_raft_leader_info gauge
`
	leader := func() RaftStats {
		return RaftStats{IsLeader: true, Term: 7, LastIndex: 120, AppliedIndex: 118, Leader: "10.0.0.1:8300"}
	}
	follower := func() RaftStats {
		return RaftStats{Term: 3, LastIndex: 9, AppliedIndex: 9}
	}
	tests := []struct {
		name string
		give func(m *Metrics)
		want string
	}{
		{
			name: "not registered",
			give: func(*Metrics) {},
			want: "",
		},
		{
			name: "leader",
			give: func(m *Metrics) { m.RegisterRaft(leader) },
			want: raftHeaders + `cycler_raft_leader 1
cycler_raft_term 7
cycler_raft_last_index 120
cycler_raft_applied_index 118
cycler_raft_leader_info{leader="10.0.0.1:8300"} 1
`,
		},
		{
			name: "follower without a known leader",
			give: func(m *Metrics) { m.RegisterRaft(follower) },
			want: raftHeaders + `cycler_raft_leader 0
cycler_raft_term 3
cycler_raft_last_index 9
cycler_raft_applied_index 9
cycler_raft_leader_info{leader=""} 1
`,
		},
		{
			name: "later registration replaces",
			give: func(m *Metrics) {
				m.RegisterRaft(follower)
				m.RegisterRaft(leader)
			},
			want: raftHeaders + `cycler_raft_leader 1
cycler_raft_term 7
cycler_raft_last_index 120
cycler_raft_applied_index 118
cycler_raft_leader_info{leader="10.0.0.1:8300"} 1
`,
		},
		{
			name: "nil stops the export",
			give: func(m *Metrics) {
				m.RegisterRaft(leader)
				m.RegisterRaft(nil)
			},
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			tt.give(m)
			if err := testutil.GatherAndCompare(m.reg, strings.NewReader(tt.want), cyclerNames...); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRaftEvaluatedPerScrape(t *testing.T) {
	m := New()
	var (
		mu   sync.Mutex
		term uint64 = 1
	)
	m.RegisterRaft(func() RaftStats {
		mu.Lock()
		defer mu.Unlock()
		return RaftStats{Term: term}
	})
	for _, want := range []uint64{1, 2} {
		mu.Lock()
		term = want
		mu.Unlock()
		got := testutil.ToFloat64(&onlyTerm{m.raft})
		if got != float64(want) {
			t.Errorf("cycler_raft_term = %v, want %v", got, want)
		}
	}
}

// onlyTerm narrows the Raft collector to cycler_raft_term, because ToFloat64
// needs a collector with exactly one metric.
type onlyTerm struct{ c *raftCollector }

func (o *onlyTerm) Describe(ch chan<- *prometheus.Desc) { ch <- o.c.term }

func (o *onlyTerm) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 8)
	o.c.Collect(all)
	close(all)
	for m := range all {
		if m.Desc() == o.c.term {
			ch <- m
		}
	}
}

func TestNilMetrics(t *testing.T) {
	tests := []struct {
		name string
		give func(m *Metrics)
	}{
		{name: "CycleFinished", give: func(m *Metrics) { m.CycleFinished("web", "rolling", OutcomeDone) }},
		{name: "PhaseDuration", give: func(m *Metrics) { m.PhaseDuration("web", "deploy", time.Second) }},
		{name: "HostInstall", give: func(m *Metrics) { m.HostInstall("web", true, time.Second) }},
		{name: "SmokeCheck", give: func(m *Metrics) { m.SmokeCheck("web", false) }},
		{name: "LBAck", give: func(m *Metrics) { m.LBAck("web", "nginx-1", time.Millisecond) }},
		{name: "SetBreaker", give: func(m *Metrics) { m.SetBreaker("web", BreakerOpen) }},
		{name: "SetCycleActive", give: func(m *Metrics) { m.SetCycleActive("web", true) }},
		{name: "RegisterRaft", give: func(m *Metrics) { m.RegisterRaft(func() RaftStats { return RaftStats{} }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m *Metrics
			tt.give(m) // must not panic
		})
	}

	t.Run("Handler", func(t *testing.T) {
		var m *Metrics
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("status = %d, want %d", rec.Code, http.StatusNotFound)
		}
	})
}

// record sets one series of every metric.
func record(m *Metrics) {
	m.CycleFinished("web", "rolling", OutcomeDone)
	m.PhaseDuration("web", "deploy", time.Second)
	m.HostInstall("web", true, time.Second)
	m.SmokeCheck("web", true)
	m.LBAck("web", "nginx-1", 10*time.Millisecond)
	m.SetBreaker("web", BreakerClosed)
	m.SetCycleActive("web", true)
	m.RegisterRaft(func() RaftStats { return RaftStats{IsLeader: true, Term: 2, Leader: "a"} })
}

func TestHandler(t *testing.T) {
	m := New()
	record(m)

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want %d; body:\n%s", resp.StatusCode, http.StatusOK, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	wants := append([]string{
		// The Go and process collectors are registered too.
		"go_goroutines ",
		"process_start_time_seconds ",
		`cycler_cycles_total{kind="rolling",outcome="done",service="web"} 1`,
		`cycler_raft_leader_info{leader="a"} 1`,
	}, cyclerNames...)
	for _, want := range wants {
		if !strings.Contains(string(body), want) {
			t.Errorf("body has no %q", want)
		}
	}
}

func TestLint(t *testing.T) {
	m := New()
	record(m)
	problems, err := testutil.GatherAndLint(m.reg, cyclerNames...)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestRegistriesAreSeparate(t *testing.T) {
	a, b := New(), New()
	a.SmokeCheck("web", true)
	n, err := testutil.GatherAndCount(b.reg, "cycler_smoke_checks_total")
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if n != 0 {
		t.Errorf("second registry has %d smoke series, want 0", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			service := fmt.Sprintf("svc-%d", i%2)
			for range 50 {
				record(m)
				m.SetBreaker(service, BreakerOpen)
				m.SetCycleActive(service, false)
			}
		})
		wg.Go(func() {
			for range 20 {
				if _, err := m.reg.Gather(); err != nil {
					t.Errorf("gather: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := testutil.ToFloat64(m.cycles); got != 8*50 {
		t.Errorf("cycler_cycles_total = %v, want %v", got, 8*50)
	}
}

//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/pool"
)

// The checker sends a request through every LB of a fleetLab every
// sampleEvery and, at the same time, watches what the leader publishes
// (cycler/web/state) and what each LB acknowledges (cycler/web/lb/<id>)
// with blocking queries. finish then checks DESIGN.md's invariants against
// what it recorded:
//
//  1. No request failed: every sample got a 200 with the demo app's
//     answer. An LB that applied an empty backend set answers 502/503, so
//     this also covers "an LB never applies an empty backend set".
//  2. A sample that started after the checker saw LB b acknowledge
//     generation N was answered by an instance of the live pool of N (or of
//     a newer generation, see checkInput.Grace) that N does not list as
//     hidden.
//  3. A hidden host gets no new requests once its LBs acked and the drain
//     period is over. For sampled traffic this is a special case of 2, and
//     a stricter one: 2 holds from the moment of the ack, before the drain
//     period even starts (the drain is for requests already in flight).
//
// The check itself is the pure function checkSamples, so that
// TestCheckerReportsViolations can feed it a made-up history.

const (
	// sampleEvery is the checker's request interval per LB.
	sampleEvery = 20 * time.Millisecond
	// sampleTimeout bounds one request; a slower answer is a failure.
	sampleTimeout = 3 * time.Second
	// watchGrace is how much later than a sample's end the checker may
	// have first learnt of a generation newer than the LB's ack that the LB
	// already served. The LB and the checker learn of a new state from the
	// same Consul agent at about the same time, but on a busy machine the
	// checker's goroutine may run later. (The generation an LB acked needs
	// no grace: the ack itself proves it was published, and its applied_at
	// says since when, see checkSamples.)
	watchGrace = 500 * time.Millisecond
	// checkedService is the service the lab runs.
	checkedService = "web"
)

// checkSample is one request through one LB.
type checkSample struct {
	// Start and End bound the request.
	Start, End time.Time
	// LB is the LB's id.
	LB string
	// Instance, Pool and Version come from the demo app's answer.
	Instance, Pool, Version string
	// Err is set when the request failed: a socket error, a timeout, a
	// status other than 200 or an answer that is not the demo app's.
	Err string
}

// checkGen is one generation of cycler/web/state as the checker saw it.
type checkGen struct {
	Gen    uint64
	Live   pool.Pool
	Hidden []string
	// Versions is each pool's version in the document.
	Versions map[pool.Pool]string
	// Seen is when the checker first saw the document.
	Seen time.Time
}

// checkAck is the first time the checker saw LB acknowledge Gen.
type checkAck struct {
	LB   string
	Gen  uint64
	Seen time.Time
	// Applied is the ack's own applied_at: when the LB says it proved
	// Gen applied, by its read-back. Zero if the ack has none.
	Applied time.Time
}

// watchError is an error of one of the checker's Consul watches.
type watchError struct {
	At  time.Time
	Msg string
}

// outage is a period in which the test made Consul unavailable on purpose
// (see checker.expectOutage).
type outage struct {
	From, To time.Time
}

// checkInput is everything the checker recorded.
type checkInput struct {
	Samples []checkSample
	Gens    map[uint64]checkGen
	// Acks holds the first sighting of each (LB, generation), in the order
	// the checker saw them.
	Acks []checkAck
	// Published is when the leader committed a generation, from the
	// cycle record (see checker.cycleEnded). No LB can serve a generation
	// before it, so it dates the generation even when both watches lag.
	Published map[uint64]time.Time
	// Grace: see watchGrace.
	Grace time.Duration
	// WatchErrors are errors of the Consul watches; each one outside
	// Outages is a violation, since the check cannot vouch for a period it
	// did not see.
	WatchErrors []watchError
	// Outages are the periods in which the test took Consul down itself;
	// the watch errors stamped inside one say nothing about the product and
	// are only counted. Samples are checked as at any other time.
	Outages []outage
}

// checkReport is the outcome of a checker run.
type checkReport struct {
	// Total counts the samples; Failures lists the failed ones (invariant 1).
	Total    int
	Failures []string
	// Violations lists samples answered by an instance outside the live
	// pool of every generation they could have been served under (invariants
	// 2 and 3), and any gap in the checker's view of Consul.
	Violations []string
	// Versions counts, per LB, the answers per version.
	Versions map[string]map[string]int
	// Checked counts the samples held against an acked generation;
	// Unchecked the ones that started before the checker saw any ack of
	// their LB, plus the NoState ones.
	Checked, Unchecked int
	// NoState counts the samples that matched no generation they could
	// have been served under whose state document the checker saw, while
	// at least one of those generations (known only from an LB's ack) it
	// never saw: they are neither passed nor reported as violations.
	// Unseen lists those generations.
	NoState int
	Unseen  []uint64
	// OutageErrors counts the watch errors left out because they fell in
	// an expected outage.
	OutageErrors int
	// Generations summarizes each generation and when each LB's ack was
	// first seen, for the test log.
	Generations []string
}

// checker runs the sampling and the watches of one fleetLab.
type checker struct {
	lbs  []string
	stop context.CancelFunc
	done sync.WaitGroup

	mu sync.Mutex // guards in
	in checkInput
}

// startChecker starts sampling every LB of the lab and watching its Consul
// keys. It reads the current state and acks once before the first sample,
// so every sample has a baseline.
func (l *fleetLab) startChecker() *checker {
	l.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &checker{stop: cancel, in: checkInput{Gens: map[uint64]checkGen{}, Published: map[uint64]time.Time{}, Grace: watchGrace}}
	for _, b := range l.lbs {
		c.lbs = append(c.lbs, b.ID)
	}
	stateIdx, err := c.readState(ctx, l.cc, 0)
	if err != nil {
		cancel()
		harness.Fatalf(l.t, "checker: read %s: %v", pool.StateKey(checkedService), err)
	}
	ackIdx, err := c.readAcks(ctx, l.cc, 0)
	if err != nil {
		cancel()
		harness.Fatalf(l.t, "checker: read %s: %v", pool.AckPrefix(checkedService), err)
	}
	c.done.Add(2)
	go func() {
		defer c.done.Done()
		c.watch(ctx, "state", stateIdx, func(idx uint64) (uint64, error) { return c.readState(ctx, l.cc, idx) })
	}()
	go func() {
		defer c.done.Done()
		c.watch(ctx, "acks", ackIdx, func(idx uint64) (uint64, error) { return c.readAcks(ctx, l.cc, idx) })
	}()
	for _, b := range l.lbs {
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			c.sample(ctx, b.ID, b.Public)
		}()
	}
	return c
}

// expectOutage tells the checker that the test itself makes Consul
// unavailable from from to to (give to some slack for the watches to
// reconnect): the watch errors stamped in that period are counted but are
// not violations. Samples are checked as at any other time, and a
// generation the watches missed while Consul was down leaves the samples
// that depend on it unchecked, never passed. It may be called at any time
// before finish.
func (c *checker) expectOutage(from, to time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.in.Outages = append(c.in.Outages, outage{From: from, To: to})
}

// cycleEnded records when the leader committed c's switch generation, as
// the cycle record says: an LB's ack entry holds when the leader saw the
// ack and how long after the commit that was. Call it before finish with
// the cycle the checker watched.
func (c *checker) cycleEnded(cy cycle.Cycle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range cy.LBs {
		if cy.SwitchGeneration == 0 || l.Generation < cy.SwitchGeneration || l.AckedAt.IsZero() {
			continue
		}
		at := l.AckedAt.Add(-time.Duration(l.AckMS) * time.Millisecond)
		if p, ok := c.in.Published[cy.SwitchGeneration]; !ok || at.Before(p) {
			c.in.Published[cy.SwitchGeneration] = at
		}
	}
}

// finish stops the checker and checks what it recorded.
func (c *checker) finish() checkReport {
	c.stop()
	c.done.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return checkSamples(c.in)
}

// sample sends a request through the LB at url every sampleEvery until ctx
// ends, on one keep-alive client, without retries of its own.
func (c *checker) sample(ctx context.Context, id, url string) {
	hc := &http.Client{Timeout: sampleTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s := checkSample{LB: id, Start: time.Now()}
		a, err := appVia(ctx, hc, url)
		s.End = time.Now()
		if ctx.Err() != nil {
			return // cancelled by finish: not the LB's fault
		}
		if err != nil {
			s.Err = err.Error()
		} else {
			s.Instance, s.Pool, s.Version = a.Instance, a.Pool, a.Version
		}
		c.mu.Lock()
		c.in.Samples = append(c.in.Samples, s)
		c.mu.Unlock()
	}
}

// appVia GETs url/ once and decodes the demo app's answer.
func appVia(ctx context.Context, hc *http.Client, url string) (appAnswer, error) {
	var a appAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		return a, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("decode the answer: %w", err)
	}
	if a.Instance == "" || a.Version == "" {
		return a, fmt.Errorf("answer %+v names no instance or version", a)
	}
	return a, nil
}

// watch runs read as a blocking query loop from index idx until ctx ends,
// resetting the index when it goes backwards and backing off on errors.
func (c *checker) watch(ctx context.Context, what string, idx uint64, read func(uint64) (uint64, error)) {
	for ctx.Err() == nil {
		next, err := read(idx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.in.WatchErrors = append(c.in.WatchErrors, watchError{At: time.Now(), Msg: fmt.Sprintf("%s watch: %v", what, err)})
			c.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // backoff between failed queries
			}
			continue
		}
		if next < idx {
			next = 0
		}
		idx = next
	}
}

// readState reads cycler/web/state, blocking while its index is idx, and
// records a generation it has not seen yet.
func (c *checker) readState(ctx context.Context, cc *consulapi.Client, idx uint64) (uint64, error) {
	q := (&consulapi.QueryOptions{WaitIndex: idx, WaitTime: 5 * time.Second}).WithContext(ctx)
	pair, meta, err := cc.KV().Get(pool.StateKey(checkedService), q)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	if pair != nil {
		st, err := pool.ParseState(pair.Value)
		if err != nil {
			return 0, fmt.Errorf("state at index %d: %w", pair.ModifyIndex, err)
		}
		c.mu.Lock()
		if _, ok := c.in.Gens[st.Generation]; !ok {
			g := checkGen{Gen: st.Generation, Live: st.Live, Hidden: slices.Clone(st.Hidden), Versions: map[pool.Pool]string{}, Seen: now}
			for p, r := range st.Pools {
				g.Versions[p] = r.Version
			}
			c.in.Gens[st.Generation] = g
		}
		c.mu.Unlock()
	}
	return meta.LastIndex, nil
}

// readAcks reads every ack under cycler/web/lb/, blocking while the
// prefix's index is idx, and records the first sighting of each LB's
// generation.
func (c *checker) readAcks(ctx context.Context, cc *consulapi.Client, idx uint64) (uint64, error) {
	q := (&consulapi.QueryOptions{WaitIndex: idx, WaitTime: 5 * time.Second}).WithContext(ctx)
	pairs, meta, err := cc.KV().List(pool.AckPrefix(checkedService), q)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pairs {
		id := strings.TrimPrefix(p.Key, pool.AckPrefix(checkedService))
		a, err := lb.ParseAck(p.Value)
		if err != nil {
			c.in.WatchErrors = append(c.in.WatchErrors, watchError{At: now, Msg: fmt.Sprintf("ack of %s at index %d: %v", id, p.ModifyIndex, err)})
			continue
		}
		if a.Generation == 0 {
			continue
		}
		if !slices.ContainsFunc(c.in.Acks, func(k checkAck) bool { return k.LB == id && k.Gen == a.Generation }) {
			c.in.Acks = append(c.in.Acks, checkAck{LB: id, Gen: a.Generation, Seen: now, Applied: a.AppliedAt})
		}
	}
	return meta.LastIndex, nil
}

// checkSamples checks the invariants over what a checker recorded. It is
// pure: TestCheckerReportsViolations calls it with made-up histories.
//
// A generation counts as known from the earlier of the checker's first
// sight of its state document and its first sight of any LB's ack of it:
// an LB acks only what the leader published, and the two watches are
// separate blocking queries, so after a Consul restart the state watch
// can lag the ack watch by seconds. Both watches can lag the LBs, too:
// queries that reach a Consul server still electing itself are held and
// retried with a random stagger of up to about 0.4 s, and runs saw an LB
// apply a generation 40 ms after Consul came back while the checker
// learnt of it 0.6 to 1.2 s later. So two other times date a generation:
// an ack's own applied_at (an LB cannot apply a generation before the
// leader published it) and the leader's commit of the generation, from
// the cycle record (in.Published). Both only widen which generations a
// sample may have been served under; which generation an LB had acked
// when a sample started is still judged by when the checker saw the ack,
// which is never earlier than the LB's own claim. A generation only
// known from the cycle record (no document, no ack seen) is not added:
// its samples could not be checked against its document anyway.
// The generation an LB acked is always
// allowed for that LB's samples; what the ack allows is still judged by
// the state document (live pool minus hidden), and a sample that only a
// generation with no observed document could explain is counted as
// unchecked, never as passed.
func checkSamples(in checkInput) checkReport {
	r := checkReport{Total: len(in.Samples), Versions: map[string]map[string]int{}}
	for _, e := range in.WatchErrors {
		if slices.ContainsFunc(in.Outages, func(o outage) bool { return !e.At.Before(o.From) && !e.At.After(o.To) }) {
			r.OutageErrors++
			continue
		}
		r.Violations = append(r.Violations, fmt.Sprintf("the checker lost sight of Consul: %s %s", clock(e.At), e.Msg))
	}
	// acks per LB in the order seen.
	acks := map[string][]checkAck{}
	// known is when the checker first learnt of each generation.
	known := map[uint64]time.Time{}
	for g, d := range in.Gens {
		known[g] = d.Seen
	}
	for _, a := range in.Acks {
		acks[a.LB] = append(acks[a.LB], a)
		first := a.Seen
		if !a.Applied.IsZero() && a.Applied.Before(first) {
			first = a.Applied
		}
		if k, ok := known[a.Gen]; !ok || first.Before(k) {
			known[a.Gen] = first
		}
	}
	for g, at := range in.Published {
		if k, ok := known[g]; ok && at.Before(k) {
			known[g] = at
		}
	}
	gens := slices.Sorted(maps.Keys(known))
	unseen := map[uint64]bool{}
	for _, s := range in.Samples {
		if s.Err != "" {
			r.Failures = append(r.Failures, fmt.Sprintf("%s..%s via %s: %s", clock(s.Start), clock(s.End), s.LB, s.Err))
			continue
		}
		if r.Versions[s.LB] == nil {
			r.Versions[s.LB] = map[string]int{}
		}
		r.Versions[s.LB][s.Version]++

		// The newest generation the LB had acked when the sample started.
		var acked *checkAck
		for i, a := range acks[s.LB] {
			if a.Seen.After(s.Start) {
				break
			}
			acked = &acks[s.LB][i]
		}
		if acked == nil {
			r.Unchecked++
			continue
		}
		// The sample may have been served under the acked generation or
		// under any newer one the checker knew of by its end.
		matched := false
		var missing []uint64
		for _, g := range gens {
			if g < acked.Gen || g > acked.Gen && known[g].After(s.End.Add(in.Grace)) {
				continue
			}
			d, ok := in.Gens[g]
			if !ok {
				missing = append(missing, g)
				continue
			}
			if string(d.Live) == s.Pool && !slices.Contains(d.Hidden, s.Instance) {
				matched = true
				break
			}
		}
		switch {
		case matched:
			r.Checked++
			continue
		case len(missing) > 0:
			r.Unchecked++
			r.NoState++
			for _, g := range missing {
				unseen[g] = true
			}
			continue
		}
		r.Checked++
		g0 := in.Gens[acked.Gen]
		why := fmt.Sprintf("live pool %s", g0.Live)
		if slices.Contains(g0.Hidden, s.Instance) {
			why = fmt.Sprintf("hidden instances %v", g0.Hidden)
		}
		r.Violations = append(r.Violations, fmt.Sprintf(
			"%s..%s via %s: answered by %s (pool %s, version %s), but %s acked generation %d (%s) at %s, before the request started",
			clock(s.Start), clock(s.End), s.LB, s.Instance, s.Pool, s.Version, s.LB, acked.Gen, why, clock(acked.Seen)))
	}
	r.Unseen = slices.Sorted(maps.Keys(unseen))
	for _, g := range gens {
		line := fmt.Sprintf("generation %d: state document never seen", g)
		if d, ok := in.Gens[g]; ok {
			line = fmt.Sprintf("generation %d: live %s (versions %v), hidden %v, seen %s", g, d.Live, d.Versions, d.Hidden, clock(d.Seen))
		}
		if p, ok := in.Published[g]; ok {
			line += fmt.Sprintf("; committed by the leader at %s", clock(p))
		}
		for _, a := range in.Acks {
			if a.Gen == g {
				line += fmt.Sprintf("; %s acked at %s (applied_at %s)", a.LB, clock(a.Seen), clock(a.Applied))
			}
		}
		r.Generations = append(r.Generations, line)
	}
	return r
}

// clock formats t for reports.
func clock(t time.Time) string { return t.Format("15:04:05.000") }

// requireClean fails the test unless no request failed and no invariant
// was violated; it logs the counts and the generations either way.
func (r checkReport) requireClean(t *testing.T) {
	t.Helper()
	t.Logf("checker: %d samples (%d checked against an ack, %d unchecked: %d before any ack of their LB, %d only explainable by generations %v whose state document was never seen), %d failed, %d violations; %d watch errors in expected Consul outages left out; versions per LB %v",
		r.Total, r.Checked, r.Unchecked, r.Unchecked-r.NoState, r.NoState, r.Unseen, len(r.Failures), len(r.Violations), r.OutageErrors, r.Versions)
	for _, g := range r.Generations {
		t.Logf("checker: %s", g)
	}
	if len(r.Failures) == 0 && len(r.Violations) == 0 {
		if r.Checked == 0 {
			harness.Fatalf(t, "checker: none of %d samples could be checked against an LB's ack", r.Total)
		}
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "checker: %d of %d requests failed, %d invariant violations", len(r.Failures), r.Total, len(r.Violations))
	for _, list := range []struct {
		name  string
		items []string
	}{{"failures", r.Failures}, {"violations", r.Violations}} {
		if len(list.items) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nfirst %s:", list.name)
		for _, s := range list.items[:min(20, len(list.items))] {
			b.WriteString("\n  " + s)
		}
	}
	harness.Fatal(t, b.String())
}

// TestCheckerReportsViolations feeds checkSamples made-up histories, so the
// checker is shown to catch what it claims to catch. It needs no
// processes.
func TestCheckerReportsViolations(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Generation 1: blue live, green hidden. Generation 2 (seen at 1000 ms,
	// acked by lb-a at 1100 ms): green live, blue hidden.
	gens := map[uint64]checkGen{
		1: {Gen: 1, Live: pool.Blue, Hidden: []string{"web-green-1", "web-green-2"}, Seen: at(0)},
		2: {Gen: 2, Live: pool.Green, Hidden: []string{"web-blue-1", "web-blue-2"}, Seen: at(1000)},
	}
	acks := []checkAck{{LB: "lb-a", Gen: 1, Seen: at(10)}, {LB: "lb-a", Gen: 2, Seen: at(1100)}}
	ok := func(start, end int, inst string) checkSample {
		p := pool.Blue
		if strings.Contains(inst, "green") {
			p = pool.Green
		}
		return checkSample{Start: at(start), End: at(end), LB: "lb-a", Instance: inst, Pool: string(p), Version: "v-" + string(p)}
	}
	tests := []struct {
		name           string
		give           []checkSample
		giveAcks       []checkAck
		giveErrors     []watchError
		giveOutages    []outage
		wantFailures   int
		wantViolations int
		wantChecked    int
		wantViolation  string // a substring of the first violation
	}{
		{name: "clean switch", give: []checkSample{
			ok(20, 30, "web-blue-1"),
			ok(1050, 1060, "web-green-1"), // applied before the checker saw the ack
			ok(1080, 1090, "web-blue-2"),  // still the old set: allowed until the ack
			ok(1200, 1210, "web-green-2"),
		}, wantChecked: 4},
		{name: "hidden pool after the ack", give: []checkSample{
			ok(1200, 1210, "web-green-2"),
			ok(1300, 1310, "web-blue-1"),
		}, wantChecked: 2, wantViolations: 1, wantViolation: "answered by web-blue-1 (pool blue, version v-blue), but lb-a acked generation 2"},
		{name: "new pool before publication", give: []checkSample{
			ok(100, 110, "web-green-1"),
		}, wantChecked: 1, wantViolations: 1, wantViolation: "acked generation 1 (hidden instances [web-green-1 web-green-2])"},
		{name: "failed request", give: []checkSample{
			{Start: at(500), End: at(510), LB: "lb-a", Err: "status 502"},
			ok(520, 530, "web-blue-1"),
		}, wantFailures: 1, wantChecked: 1},
		{name: "before any ack", give: []checkSample{
			ok(0, 5, "web-green-1"),
		}},
		{name: "hidden instance of the live pool", giveAcks: []checkAck{{LB: "lb-a", Gen: 3, Seen: at(2100)}}, give: []checkSample{
			ok(2200, 2210, "web-green-2"),
			ok(2300, 2310, "web-green-1"),
		}, wantChecked: 2, wantViolations: 1, wantViolation: "answered by web-green-1"},
		{name: "watch error", giveErrors: []watchError{{At: at(500), Msg: "state watch: connection refused"}}, wantViolations: 1,
			wantViolation: "lost sight of Consul"},
		{name: "watch errors in and out of an expected outage",
			giveErrors: []watchError{
				{At: at(500), Msg: "state watch: connection refused"},
				{At: at(700), Msg: "acks watch: connection refused"},
				{At: at(900), Msg: "acks watch: connection refused"},
			},
			giveOutages:    []outage{{From: at(400), To: at(800)}},
			wantViolations: 1, wantViolation: "12:00:00.900 acks watch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := maps.Clone(gens)
			g[3] = checkGen{Gen: 3, Live: pool.Green, Hidden: []string{"web-green-1", "web-blue-1", "web-blue-2"}, Seen: at(2000)}
			in := checkInput{Samples: tt.give, Gens: g, Acks: append(slices.Clone(acks), tt.giveAcks...), Grace: 0,
				WatchErrors: tt.giveErrors, Outages: tt.giveOutages}
			r := checkSamples(in)
			if len(r.Failures) != tt.wantFailures || len(r.Violations) != tt.wantViolations || r.Checked != tt.wantChecked || r.Total != len(tt.give) {
				harness.Fatalf(t, "report %+v; want %d failures, %d violations, %d checked", r, tt.wantFailures, tt.wantViolations, tt.wantChecked)
			}
			if tt.wantViolation != "" && !strings.Contains(r.Violations[0], tt.wantViolation) {
				harness.Fatalf(t, "violation %q; want it to contain %q", r.Violations[0], tt.wantViolation)
			}
		})
	}
}

// TestCheckerLaggingStateWatch feeds checkSamples a history in which the
// checker's watch of the state document lags the LBs' acks of the same
// generation by more than the grace, as after a Consul restart: samples
// the acked generation allows must pass, a real violation in the same
// history must still be reported, and a generation whose document the
// checker never saw must leave its samples unchecked, not passed.
func TestCheckerLaggingStateWatch(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	sample := func(lb string, start int, inst string) checkSample {
		p := pool.Blue
		if strings.Contains(inst, "green") {
			p = pool.Green
		}
		return checkSample{Start: at(start), End: at(start + 10), LB: lb, Instance: inst, Pool: string(p), Version: "v-" + string(p)}
	}
	// Generation 2 (green live) is acked by lb-b at 1650 and by lb-a at
	// 1700, but the checker sees its state document only at 2900, 1.2 s
	// later. Generation 3 is acked by lb-a at 3500 and its document is
	// never seen.
	in := checkInput{
		Gens: map[uint64]checkGen{
			1: {Gen: 1, Live: pool.Blue, Hidden: []string{"web-green-1", "web-green-2"}, Seen: at(0)},
			2: {Gen: 2, Live: pool.Green, Hidden: []string{"web-blue-1", "web-blue-2"}, Seen: at(2900)},
		},
		Acks: []checkAck{
			{LB: "lb-a", Gen: 1, Seen: at(10)}, {LB: "lb-b", Gen: 1, Seen: at(10)},
			{LB: "lb-b", Gen: 2, Seen: at(1650)}, {LB: "lb-a", Gen: 2, Seen: at(1700)},
			{LB: "lb-a", Gen: 3, Seen: at(3500)},
		},
		Grace: 500 * time.Millisecond,
		Samples: []checkSample{
			sample("lb-a", 100, "web-blue-1"),   // generation 1: passes
			sample("lb-b", 1660, "web-green-1"), // after lb-b's ack of 2, before its document: passes
			sample("lb-a", 1690, "web-green-2"), // before lb-a's ack, generation 2 known from lb-b's: passes
			sample("lb-a", 1800, "web-green-1"), // lb-a acked 2: passes (the false positive this test is about)
			sample("lb-a", 2000, "web-blue-1"),  // lb-a acked 2, which hides web-blue-1: a violation
			sample("lb-b", 3000, "web-green-2"), // document seen by now: passes
			sample("lb-a", 3600, "web-green-1"), // acked 3, never seen: unchecked
		},
	}
	r := checkSamples(in)
	if r.Total != 7 || r.Checked != 6 || r.Unchecked != 1 || r.NoState != 1 || !slices.Equal(r.Unseen, []uint64{3}) || len(r.Failures) != 0 {
		harness.Fatalf(t, "report %+v; want 7 samples, 6 checked, 1 unchecked for generation 3, whose document was never seen", r)
	}
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0], "answered by web-blue-1 (pool blue, version v-blue), but lb-a acked generation 2 (hidden instances [web-blue-1 web-blue-2])") {
		harness.Fatalf(t, "violations %q; want exactly the one of web-blue-1 answering via lb-a after its ack of generation 2", r.Violations)
	}
	if !slices.ContainsFunc(r.Generations, func(s string) bool { return strings.HasPrefix(s, "generation 3: state document never seen") }) {
		harness.Fatalf(t, "generations %q; want generation 3 listed as never seen", r.Generations)
	}
}

// TestCheckerLaggingWatches feeds checkSamples the histories of two failed
// runs: after a Consul restart the LB applied generation 2 (green live) at
// 1000 ms, but both of the checker's watches learnt of generation 2 only
// at 1700 ms, more than the grace later. In the first, the ack the checker
// saw still had applied_at 1000; in the second, the LB had applied a
// larger set of generation 2 at 1600 before the checker saw its ack, so
// only the leader's commit time (995, from the cycle record) dates the
// generation early enough. Green answers after the LB's apply must pass; a
// green answer that ended more than the grace before the commit is still a
// violation, and so is blue after the checker saw the ack. Without the
// commit time, the second history shows the false positive.
func TestCheckerLaggingWatches(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	sample := func(start int, inst string) checkSample {
		p := pool.Blue
		if strings.Contains(inst, "green") {
			p = pool.Green
		}
		return checkSample{Start: at(start), End: at(start + 10), LB: "lb-a", Instance: inst, Pool: string(p), Version: "v-" + string(p)}
	}
	samples := []checkSample{
		sample(100, "web-green-1"),  // ends 885 ms before the commit: a violation
		sample(900, "web-blue-1"),   // the old set, before the apply: passes
		sample(1010, "web-green-1"), // served under 2 after the apply: passes (the false positive)
		sample(1500, "web-green-2"), // passes
		sample(1800, "web-blue-2"),  // after the checker saw the ack of 2: a violation
	}
	tests := []struct {
		name      string
		applied   int // applied_at of the ack of generation 2 the checker saw
		published map[uint64]time.Time
		want      []string // the start of each violation's text
	}{
		{name: "ack still dated by the first apply", applied: 1000,
			want: []string{"12:00:00.100..12:00:00.110 via lb-a: answered by web-green-1", "12:00:01.800..12:00:01.810 via lb-a: answered by web-blue-2"}},
		{name: "ack dated by a later apply, commit from the cycle record", applied: 1600, published: map[uint64]time.Time{2: at(995)},
			want: []string{"12:00:00.100..12:00:00.110 via lb-a: answered by web-green-1", "12:00:01.800..12:00:01.810 via lb-a: answered by web-blue-2"}},
		{name: "ack dated by a later apply, no cycle record", applied: 1600,
			want: []string{"12:00:00.100..12:00:00.110 via lb-a: answered by web-green-1", "12:00:01.010..12:00:01.020 via lb-a: answered by web-green-1",
				"12:00:01.800..12:00:01.810 via lb-a: answered by web-blue-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := checkInput{
				Gens: map[uint64]checkGen{
					1: {Gen: 1, Live: pool.Blue, Hidden: []string{"web-green-1", "web-green-2"}, Seen: at(0)},
					2: {Gen: 2, Live: pool.Green, Hidden: []string{"web-blue-1", "web-blue-2"}, Seen: at(1700)},
				},
				Acks: []checkAck{
					{LB: "lb-a", Gen: 1, Seen: at(10), Applied: at(5)},
					{LB: "lb-a", Gen: 2, Seen: at(1720), Applied: at(tt.applied)},
				},
				Published: tt.published,
				Grace:     500 * time.Millisecond,
				Samples:   samples,
			}
			r := checkSamples(in)
			if r.Total != 5 || r.Checked != 5 || len(r.Failures) != 0 || len(r.Violations) != len(tt.want) {
				harness.Fatalf(t, "report %+v; want 5 samples checked and %d violations", r, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(r.Violations[i], w) {
					harness.Errorf(t, "violation %d is %q; want it to start with %q", i, r.Violations[i], w)
				}
			}
		})
	}
}

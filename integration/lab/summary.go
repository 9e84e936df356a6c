package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cyclerhq/cycler/cycle"
)

// maxStrip is the most characters a timeline row may have; longer runs use
// buckets of several seconds.
const maxStrip = 100

// deployRun is one `cyclerctl deploy` the lab ran.
type deployRun struct {
	// Version is the package's version; Server the node id deploy talked to.
	Version, Server string
	// ID is the cycle id cyclerctl reported ("" if it never started one).
	ID string
	// Exit is cyclerctl's exit status.
	Exit int
	// Returned is when cyclerctl exited, since the load started.
	Returned time.Duration
	// Cycle is the cycle as `cyclerctl --json history --cycle ID` shows it;
	// nil if it could not be read (HistoryErr says why).
	Cycle      *cycle.Cycle
	HistoryErr error
}

// report is everything the summary is made of.
type report struct {
	targets []target
	rate    int
	samples []sample
	skipped []int
	ran     time.Duration
	// loadStart turns the cycles' wall-clock phase times into offsets.
	loadStart time.Time
	deploys   []deployRun
	// want is the version every LB must serve at the end.
	want string
}

// lbStats is one LB's share of the samples.
type lbStats struct {
	name                    string
	total, ok, notLive, bad int
	versions                map[string]int
	// instances counts answers per "instance (version)".
	instances map[string]int
	// firstOK is when the LB first answered; requests failing before it are
	// "not live yet" (no version was deployed), after it they are failures.
	firstOK  time.Duration
	failures []sample
	// latencies of the answered requests, sorted.
	latencies []time.Duration
	// wantAfter counts the answers after the last deploy returned, and
	// otherAfter those of them from another version than want.
	wantAfter, otherAfter int
}

// analyze splits the samples per LB.
func analyze(r report) []*lbStats {
	stats := make([]*lbStats, len(r.targets))
	for i, tg := range r.targets {
		stats[i] = &lbStats{name: tg.name, versions: map[string]int{}, instances: map[string]int{}, firstOK: -1}
	}
	samples := slices.Clone(r.samples)
	slices.SortFunc(samples, func(a, b sample) int { return int(a.At - b.At) })
	var end time.Duration = -1
	if n := len(r.deploys); n > 0 {
		end = r.deploys[n-1].Returned
	}
	for _, s := range samples {
		st := stats[s.LB]
		st.total++
		if s.Err == "" {
			st.ok++
			st.versions[s.Version]++
			st.instances[s.Instance+" ("+s.Version+")"]++
			st.latencies = append(st.latencies, s.Latency)
			if st.firstOK < 0 {
				st.firstOK = s.At
			}
			if end >= 0 && s.At > end {
				if s.Version == r.want {
					st.wantAfter++
				} else {
					st.otherAfter++
				}
			}
			continue
		}
		if st.firstOK < 0 {
			st.notLive++
			continue
		}
		st.bad++
		st.failures = append(st.failures, s)
	}
	for _, st := range stats {
		slices.Sort(st.latencies)
	}
	return stats
}

// problems lists why the run did not show what it should: a deploy that did
// not go live, a failed request, an LB that does not serve want at the end.
func problems(r report, stats []*lbStats) []string {
	var out []string
	for _, d := range r.deploys {
		if d.Exit != 0 {
			out = append(out, fmt.Sprintf("cyclerctl deploy of %s exited %d, want 0 (live)", d.Version, d.Exit))
		}
	}
	for _, st := range stats {
		if st.bad > 0 {
			out = append(out, fmt.Sprintf("%s: %d failed requests after it first answered, want 0", st.name, st.bad))
		}
		if st.wantAfter == 0 || st.otherAfter > 0 {
			out = append(out, fmt.Sprintf("%s: after the last deploy it answered %s %d times and other versions %d times, want only %s",
				st.name, r.want, st.wantAfter, st.otherAfter, r.want))
		}
	}
	return out
}

// writeSummary prints the summary for a newcomer and returns the problems
// (none when the demo showed what it should).
func writeSummary(w io.Writer, r report) []string {
	stats := analyze(r)
	fmt.Fprintf(w, "\n=== cycler demo: what happened ===\n\n")
	fmt.Fprintf(w, "Traffic: %d requests/s through each load balancer for %s (GET /, keep-alive connections, no retries).\n",
		r.rate, r.ran.Round(time.Second))
	fmt.Fprintf(w, "The first cycle is the very first deploy, so until it switched there was no version to serve (\"not live yet\").\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LB\tKIND\tREQUESTS\tANSWERED\tFAILED\tNOT LIVE YET\tVERSIONS SERVED\tLATENCY p50/p99/max")
	for i, st := range stats {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", st.name, r.targets[i].kind, st.total, st.ok, st.bad, st.notLive,
			versionCounts(st.versions), latencies(st.latencies))
		if r.skipped[i] > 0 {
			fmt.Fprintf(tw, "\t(%d ticks skipped: %d requests were already in flight)\t\t\t\t\t\n", r.skipped[i], maxInFlight)
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, st := range stats {
		fmt.Fprintf(w, "%s's answers came from %s\n", st.name, versionCounts(st.instances))
	}
	for _, st := range stats {
		for j, f := range st.failures {
			if j == 5 {
				fmt.Fprintf(w, "  %s: ... and %d more failures\n", st.name, len(st.failures)-j)
				break
			}
			fmt.Fprintf(w, "  %s failed at %s: %s\n", st.name, clock(f.At), f.Err)
		}
	}

	writeTimeline(w, r, stats)
	writeCycles(w, r)

	probs := problems(r, stats)
	fmt.Fprintln(w)
	if len(probs) == 0 {
		var names []string
		for _, st := range stats {
			names = append(names, st.name)
		}
		fmt.Fprintf(w, "RESULT: OK. 0 failed requests; %s serve %s.\n", strings.Join(names, " and "), r.want)
	} else {
		fmt.Fprintln(w, "RESULT: FAILED.")
		for _, p := range probs {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	return probs
}

// versionCounts is "v1 1200, v2 800".
func versionCounts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", v, m[v]))
	}
	return strings.Join(parts, ", ")
}

// latencies is "2ms/15ms/40ms" from sorted durations.
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	q := func(p float64) string { return shortDur(d[int(p*float64(len(d)-1))]) }
	return q(0.5) + "/" + q(0.99) + "/" + shortDur(d[len(d)-1])
}

func shortDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// clock is an offset since the load started, as mm:ss.
func clock(d time.Duration) string {
	s := int(d / time.Second)
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

// bucket is what one LB answered in one time bucket.
type bucket struct {
	versions map[string]bool
	notLive  bool
	failed   bool
	any      bool
}

// label names a bucket for the segment list.
func (b bucket) label() string {
	switch {
	case !b.any:
		return "no requests"
	case b.failed:
		return "FAILED requests"
	case len(b.versions) == 0 && b.notLive:
		return "not live yet"
	}
	l := strings.Join(slices.Sorted(maps.Keys(b.versions)), "+")
	if b.notLive {
		l += " goes live"
	}
	return l
}

// writeTimeline prints which version each LB served over time: one
// character per bucket, then the same as segments.
func writeTimeline(w io.Writer, r report, stats []*lbStats) {
	step := time.Second
	for r.ran > time.Duration(maxStrip)*step {
		step += time.Second
	}
	n := int(r.ran/step) + 1
	rows := make([][]bucket, len(r.targets))
	for i := range rows {
		rows[i] = make([]bucket, n)
		for j := range rows[i] {
			rows[i][j].versions = map[string]bool{}
		}
	}
	var order []string // versions in order of first answer
	samples := slices.Clone(r.samples)
	slices.SortFunc(samples, func(a, b sample) int { return int(a.At - b.At) })
	for _, s := range samples {
		b := &rows[s.LB][min(int(s.At/step), n-1)]
		b.any = true
		switch {
		case s.Err == "":
			b.versions[s.Version] = true
			if !slices.Contains(order, s.Version) {
				order = append(order, s.Version)
			}
		case stats[s.LB].firstOK < 0 || s.At < stats[s.LB].firstOK:
			b.notLive = true
		default:
			b.failed = true
		}
	}
	char := func(b bucket) byte {
		switch {
		case !b.any:
			return ' '
		case b.failed:
			return 'X'
		case len(b.versions) > 1:
			return '+'
		case len(b.versions) == 1:
			for v := range b.versions {
				if i := slices.Index(order, v); i < 9 {
					return byte('1' + i)
				}
			}
			return '?'
		}
		return '.'
	}

	width := 0
	for _, tg := range r.targets {
		width = max(width, len(tg.name))
	}
	width = max(width, len("switch"))
	fmt.Fprintf(w, "\nWhich version each LB served, one character per %s since the traffic started:\n", step)
	var legend []string
	for i, v := range order {
		legend = append(legend, fmt.Sprintf("%d = %s", i+1, v))
	}
	legend = append(legend, "+ = both in that second", ". = not live yet", "X = a failed request", "^ = a cycle's switch started")
	fmt.Fprintf(w, "(%s)\n\n", strings.Join(legend, ", "))

	// The time axis: a mark every 10 buckets.
	axis := []byte(strings.Repeat(" ", n))
	for j := 0; j < n; j += 10 {
		label := clock(time.Duration(j) * step)
		copy(axis[j:], label[:min(len(label), n-j)])
	}
	fmt.Fprintf(w, "%-*s  %s\n", width, "", strings.TrimRight(string(axis), " "))
	for i, row := range rows {
		line := make([]byte, n)
		for j, b := range row {
			line[j] = char(b)
		}
		fmt.Fprintf(w, "%-*s  %s\n", width, r.targets[i].name, strings.TrimRight(string(line), " "))
	}
	marks := []byte(strings.Repeat(" ", n))
	var switches []string
	for _, d := range r.deploys {
		if at, ok := switchAt(d, r.loadStart); ok {
			if j := int(at / step); j >= 0 && j < n {
				marks[j] = '^'
			}
			switches = append(switches, fmt.Sprintf("%s (%s) at %s", d.ID, d.Version, clock(at)))
		}
	}
	fmt.Fprintf(w, "%-*s  %s  %s\n", width, "switch", strings.TrimRight(string(marks), " "), strings.Join(switches, ", "))

	fmt.Fprintln(w)
	for i, row := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", width, r.targets[i].name, segments(row, step))
	}
}

// segments is "00:00-00:12 v1, 00:12-00:13 v1+v2, 00:13-01:02 v2".
func segments(row []bucket, step time.Duration) string {
	var parts []string
	start := 0
	for j := 1; j <= len(row); j++ {
		if j < len(row) && row[j].label() == row[start].label() {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s-%s %s", clock(time.Duration(start)*step), clock(time.Duration(j)*step), row[start].label()))
		start = j
	}
	return strings.Join(parts, ", ")
}

// switchAt is when d's cycle entered its switch phase, since the load started.
func switchAt(d deployRun, loadStart time.Time) (time.Duration, bool) {
	if d.Cycle == nil {
		return 0, false
	}
	for _, s := range d.Cycle.Phases {
		if s.Phase == cycle.Switch {
			return s.Start.Sub(loadStart), true
		}
	}
	return 0, false
}

// phaseOrder is the order of the phase columns.
var phaseOrder = []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby, cycle.FlipBack}

// writeCycles prints each cycle's phase timings.
func writeCycles(w io.Writer, r report) {
	fmt.Fprintf(w, "\nThe cycles, with each phase's duration (from `cyclerctl --json history --cycle ID`):\n\n")
	// Only the phases some cycle went through get a column.
	var cols []cycle.Phase
	for _, p := range phaseOrder {
		for _, d := range r.deploys {
			if d.Cycle != nil && slices.ContainsFunc(d.Cycle.Phases, func(s cycle.Span) bool { return s.Phase == p }) {
				cols = append(cols, p)
				break
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"CYCLE", "PACKAGE", "VIA", "POOLS", "RESULT"}
	for _, p := range cols {
		head = append(head, string(p))
	}
	fmt.Fprintln(tw, strings.Join(append(head, "TOTAL", "STARTED"), "\t"))
	for _, d := range r.deploys {
		if d.Cycle == nil {
			why := "cyclerctl started no cycle"
			if d.HistoryErr != nil {
				why = d.HistoryErr.Error()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\texit %d\t%s\n", orDash(d.ID), d.Version, d.Server, d.Exit, why)
			continue
		}
		c := d.Cycle
		from := c.From
		if from == "" {
			from = "none"
		}
		row := []string{c.ID, c.Package.Version, d.Server, from + " -> " + c.Target, fmt.Sprintf("%s (exit %d)", c.Phase, d.Exit)}
		for _, p := range cols {
			var sum time.Duration
			seen := false
			for _, s := range c.Phases {
				if s.Phase == p {
					sum += s.Duration()
					seen = true
				}
			}
			if seen {
				row = append(row, fmt.Sprintf("%.1fs", sum.Seconds()))
			} else {
				row = append(row, "-")
			}
		}
		total := "-"
		if !c.FinishedAt.IsZero() {
			total = fmt.Sprintf("%.1fs", c.FinishedAt.Sub(c.CreatedAt).Seconds())
		}
		row = append(row, total, clock(c.CreatedAt.Sub(r.loadStart)))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\n(hide: the target pool leaves the LBs and drains; deploy: install and restart on the hidden hosts;")
	fmt.Fprintln(w, " smoke: checks against each hidden host directly; switch: every LB acks the new pool, then a probe")
	fmt.Fprintln(w, " through each; bake: checks through the LBs; standby: the old pool stays warm for an instant rollback)")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

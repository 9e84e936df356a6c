// Command benchdoc writes docs/benchmarks.md, the summary of the benchmark
// reports that `make bench` writes beside it (docs/benchmarks-*.json). It
// measures nothing itself: every figure comes from a report's JSON, with
// that report's date, command and machine, so the summary never drifts
// from the runs it summarizes. A report that is missing is listed as not
// run, not left out.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// report is one benchmark report, as `make bench` runs them.
type report struct {
	// Name is the file stem: docs/benchmarks-<Name>.{md,json}.
	Name string
	// Target is the make target that rewrites it.
	Target string
	// What the report measures, in a line.
	What string
	// figures turns the report's JSON into summary rows beyond its goals.
	figures func(doc map[string]any) []row
}

// row is one line of a report's summary table.
type row struct {
	Figure, Value, Peer, Ratio string
}

// goal is one goal a report checked. Reports write it as {goal, met,
// detail}, or as {what, goal, measured, unit, met}.
type goal struct {
	Goal     string  `json:"goal"`
	Met      bool    `json:"met"`
	Detail   string  `json:"detail"`
	What     string  `json:"what"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
}

var reports = []report{
	{Name: "cycle", Target: "make bench-cycle", What: "failed requests and latency through nginx (dynamic and reload) and varnish during full cycles, against an in-place deploy", figures: cycleRows},
	{Name: "scale", Target: "make bench-scale", What: "orchestration overhead at 4, 50 and 500 hosts, server RSS, and resume time after kill -9 of the leader", figures: scaleRows},
	{Name: "lb", Target: "make bench-lb", What: "LB switch latency and failed requests of cyclerd lb against consul-template", figures: lbRows},
	{Name: "raft", Target: "make bench-raft", What: "Raft failover and write throughput of real cyclerd servers", figures: raftRows},
	{Name: "install", Target: "make bench-install", What: "a 50 MiB package installed on 20 agents at once against curl | tar xz", figures: installRows},
}

func main() {
	dir := flag.String("dir", "docs", "directory holding the benchmark reports")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	var b bytes.Buffer
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("This page is written by `make bench-doc` (the last step of `make bench`) from the JSON reports beside it.\n")
	b.WriteString("Each report was measured by its own make target, on the machine and at the date it states; every figure is\n")
	b.WriteString("given with the peer measured in the same run. Re-run `make bench` to reproduce all of them, or one target for one report.\n\n")

	var goals []string
	var sections bytes.Buffer
	for _, r := range reports {
		doc, err := readReport(filepath.Join(dir, "benchmarks-"+r.Name+".json"))
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(&sections, "## %s\n\nNot run yet: `%s` writes docs/benchmarks-%s.md.\n\n", r.Name, r.Target, r.Name)
			goals = append(goals, fmt.Sprintf("| %s | (report not run) | | |", r.Name))
			continue
		}
		if err != nil {
			return err
		}
		title := titleOf(filepath.Join(dir, "benchmarks-"+r.Name+".md"), r.Name)
		fmt.Fprintf(&sections, "## %s\n\n%s. Full report: [benchmarks-%s.md](benchmarks-%s.md).\n\n", title, upperFirst(r.What), r.Name, r.Name)
		fmt.Fprintf(&sections, "- Command: `%s` (`%s`)\n", str(doc["command"]), r.Target)
		fmt.Fprintf(&sections, "- Measured: %s on %s\n\n", str(doc["date"]), machine(doc))
		if rows := r.figures(doc); len(rows) > 0 {
			sections.WriteString("| figure | cycler | peer (same run) | ratio |\n|---|---|---|---|\n")
			for _, x := range rows {
				fmt.Fprintf(&sections, "| %s | %s | %s | %s |\n", x.Figure, x.Value, orDash(x.Peer), orDash(x.Ratio))
			}
			sections.WriteString("\n")
		}
		for _, g := range goalsOf(doc) {
			verdict := "met"
			if !g.Met {
				verdict = "**missed**"
			}
			goals = append(goals, fmt.Sprintf("| %s | %s | %s | %s |", r.Name, g.Goal, verdict, g.Detail))
		}
	}
	b.WriteString("## Goals\n\n| report | goal | result | measured |\n|---|---|---|---|\n")
	b.WriteString(strings.Join(goals, "\n"))
	b.WriteString("\n\n")
	b.Write(sections.Bytes())
	out := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Println("wrote", out)
	return nil
}

func readReport(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s is not a JSON report: %w; re-run its make target", path, err)
	}
	return doc, nil
}

// titleOf is the first heading of the report's markdown, or name.
func titleOf(path, name string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return name
	}
	first, _, _ := strings.Cut(string(data), "\n")
	if t, ok := strings.CutPrefix(first, "# "); ok {
		return t
	}
	return name
}

// goalsOf reads the report's "goals" list, which every report that has
// goals writes as [{goal, met, detail}].
func goalsOf(doc map[string]any) []goal {
	raw, err := json.Marshal(doc["goals"])
	if err != nil {
		return nil
	}
	var out []goal
	_ = json.Unmarshal(raw, &out)
	for i, g := range out {
		if g.What != "" {
			out[i].Goal = g.What + " " + g.Goal
			out[i].Detail = fmt.Sprintf("%s %s", str(g.Measured), g.Unit)
		}
	}
	return out
}

// headlineRows reads a "headline" list of {figure, value, peer, ratio},
// the summary rows the newer reports write for this page.
func headlineRows(doc map[string]any) []row {
	raw, err := json.Marshal(doc["headline"])
	if err != nil {
		return nil
	}
	var in []struct {
		Figure string `json:"figure"`
		Value  any    `json:"value"`
		Peer   any    `json:"peer"`
		Ratio  any    `json:"ratio"`
	}
	_ = json.Unmarshal(raw, &in)
	var out []row
	for _, h := range in {
		out = append(out, row{Figure: h.Figure, Value: str(h.Value), Peer: str(h.Peer), Ratio: str(h.Ratio)})
	}
	return out
}

// cycleRows compares each LB's failed requests and latency (wrk, then
// hey) during the cycles with the in-place deploy of the same run.
func cycleRows(doc map[string]any) []row {
	phase := func(key string) map[string]map[string]any {
		out := map[string]map[string]any{}
		p, _ := doc[key].(map[string]any)
		lbs, _ := p["lbs"].([]any)
		for _, x := range lbs {
			m, _ := x.(map[string]any)
			out[str(m["name"])] = m
		}
		return out
	}
	cyc, inp := phase("cycler"), phase("in_place")
	deploys := str(doc["deploys_per_phase"])
	var out []row
	for _, name := range sortedNames(cyc) {
		c, p := cyc[name], inp[name]
		for _, client := range []string{"wrk", "hey"} {
			cs, _ := c[client].(map[string]any)
			ps, _ := p[client].(map[string]any)
			if cs == nil {
				continue
			}
			out = append(out, row{
				Figure: fmt.Sprintf("failed requests, %s, %s, %s deploys", name, client, deploys),
				Value:  fmt.Sprintf("%s of %s", str(cs["failed"]), str(cs["requests"])),
				Peer:   fmt.Sprintf("%s of %s (in-place deploy)", str(ps["failed"]), str(ps["requests"])),
				Ratio:  failRatio(cs, ps),
			})
		}
		out = append(out, row{Figure: fmt.Sprintf("wrk latency p50 / p99, %s", name),
			Value: fmt.Sprintf("%s / %s ms", str(c["wrk_latency_p50_ms"]), str(c["wrk_latency_p99_ms"])),
			Peer:  fmt.Sprintf("%s / %s ms (in-place deploy)", str(p["wrk_latency_p50_ms"]), str(p["wrk_latency_p99_ms"]))})
	}
	return out
}

// failRatio is cycler's failure rate over the peer's, "0x" when cycler
// failed none, "-" when the peer failed none either.
func failRatio(c, p map[string]any) string {
	cf, _ := c["failed"].(float64)
	cr, _ := c["requests"].(float64)
	pf, _ := p["failed"].(float64)
	pr, _ := p["requests"].(float64)
	switch {
	case cr == 0 || pr == 0 || pf == 0:
		return "-"
	case cf == 0:
		return "0x"
	}
	return fmt.Sprintf("%.3fx", (cf/cr)/(pf/pr))
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// scaleRows reads the overhead per scale against the plain-install peer,
// the servers' RSS, and the resume time against Raft's own failover.
func scaleRows(doc map[string]any) []row {
	if h := headlineRows(doc); len(h) > 0 {
		return h
	}
	var out []row
	scales, _ := doc["scales"].([]any)
	for _, x := range scales {
		m, _ := x.(map[string]any)
		out = append(out, row{Figure: fmt.Sprintf("orchestration overhead per cycle, %s hosts (p50)", str(m["hosts"])),
			Value: str(m["overhead_p50_ms"]) + " ms", Peer: str(m["peer_p50_ms"]) + " ms (the same installs, no cycle)", Ratio: str(m["ratio"])})
	}
	rss, _ := doc["server_rss"].([]any)
	for _, x := range rss {
		m, _ := x.(map[string]any)
		if str(m["role"]) != "leader" {
			continue
		}
		out = append(out, row{Figure: fmt.Sprintf("leader VmRSS, %s hosts (%s)", str(m["hosts"]), str(m["when"])), Value: str(m["vmrss_mb"]) + " MB"})
	}
	res, _ := doc["resume"].(map[string]any)
	if res != nil {
		out = append(out, row{Figure: fmt.Sprintf("resume after kill -9 of the leader, %s hosts (p50 / max)", str(res["hosts"])),
			Value: fmt.Sprintf("%s / %s ms", str(res["resume_p50_ms"]), str(res["resume_max_ms"])),
			Peer:  fmt.Sprintf("%s / %s ms (Raft failover alone)", str(res["raft_p50_ms"]), str(res["raft_max_ms"]))})
	}
	return out
}

func raftRows(doc map[string]any) []row {
	f, _ := doc["failover"].(map[string]any)
	out := []row{{Figure: fmt.Sprintf("kill -9 of the leader to the next committed write, p50 / p99 (%s kills)", str(f["kills"])),
		Value: fmt.Sprintf("%s / %s ms", str(f["p50_ms"]), str(f["p99_ms"]))}}
	tp, _ := doc["throughput"].([]any)
	for _, x := range tp {
		m, _ := x.(map[string]any)
		out = append(out, row{Figure: fmt.Sprintf("writes/s, %s, %s client(s), to %s", str(m["cluster"]), str(m["clients"]), str(m["target"])),
			Value: str(m["writes_per_sec"])})
	}
	return out
}

func lbRows(doc map[string]any) []row {
	rows, _ := doc["rows"].([]any)
	var peerP50 string
	for _, x := range rows {
		m, _ := x.(map[string]any)
		if strings.HasPrefix(str(m["name"]), "consul-template") {
			peerP50 = str(m["p50_ms"])
		}
	}
	var out []row
	for _, x := range rows {
		m, _ := x.(map[string]any)
		name := str(m["name"])
		if strings.HasPrefix(name, "consul-template") {
			continue
		}
		out = append(out, row{Figure: "switch latency p50, " + name, Value: str(m["p50_ms"]) + " ms",
			Peer: peerP50 + " ms (consul-template + nginx reload)", Ratio: str(m["p50_vs_consul_template"])})
	}
	return out
}

func installRows(doc map[string]any) []row {
	in, _ := doc["install"].(map[string]any)
	fl, _ := doc["floor"].(map[string]any)
	return []row{
		{Figure: fmt.Sprintf("wall time, %s agents at once", str(doc["agents"])), Value: str(in["wall_ms"]) + " ms",
			Peer: str(fl["wall_ms"]) + " ms (curl | tar xz)", Ratio: str(doc["ratio"])},
		{Figure: "server peak RSS", Value: str(doc["server_peak_rss_mb"]) + " MB"},
	}
}

func machine(doc map[string]any) string {
	m, _ := doc["machine"].(map[string]any)
	if m == nil {
		return "(machine not recorded)"
	}
	return fmt.Sprintf("%s, %s cores, %s, kernel %s, %s", str(m["cpu_model"]), str(m["nproc"]), str(m["os_arch"]), str(m["kernel"]), str(m["go_version"]))
}

// str formats a JSON value for a table cell.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%.2f", x)
	case bool:
		return fmt.Sprintf("%t", x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunSummarizesGoalsAndMissingReports(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("benchmarks-scale.json", `{"command":"make it","date":"2026-11-21","machine":{"nproc":2},
		"headline":[{"figure":"failed requests","value":0,"peer":1234,"ratio":"0x"}],
		"goals":[{"goal":"0 failed","met":true,"detail":"0 of 100000"},{"goal":"fast","met":false,"detail":"slow"}]}`)
	write("benchmarks-scale.md", "# Scale benchmark\n")
	if err := run(dir); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| scale | 0 failed | met | 0 of 100000 |",
		"| scale | fast | **missed** | slow |",
		"| failed requests | 0 | 1234 | 0x |",
		"## Scale benchmark",
		"Not run yet: `make bench-cycle`",
		"- Command: `make it`",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestRunRefusesABrokenReport(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "benchmarks-raft.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(dir)
	if err == nil || !strings.Contains(err.Error(), "benchmarks-raft.json is not a JSON report") {
		t.Fatalf("run = %v, want an error naming the broken report", err)
	}
}

func TestCycleRowsComparePerLB(t *testing.T) {
	doc := map[string]any{"deploys_per_phase": 5.0,
		"cycler":   map[string]any{"lbs": []any{map[string]any{"name": "varnish", "wrk": map[string]any{"failed": 0.0, "requests": 20000.0}}}},
		"in_place": map[string]any{"lbs": []any{map[string]any{"name": "varnish", "wrk": map[string]any{"failed": 500.0, "requests": 20000.0}}}},
	}
	rows := cycleRows(doc)
	if len(rows) != 2 || rows[0].Value != "0 of 20000" || rows[0].Peer != "500 of 20000 (in-place deploy)" || rows[0].Ratio != "0x" {
		t.Fatalf("rows %+v", rows)
	}
}

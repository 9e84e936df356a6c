package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/smoke"
)

// detailedCycle is a finished deploy with host, check and LB results.
func detailedCycle() cycle.Cycle {
	c := last(script(smokeFails, cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby, cycle.Done))
	c.Forced, c.HideGeneration, c.SwitchGeneration = true, 5, 6
	c.Hosts[0].Address, c.Hosts[0].Port = "10.0.0.1", 8080
	c.Hosts[0].Deploy = &cycle.Step{OK: true, StartedAt: t0, FinishedAt: t0.Add(12 * time.Second)}
	c.Hosts[0].Checks = []smoke.CheckResult{{Name: "http", Passed: true, Attempts: 1, DurationMS: 20}}
	c.Hosts[1].Deploy = &cycle.Step{OK: true, StartedAt: t0, FinishedAt: t0.Add(11 * time.Second)}
	c.LBs = []cycle.LB{{ID: "lb-1", Generation: 6, AckMS: 120, AckedAt: t0.Add(5 * time.Second), Probe: "ok"}}
	c.BakeRounds = 10
	return c
}

func TestRenderHistory(t *testing.T) {
	running := script(nil, cycle.Preflight, cycle.Hide, cycle.Deploy)[2]
	running.ID, running.Paused = "web-4", true
	first := last(script(nil, cycle.Preflight, cycle.Aborted))
	first.ID, first.From = "web-1", ""
	var b bytes.Buffer
	if err := renderHistory(&b, []cycle.Cycle{running, detailedCycle(), first}, time.UTC); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	tests := []struct {
		give int
		want []string
	}{
		{give: 0, want: []string{"ID", "KIND", "TRIGGER", "VERSION", "FROM->TARGET", "PHASE", "STARTED", "DURATION", "FAILURES"}},
		{give: 1, want: []string{"web-4", "deploy", "manual", "1.2.3", "blue->green", "deploy (paused)", "2026-03-04T12:00:00Z", "running", "0"}},
		{give: 2, want: []string{"web-3", "done", "7s", "1"}},
		{give: 3, want: []string{"web-1", "none->green", "aborted", "1s"}},
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), b.String())
	}
	for _, tt := range tests {
		for _, w := range tt.want {
			if !strings.Contains(lines[tt.give], w) {
				t.Errorf("line %d lacks %q: %s", tt.give, w, lines[tt.give])
			}
		}
	}
}

func TestRenderCycle(t *testing.T) {
	var b bytes.Buffer
	if err := renderCycle(&b, detailedCycle(), time.UTC); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"web-3 (rev 8)",
		"deploy, trigger manual, by ops, forced outside the deploy windows",
		"1.2.3 (abababababab)", "1.2.2 (cdcdcdcdcdcd)", "blue -> green",
		"finished     2026-03-04T12:00:07Z (7s)",
		"base 4, hide 5, switch 6, flip back -",
		"bake         10 rounds, 0 failures",
		"PHASE", "smoke      2026-03-04T12:00:03Z  1s", "done       2026-03-04T12:00:07Z  -",
		"HOST", "web-green-1  green  10.0.0.1:8080  ok 12s  ok 1s", "failed 3s: 1 of 1 checks failed  yes",
		"CHECK", "web-green-1  http   yes     1         20ms", "web-green-2  http   no      3         0s        status 500, want 200",
		"LB", "lb-1  6           120ms  2026-03-04T12:00:05Z  ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("detail lacks %q:\n%s", want, out)
		}
	}
}

func TestHistoryCommand(t *testing.T) {
	var mu sync.Mutex
	var query string
	addr := startFake(t, func(s *api.Server) {
		s.Handle("GET /v1/cycles", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			mu.Lock()
			query = r.URL.RawQuery
			mu.Unlock()
			return api.WriteJSON(w, http.StatusOK, []cycle.Cycle{detailedCycle()})
		})
		s.Handle("GET /v1/cycles/{id}", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			if r.PathValue("id") != "web-3" {
				return api.NotFound("no cycle %q; list them with cyclerctl history", r.PathValue("id"))
			}
			return api.WriteJSON(w, http.StatusOK, detailedCycle())
		})
	})
	base := []string{"--addr", addr, "--token", testToken}
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		want      string
		wantQuery string
	}{
		{name: "all", args: []string{"history"}, want: "blue->green", wantQuery: "limit=20"},
		{name: "service", args: []string{"history", "web", "--limit", "5"}, want: "web-3", wantQuery: "limit=5&service=web"},
		{name: "one", args: []string{"history", "--cycle", "web-3"}, want: "lb-1"},
		{name: "unknown", args: []string{"history", "--cycle", "web-9"}, wantCode: 1, want: `cycle web-9: not_found: no cycle "web-9"`},
		{name: "both", args: []string{"history", "web", "--cycle", "web-3"}, wantCode: 1, want: "give either SERVICE (web) or --cycle web-3, not both"},
		{name: "bad limit", args: []string{"history", "--limit", "0"}, wantCode: 1, want: "--limit 0 is too small; use 1 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			query = ""
			mu.Unlock()
			out, errOut, code := ctl(t, append(base, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("code %d, want %d and %q\nstdout: %s\nstderr: %s", code, tt.wantCode, tt.want, out, errOut)
			}
			mu.Lock()
			defer mu.Unlock()
			if query != tt.wantQuery {
				t.Errorf("query %q, want %q", query, tt.wantQuery)
			}
		})
	}
	out, _, code := ctl(t, append(base, "--json", "history")...)
	var list []cycle.Cycle
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "web-3" {
		t.Fatalf("--json history: code %d, %s", code, out)
	}
}

func TestCycleActions(t *testing.T) {
	var mu sync.Mutex
	var reason string
	addr := startFake(t, func(s *api.Server) {
		s.Handle("POST /v1/cycles/{id}/{verb}", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			c := script(nil, cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake)[3]
			if r.PathValue("id") == "web-1" {
				return api.Conflict("cycle web-1 has finished (done)")
			}
			switch r.PathValue("verb") {
			case "abort":
				var req cycle.AbortRequest
				if err := api.DecodeJSON(r, &req); err != nil {
					return err
				}
				mu.Lock()
				reason = req.Reason
				mu.Unlock()
				c.AbortRequested = req.Reason
			case "pause":
				c.Paused = true
			case "resume":
			default:
				return api.NotFound("no such action")
			}
			return api.WriteJSON(w, http.StatusOK, c)
		})
	})
	base := []string{"--addr", addr, "--token", testToken}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{name: "abort", args: []string{"abort", "web-3", "--reason", "wrong build"},
			want: "abort of web-3 requested in phase smoke: it stops at its next step and it ends aborted; users never see the package"},
		{name: "pause", args: []string{"pause", "web-3"}, want: "web-3 paused in phase smoke: it holds before its next step; continue with `cyclerctl resume web-3`"},
		{name: "resume", args: []string{"resume", "web-3"}, want: "web-3 resumed in phase smoke"},
		{name: "finished", args: []string{"pause", "web-1"}, wantCode: 1,
			want: "pause web-1: conflict: cycle web-1 has finished (done); see `cyclerctl history --cycle web-1`"},
		{name: "no id", args: []string{"abort"}, wantCode: 1, want: "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ctl(t, append(base, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("code %d, want %d and %q\nstdout: %s\nstderr: %s", code, tt.wantCode, tt.want, out, errOut)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if reason != "wrong build" {
		t.Errorf("abort reason %q", reason)
	}
}

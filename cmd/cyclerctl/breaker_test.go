package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
)

var breakers = []cycle.BreakerStatus{
	{Service: "api", State: cycle.BreakerClosed, ConsecutiveFailures: 1, Threshold: 3, Cooldown: "10m0s"},
	{Service: "web", State: cycle.BreakerOpen, ConsecutiveFailures: 3, Threshold: 3, Cooldown: "10m0s", ReopensAt: t0.Add(10 * time.Minute)},
	{Service: "db", State: cycle.BreakerHalfOpen, ConsecutiveFailures: 3, Threshold: 3, ReopensAt: t0},
}

func TestRenderBreakers(t *testing.T) {
	var b bytes.Buffer
	if err := renderBreakers(&b, breakers, time.UTC); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give int
		want string
	}{
		{give: 0, want: "SERVICE  STATE      FAILURES  COOLDOWN  REOPENS AT"},
		{give: 1, want: "api      closed     1/3       10m0s     -"},
		{give: 2, want: "web      open       3/3       10m0s     2026-03-04T12:10:00Z"},
		{give: 3, want: "db       half-open  3/3       -         -"},
	}
	lines := strings.Split(b.String(), "\n")
	for _, tt := range tests {
		if got := strings.TrimRight(lines[tt.give], " "); got != tt.want {
			t.Errorf("line %d\n got %q\nwant %q", tt.give, got, tt.want)
		}
	}
}

func TestBreakerCommands(t *testing.T) {
	addr := startFake(t, func(s *api.Server) {
		s.Handle("GET /v1/breakers", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, breakers)
		})
		s.Handle("GET /v1/breakers/{service}", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			for _, b := range breakers {
				if b.Service == r.PathValue("service") {
					return api.WriteJSON(w, http.StatusOK, b)
				}
			}
			return api.NotFound("no service %q", r.PathValue("service"))
		})
		s.Handle("POST /v1/breakers/{service}/reset", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, cycle.BreakerStatus{Service: r.PathValue("service"), State: cycle.BreakerClosed, Threshold: 3})
		})
	})
	base := []string{"--addr", addr, "--token", testToken}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		wantNot  string
	}{
		{name: "all", args: []string{"breaker"}, want: []string{"api", "web", "half-open"}},
		{name: "one", args: []string{"breaker", "web"}, want: []string{"web", "open", "3/3"}, wantNot: "api"},
		{name: "unknown", args: []string{"breaker", "nope"}, wantCode: 1, want: []string{`breaker of nope: not_found: no service "nope"`}},
		{name: "reset", args: []string{"breaker", "reset", "web"}, want: []string{"breaker of web is closed (failures 0/3)"}},
		{name: "reset without service", args: []string{"breaker", "reset"}, wantCode: 1, want: []string{"accepts 1 arg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ctl(t, append(base, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("code %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
				}
			}
			if tt.wantNot != "" && strings.Contains(out, tt.wantNot) {
				t.Errorf("output has %q:\n%s", tt.wantNot, out)
			}
		})
	}
	out, _, code := ctl(t, append(base, "--json", "breaker")...)
	var list []cycle.BreakerStatus
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 || !list[1].ReopensAt.Equal(breakers[1].ReopensAt) {
		t.Fatalf("--json breaker: code %d, %s", code, out)
	}
}

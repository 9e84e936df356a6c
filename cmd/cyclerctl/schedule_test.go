package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/api"
)

const schedulesAnswer = `[{"service":"web","schedules":[{"name":"nightly","cron":"30 2 * * *","time_zone":"Europe/Berlin",
"action":"deploy-staged","max_delay":"15m","next":[{"schedule":"nightly","at":"2026-03-29T03:30:00+02:00","local":"2026-03-29 03:30:00 CEST"}],
"last_runs":[{"fire_time":"2026-03-28T01:30:00Z","outcome":"skipped","reason":"service \"web\" is frozen","cycle_id":""}]}],
"staged":{"service":"web","digest":"sha256:aa","version":"1.2.3","by":"ops","at":"2026-03-28T10:00:00Z"},
"window_open":false,"window":"closed; the next opens at 2026-03-29 01:00 CET","frozen":"release freeze"},
{"service":"api","schedules":[],"window_open":true,"window":"no windows: cycles may start at any time"}]`

func TestScheduleList(t *testing.T) {
	var paths []string
	addr := startFake(t, func(s *api.Server) {
		h := func(w http.ResponseWriter, r *http.Request) error {
			paths = append(paths, r.URL.Path)
			w.Header().Set("Content-Type", "application/json")
			_, err := w.Write([]byte(schedulesAnswer))
			return err
		}
		s.Handle("GET /v1/schedules", api.ScopeOperator, h)
		s.Handle("GET /v1/schedules/{service}", api.ScopeOperator, h)
	})
	tests := []struct {
		name     string
		args     []string
		wantPath string
		want     []string
	}{
		{name: "table", args: []string{"schedule", "list"}, wantPath: "/v1/schedules", want: []string{
			"service web", "nightly", "deploy-staged", "Europe/Berlin", "2026-03-29 03:30:00 CEST",
			`2026-03-28T01:30:00Z skipped: service "web" is frozen`, "staged  1.2.3 (sha256:aa) by ops",
			"window  closed; the next opens at 2026-03-29 01:00 CET", "frozen  release freeze", "service api", "no schedules"}},
		{name: "one service", args: []string{"schedule", "list", "web"}, wantPath: "/v1/schedules/web", want: []string{"service web"}},
		{name: "json", args: []string{"--json", "schedule", "list"}, wantPath: "/v1/schedules", want: []string{`"time_zone": "Europe/Berlin"`, `"max_delay": "15m"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths = nil
			out, errOut, code := ctl(t, append([]string{"--addr", addr, "--token", testToken}, tt.args...)...)
			if code != 0 {
				t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if len(paths) != 1 || paths[0] != tt.wantPath {
				t.Errorf("requests %v, want %s", paths, tt.wantPath)
			}
		})
	}
}

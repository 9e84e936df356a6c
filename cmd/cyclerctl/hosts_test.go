package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
)

func TestHostsTableAndActions(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := []controller.Host{
		{Instance: "web-blue-1", Service: "web", Pool: "blue", Version: "2.0.0", Digest: "sha256:0123456789abcdef0000", State: "visible",
			Health: "passing", AgentAddr: "10.0.0.7:7401", AgentReachable: true,
			LastInstall: &agent.Install{Outcome: agent.OutcomeInstalled, Version: "2.0.0", FinishedAt: at}},
		{Instance: "web-green-1", Service: "web", Pool: "green", Version: "1.0.0", State: "hidden", Health: "unknown",
			AgentAddr: "10.0.0.8:7401", AgentError: "connection refused"},
	}
	var gotService string
	var gotInstall agent.InstallRequest
	var gotGen agent.GenerationRequest
	addr := startAPI(t, func(s *api.Server) {
		s.Handle("GET /v1/hosts", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			gotService = r.URL.Query().Get("service")
			return api.WriteJSON(w, 200, rows)
		})
		s.Handle("POST /v1/hosts/{instance}/install", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			if err := api.DecodeJSON(r, &gotInstall); err != nil {
				return err
			}
			res := agent.InstallResult{Install: agent.Install{Outcome: agent.OutcomeFailed, Step: "health", Error: "status 500", RolledBack: true}}
			if r.PathValue("instance") == "web-blue-1" {
				res = agent.InstallResult{Install: agent.Install{Outcome: agent.OutcomeInstalled, Version: "3.0.0"}}
			}
			return api.WriteJSON(w, 200, res)
		})
		s.Handle("POST /v1/hosts/{instance}/hide", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			if err := api.DecodeJSON(r, &gotGen); err != nil {
				return err
			}
			return api.WriteJSON(w, 200, agent.Maintenance{Hidden: true, Generation: gotGen.Generation, Reason: "cycler: hidden (generation 4)"})
		})
	})
	base := []string{"--addr", addr, "--token", testToken}

	out, errOut, code := ctl(t, append(base, "hosts", "--service", "web")...)
	if code != 0 || gotService != "web" {
		t.Fatalf("hosts: code %d, service %q\n%s%s", code, gotService, out, errOut)
	}
	for _, want := range []string{"INSTANCE", "web-blue-1", "0123456789ab", "visible", "reachable", "installed 2.0.0", "web-green-1", "hidden", "unreachable"} {
		if !strings.Contains(out, want) {
			t.Errorf("hosts table lacks %q:\n%s", want, out)
		}
	}
	out, _, code = ctl(t, append(base, "--json", "hosts")...)
	var back []controller.Host
	if code != 0 || json.Unmarshal([]byte(out), &back) != nil || len(back) != 2 || back[0].Digest != rows[0].Digest {
		t.Fatalf("hosts --json: code %d\n%s", code, out)
	}

	out, errOut, code = ctl(t, append(base, "host", "install", "web-blue-1", "sha256:abc")...)
	if code != 0 || gotInstall.Digest != "sha256:abc" || !strings.Contains(out, "installed 3.0.0") {
		t.Fatalf("host install: code %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = ctl(t, append(base, "host", "install", "web-green-1", "sha256:abc")...)
	if code == 0 || !strings.Contains(out, "failed at step health") || !strings.Contains(out, "rolled back") || !strings.Contains(errOut, "failed") {
		t.Fatalf("a failed host install: code %d\n%s%s", code, out, errOut)
	}

	out, errOut, code = ctl(t, append(base, "host", "hide", "web-blue-1", "--generation", "4")...)
	if code != 0 || gotGen.Generation != 4 || !strings.Contains(out, "hidden") {
		t.Fatalf("host hide: code %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = ctl(t, append(base, "host", "hide", "web-blue-1")...)
	if code == 0 || !strings.Contains(errOut, "--generation is required") {
		t.Fatalf("hide without a generation: code %d, %s", code, errOut)
	}
}

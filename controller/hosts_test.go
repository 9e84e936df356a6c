package controller

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/fleet"
)

// TestHostsRefusals covers the answers GET /v1/hosts and the host actions
// give before they reach Consul or an agent; the real paths run in
// integration.TestAgentInstallAndHide.
func TestHostsRefusals(t *testing.T) {
	dead, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		ctrl       *Controller
		handler    func(c *Controller) api.HandlerFunc
		target     string
		body       string
		wantStatus int
		wantMsg    string
	}{
		{"no consul", &Controller{}, func(c *Controller) api.HandlerFunc { return c.handleHosts },
			"/v1/hosts", "", http.StatusServiceUnavailable, "no Consul client"},
		{"bad service", &Controller{consul: dead}, func(c *Controller) api.HandlerFunc { return c.handleHosts },
			"/v1/hosts?service=Web!", "", http.StatusBadRequest, "is not valid: use 1-63 lower-case letters"},
		{"consul down", &Controller{consul: dead}, func(c *Controller) api.HandlerFunc { return c.handleHosts },
			"/v1/hosts", "", http.StatusServiceUnavailable, "listing the agents in Consul"},
		{"install with a bad body", &Controller{consul: dead, agentToken: "t"}, func(c *Controller) api.HandlerFunc { return c.handleHostInstall },
			"/v1/hosts/web-1/install", `{"digest":1}`, http.StatusBadRequest, "expected a string"},
		{"no agent token", &Controller{consul: dead}, func(c *Controller) api.HandlerFunc { return c.handleHostInstall },
			"/v1/hosts/web-1/install", `{"digest":"sha256:00"}`, http.StatusServiceUnavailable, "agent_token"},
		{"hide without generation", &Controller{consul: dead, agentToken: "t"}, func(c *Controller) api.HandlerFunc { return c.handleHostMaintenance(true) },
			"/v1/hosts/web-1/hide", `{}`, http.StatusBadRequest, "generation is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ctrl.fleet = &fleet.Client{Consul: tt.ctrl.consul, Token: tt.ctrl.agentToken}
			srv, err := api.New(api.Config{Tokens: []api.Token{{Name: "ops", Secret: "operator-secret-0123456789", Scopes: []api.Scope{api.ScopeOperator}}}})
			if err != nil {
				t.Fatal(err)
			}
			method := http.MethodGet
			pattern := "GET /v1/hosts"
			if tt.body != "" {
				method = http.MethodPost
				pattern = "POST " + tt.target
			}
			srv.Handle(pattern, api.ScopeOperator, tt.handler(tt.ctrl))
			req := httptest.NewRequest(method, tt.target, strings.NewReader(tt.body))
			req.SetPathValue("instance", "web-1")
			req.Header.Set("Authorization", "Bearer operator-secret-0123456789")
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantMsg) {
				t.Fatalf("status %d, body %s; want %d containing %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantMsg)
			}
		})
	}
}

package controller

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/api"
)

// TestCycleRequestRefusals covers the answers the cycle routes give to bad
// input before anything reaches the orchestrator; the real paths run in
// integration.TestCycle*.
func TestCycleRequestRefusals(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name       string
		pattern    string
		target     string
		handler    func(c *Controller) api.HandlerFunc
		body       string
		wantStatus int
		wantMsg    string
	}{
		{"unknown field", "POST /v1/cycles", "/v1/cycles", func(c *Controller) api.HandlerFunc { return c.handleStart },
			`{"digest":"` + digest + `","servce":"web"}`, http.StatusBadRequest, "servce"},
		{"bad digest", "POST /v1/cycles", "/v1/cycles", func(c *Controller) api.HandlerFunc { return c.handleStart },
			`{"digest":"sha256:nothex"}`, http.StatusBadRequest, `sha256:nothex\" is not a package digest`},
		{"bad service", "POST /v1/cycles", "/v1/cycles", func(c *Controller) api.HandlerFunc { return c.handleStart },
			`{"digest":"` + digest + `","service":"Web!"}`, http.StatusBadRequest, `Web!\" is not valid: use 1-63`},
		{"at window and force", "POST /v1/cycles", "/v1/cycles", func(c *Controller) api.HandlerFunc { return c.handleStart },
			`{"digest":"` + digest + `","at_window":true,"force":true}`, http.StatusBadRequest, "do not go together"},
		{"at window without orchestrator", "POST /v1/cycles", "/v1/cycles", func(c *Controller) api.HandlerFunc { return c.handleStart },
			`{"digest":"` + digest + `","at_window":true}`, http.StatusServiceUnavailable, "no orchestrator"},
		{"no orchestrator", "POST /v1/cycles", "/v1/cycles", func(c *Controller) api.HandlerFunc { return c.handleStart },
			`{"digest":"` + digest + `"}`, http.StatusServiceUnavailable, "no orchestrator"},
		{"rollback of a bad service name", "POST /v1/services/{service}/rollback", "/v1/services/Web!/rollback",
			func(c *Controller) api.HandlerFunc { return c.handleRollback }, `{}`, http.StatusBadRequest, "Web!"},
		{"breaker reset without orchestrator", "POST /v1/breakers/{service}/reset", "/v1/breakers/web/reset",
			func(c *Controller) api.HandlerFunc { return c.withOrch(c.handleBreakerReset) }, `{}`, http.StatusServiceUnavailable, "no orchestrator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := api.New(api.Config{Tokens: []api.Token{{Name: "ops", Secret: "operator-secret-0123456789", Scopes: []api.Scope{api.ScopeOperator}}}})
			if err != nil {
				t.Fatal(err)
			}
			srv.Handle(tt.pattern, api.ScopeOperator, tt.handler(&Controller{}))
			req := httptest.NewRequest(http.MethodPost, tt.target, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer operator-secret-0123456789")
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantMsg) {
				t.Errorf("status %d, body %s; want %d containing %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantMsg)
			}
		})
	}
}

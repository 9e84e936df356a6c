package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/orchestrator"
	"github.com/cyclerhq/cycler/raftstore"
)

// TestStageAndSchedules: staging answers 202 with the next fire, a service
// without a deploy-staged schedule is refused with 409, and GET
// /v1/schedules shows the stage, the next fires in the schedule's zone
// and the window state.
func TestStageAndSchedules(t *testing.T) {
	c := raftstore.NewTestCluster(t, 3)
	store := c.WaitLeader()
	ctx := context.Background()
	webPkg := raftstore.PackageMeta{Digest: "sha256:" + strings.Repeat("a", 64), Name: "web", Version: "1.2.3", Size: 10}
	apiPkg := raftstore.PackageMeta{Digest: "sha256:" + strings.Repeat("b", 64), Name: "api", Version: "2.0", Size: 10}
	for _, m := range []raftstore.PackageMeta{webPkg, apiPkg} {
		if _, err := store.AddPackage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	specs := map[string]orchestrator.Spec{
		"web": {Name: "web", MinLive: 1, Schedules: []config.Schedule{{Name: "nightly", Cron: "30 2 * * *", TimeZone: "Europe/Berlin",
			Action: config.ActionDeployStaged, MaxDelay: "15m"}},
			Windows: []config.Window{{Name: "night", Start: "01:00", End: "04:00", TimeZone: "Europe/Berlin"}}},
		"api": {Name: "api", MinLive: 1},
	}
	orch := orchestrator.New(orchestrator.Config{Store: store, Services: func() map[string]orchestrator.Spec { return specs },
		Clock: func() time.Time { return now }})
	ctrl := &Controller{store: store, orch: orch, log: zap.NewNop()}
	srv, err := api.New(api.Config{Tokens: []api.Token{{Name: "ops", Secret: "operator-secret-0123456789", Scopes: []api.Scope{api.ScopeOperator}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("POST /v1/cycles", api.ScopeOperator, ctrl.handleStart)
	ctrl.registerSchedules(srv)
	do := func(method, target, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer operator-secret-0123456789")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantMsg    string
	}{
		{"stage", `{"digest":"` + webPkg.Digest + `","at_window":true}`, http.StatusAccepted, `"local":"2026-06-02 02:30:00 CEST"`},
		{"no deploy-staged schedule", `{"digest":"` + apiPkg.Digest + `","at_window":true}`, http.StatusConflict, `no schedule with action \"deploy-staged\"`},
		{"package of another service", `{"digest":"` + apiPkg.Digest + `","service":"web","at_window":true}`, http.StatusConflict, `named \"api\"`},
		{"unknown package", `{"digest":"sha256:` + strings.Repeat("c", 64) + `","at_window":true}`, http.StatusNotFound, "no package"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(http.MethodPost, "/v1/cycles", tt.body)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantMsg) {
				t.Errorf("status %d, body %s; want %d containing %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantMsg)
			}
		})
	}
	if g, ok := store.Staged("web"); !ok || g.Digest != webPkg.Digest || g.By != "ops" {
		t.Errorf("staged %+v, %v", g, ok)
	}
	if _, ok := store.Staged("api"); ok {
		t.Error("a refused stage was committed")
	}

	rec := do(http.MethodGet, "/v1/schedules/web", "")
	var got []orchestrator.ServiceSchedules
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/schedules/web: %d %s", rec.Code, rec.Body.String())
	}
	if len(got) != 1 || got[0].Staged == nil || got[0].Staged.Version != "1.2.3" || got[0].WindowOpen ||
		!strings.Contains(got[0].Window, "2026-06-02 01:00 CEST") {
		t.Errorf("schedules %+v", got)
	}
	if s := got[0].Schedules; len(s) != 1 || len(s[0].Next) != 3 || s[0].Next[0].Local != "2026-06-02 02:30:00 CEST" {
		t.Errorf("schedule %+v", s)
	}
	if rec := do(http.MethodGet, "/v1/schedules/nope", ""); rec.Code != http.StatusNotFound {
		t.Errorf("unknown service: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do(http.MethodGet, "/v1/schedules/Web!", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("bad service name: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do(http.MethodGet, "/v1/schedules", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"service":"api"`) {
		t.Errorf("all schedules: %d %s", rec.Code, rec.Body.String())
	}
}

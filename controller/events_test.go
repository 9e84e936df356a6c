package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/raftstore"
)

// TestEventsHeartbeat: a cycle that does not change still shows up on its
// events stream every heartbeat, with the same revision, so clients can
// tell a quiet cycle from a dead server.
func TestEventsHeartbeat(t *testing.T) {
	old := eventsHeartbeat
	eventsHeartbeat = 100 * time.Millisecond
	t.Cleanup(func() { eventsHeartbeat = old })

	rc := raftstore.NewTestCluster(t, 1)
	s := rc.WaitLeader()
	created, err := s.CreateCycle(t.Context(), cycle.Cycle{Service: "web", Kind: cycle.KindDeploy, Phase: cycle.Bake,
		Target: "green", Package: cycle.Release{Version: "v2", Digest: "sha256:" + strings.Repeat("ab", 32)}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Tokens: []api.Token{{Name: "ops", Secret: "operator-secret-0123456789", Scopes: []api.Scope{api.ScopeOperator}}}})
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{store: s}
	srv.Handle("GET /v1/cycles/{id}/events", api.ScopeOperator, c.handleEvents, api.WithoutTimeouts())
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	// Without heartbeats the read below would block: the deadline turns
	// that into a failure.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/cycles/"+created.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer operator-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for i := range 3 {
		if !sc.Scan() {
			t.Fatalf("stream ended after %d lines: %v", i, sc.Err())
		}
		var got cycle.Cycle
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if got.ID != created.ID || got.Rev != created.Rev {
			t.Fatalf("line %d: cycle %s rev %d, want %s rev %d repeated", i, got.ID, got.Rev, created.ID, created.Rev)
		}
	}
}

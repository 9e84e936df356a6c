package agent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/pkgfile"
)

const (
	agentSecret    = "agent-scope-secret-0123456789"
	operatorSecret = "operator-scope-secret-0123456789"
	serverSecret   = "server-blob-secret-0123456789"
)

// TestAPI drives the agent API through the real api.Server, with blobs
// served over HTTP the way a cyclerd server serves them.
func TestAPI(t *testing.T) {
	e := newTestEnv(t)
	pkg := testPackage(t, "1.0.0", "serve", pkgfile.Hooks{})
	digest := digestOf(pkg)
	blobs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+serverSecret {
			http.Error(w, `{"error":{"code":"unauthorized","message":"bad token"}}`, http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/v1/packages/"+digest+"/blob" {
			http.Error(w, `{"error":{"code":"not_found","message":"no such package"}}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write(pkg)
	}))
	t.Cleanup(blobs.Close)
	src, err := NewServerSource(blobs.URL, serverSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Sources = []BlobSource{src}
	a, _ := e.start()
	srv, err := api.New(api.Config{Tokens: []api.Token{
		{Name: "servers", Secret: agentSecret, Scopes: []api.Scope{api.ScopeAgent}},
		{Name: "ops", Secret: operatorSecret, Scopes: []api.Scope{api.ScopeOperator}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a.Register(srv)
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)

	call := func(token, method, path, body string, out any) int {
		t.Helper()
		req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(buf.Bytes(), out); err != nil {
				t.Fatalf("%s %s: %v in %s", method, path, err, buf.String())
			}
		}
		return resp.StatusCode
	}
	install := `{"digest":"` + digest + `"}`
	tests := []struct {
		name   string
		token  string
		method string
		path   string
		body   string
		want   int
	}{
		{"operator cannot install", operatorSecret, "POST", "/v1/agent/install", install, http.StatusForbidden},
		{"operator cannot hide", operatorSecret, "POST", "/v1/agent/hide", `{"generation":1}`, http.StatusForbidden},
		{"operator cannot read the inventory", operatorSecret, "GET", "/v1/agent/inventory", "", http.StatusForbidden},
		{"bad digest", agentSecret, "POST", "/v1/agent/install", `{"digest":"md5:abc"}`, http.StatusBadRequest},
		{"unknown field", agentSecret, "POST", "/v1/agent/install", `{"digest":"x","force":true}`, http.StatusBadRequest},
		{"no generation", agentSecret, "POST", "/v1/agent/hide", `{}`, http.StatusBadRequest},
		{"bad release", agentSecret, "POST", "/v1/agent/switch-local", `{"release":"../x"}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := call(tt.token, tt.method, tt.path, tt.body, nil); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
	if inv := a.Inventory(t.Context()); inv.Current != nil {
		t.Fatalf("a refused request installed something: %+v", inv.Current)
	}

	var res InstallResult
	if got := call(agentSecret, "POST", "/v1/agent/install", install, &res); got != http.StatusOK || res.Outcome != OutcomeInstalled {
		t.Fatalf("install: status %d, %+v", got, res.Install)
	}
	e.wantServing("1.0.0")
	var m Maintenance
	if got := call(agentSecret, "POST", "/v1/agent/hide", `{"generation":4}`, &m); got != http.StatusOK || !m.Hidden {
		t.Fatalf("hide: status %d, %+v", got, m)
	}
	if got := call(agentSecret, "POST", "/v1/agent/unhide", `{"generation":3}`, nil); got != http.StatusConflict {
		t.Fatalf("stale unhide: status %d, want 409", got)
	}
	var inv Inventory
	if got := call(agentSecret, "GET", "/v1/agent/inventory", "", &inv); got != http.StatusOK ||
		inv.Current == nil || inv.Current.Digest != digest || !inv.Maintenance.Hidden || inv.App.Health != HealthPassing {
		t.Fatalf("inventory: status %d, %+v", got, inv)
	}
}

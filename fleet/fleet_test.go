package fleet

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/pool"
)

// fakeConsul answers GET /v1/health/service/cyclerd-agent with entries,
// applying the one filter form Agents sends, and records the filters.
type fakeConsul struct {
	entries []*consulapi.ServiceEntry

	mu      sync.Mutex
	filters []string
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/health/service/"+pool.ServiceAgent {
		http.NotFound(w, r)
		return
	}
	filter := r.URL.Query().Get("filter")
	f.mu.Lock()
	f.filters = append(f.filters, filter)
	f.mu.Unlock()
	out := []*consulapi.ServiceEntry{}
	for _, e := range f.entries {
		if filter == "" || filter == `Service.Meta.service == "`+e.Service.Meta["service"]+`"` {
			out = append(out, e)
		}
	}
	w.Header().Set("X-Consul-Index", "7")
	_ = json.NewEncoder(w).Encode(out)
}

func entry(service, p, instance string) *consulapi.ServiceEntry {
	return &consulapi.ServiceEntry{
		Node: &consulapi.Node{Node: "node-" + instance},
		Service: &consulapi.AgentService{ID: pool.ServiceAgent + "-" + instance, Service: pool.ServiceAgent,
			Meta: map[string]string{"service": service, "pool": p, "instance": instance, "api_addr": "127.0.0.1:1"}},
		Checks: consulapi.HealthChecks{{Status: consulapi.HealthPassing}},
	}
}

func TestAgentsFiltersInConsul(t *testing.T) {
	fc := &fakeConsul{entries: []*consulapi.ServiceEntry{
		entry("web", "green", "web-green-1"), entry("api", "blue", "api-blue-1"),
		entry("web", "blue", "web-blue-2"), entry("web", "blue", "web-blue-1"),
	}}
	srv := httptest.NewServer(fc)
	defer srv.Close()
	cc, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{Consul: cc, Token: "t"}
	tests := []struct {
		give       string
		wantFilter string
		want       []string
	}{
		{give: "web", wantFilter: `Service.Meta.service == "web"`, want: []string{"web-blue-1", "web-blue-2", "web-green-1"}},
		{give: "api", wantFilter: `Service.Meta.service == "api"`, want: []string{"api-blue-1"}},
		{give: "", wantFilter: "", want: []string{"api-blue-1", "web-blue-1", "web-blue-2", "web-green-1"}},
	}
	for _, tt := range tests {
		t.Run("service="+tt.give, func(t *testing.T) {
			fc.mu.Lock()
			fc.filters = nil
			fc.mu.Unlock()
			got, err := c.Agents(t.Context(), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range got {
				ids = append(ids, a.Instance)
				if !a.Passing || a.Scheme != "http" {
					t.Errorf("%s: passing %t scheme %q, want true and http", a.Instance, a.Passing, a.Scheme)
				}
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("Agents(%q) = %v, want %v", tt.give, ids, tt.want)
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if len(fc.filters) != 1 || fc.filters[0] != tt.wantFilter {
				t.Errorf("filters sent %q, want [%q]", fc.filters, tt.wantFilter)
			}
		})
	}
}

func TestAgentFilterQuotes(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "web", want: `Service.Meta.service == "web"`},
		{give: `we"b`, want: `Service.Meta.service == "we\"b"`},
	}
	for _, tt := range tests {
		if got := agentFilter(tt.give); got != tt.want {
			t.Errorf("agentFilter(%q) = %s, want %s", tt.give, got, tt.want)
		}
	}
}

// Package fleet finds the cyclerd agents of a service through their Consul
// registrations and calls their API with the servers' agent token. The
// controller's host routes and the orchestrator's cycles both use it.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/pool"
)

// ErrNoToken is returned when the server has no agent token to call agents with.
var ErrNoToken = errors.New("this server has no agent token to call agents with; set agent_token or agent_token_file in its config")

// Agent is one cyclerd-agent registration: the agent of one app instance.
type Agent struct {
	Service  string `json:"service"`
	Pool     string `json:"pool"`
	Instance string `json:"instance"`
	Node     string `json:"node"`
	// Addr is the agent's API "host:port"; Scheme is "http" or "https".
	Addr   string `json:"addr"`
	Scheme string `json:"scheme"`
	// Passing is Consul's verdict on the agent's own registration.
	Passing bool `json:"passing"`
}

// Client finds and calls agents.
type Client struct {
	// Consul is the local Consul agent's client.
	Consul *consulapi.Client
	// Token is the agent-scope secret presented to agents.
	Token string
	// HTTP carries the calls (TLS settings included); nil means http.DefaultClient.
	HTTP *http.Client
}

// Agents lists the agents registered in Consul, of service (every service
// when empty), sorted by pool and instance.
func (c *Client) Agents(ctx context.Context, service string) ([]Agent, error) {
	q := &consulapi.QueryOptions{}
	if service != "" {
		// Consul filters on its side: a server managing several services
		// then decodes only the agents of the one it asked for, not every
		// agent of the fleet on every step of a cycle.
		q.Filter = agentFilter(service)
	}
	entries, _, err := c.Consul.Health().Service(pool.ServiceAgent, "", false, q.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("fleet: list %s in Consul: %w", pool.ServiceAgent, err)
	}
	var out []Agent
	for _, e := range entries {
		m := e.Service.Meta
		if m["instance"] == "" || m["api_addr"] == "" {
			continue // an agent from before api_addr was registered
		}
		if service != "" && m["service"] != service {
			continue
		}
		scheme := m["api_scheme"]
		if scheme != "https" {
			scheme = "http"
		}
		out = append(out, Agent{Service: m["service"], Pool: m["pool"], Instance: m["instance"], Node: e.Node.Node,
			Addr: m["api_addr"], Scheme: scheme, Passing: e.Checks.AggregatedStatus() == consulapi.HealthPassing})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pool != out[j].Pool {
			return out[i].Pool < out[j].Pool
		}
		return out[i].Instance < out[j].Instance
	})
	return out, nil
}

// agentFilter is the Consul filter expression that selects the
// cyclerd-agent registrations of service. The value is quoted as a
// filter string literal (double quotes, backslash escapes), which %q
// produces for any service name.
func agentFilter(service string) string {
	return fmt.Sprintf("Service.Meta.service == %q", service)
}

// Call calls agent a's API. timeout 0 leaves only ctx to bound the call.
func (c *Client) Call(ctx context.Context, a Agent, timeout time.Duration, method, path string, in, out any) error {
	if c.Token == "" {
		return ErrNoToken
	}
	if timeout == 0 {
		timeout = -1
	}
	cl, err := client.New(client.Config{Addr: a.Scheme + "://" + a.Addr, Token: c.Token, HTTPClient: c.HTTP, Timeout: timeout})
	if err != nil {
		return err
	}
	return cl.Do(ctx, method, path, in, out)
}

// Install asks a to install digest and waits for the outcome. The agent
// bounds the install with its own install_timeout.
func (c *Client) Install(ctx context.Context, a Agent, digest string) (agent.InstallResult, error) {
	var res agent.InstallResult
	err := c.Call(ctx, a, 0, http.MethodPost, "/v1/agent/install", agent.InstallRequest{Digest: digest}, &res)
	return res, err
}

// SetHidden asks a to hide (maintenance on) or unhide its instance for
// generation gen.
func (c *Client) SetHidden(ctx context.Context, a Agent, gen uint64, hidden bool) (agent.Maintenance, error) {
	path := "/v1/agent/unhide"
	if hidden {
		path = "/v1/agent/hide"
	}
	var m agent.Maintenance
	err := c.Call(ctx, a, 15*time.Second, http.MethodPost, path, agent.GenerationRequest{Generation: gen}, &m)
	return m, err
}

// Inventory asks a what it has installed and runs.
func (c *Client) Inventory(ctx context.Context, a Agent) (agent.Inventory, error) {
	var inv agent.Inventory
	err := c.Call(ctx, a, 5*time.Second, http.MethodGet, "/v1/agent/inventory", nil, &inv)
	return inv, err
}

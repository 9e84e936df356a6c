package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/pool"
)

// inventoryTimeout bounds each agent's answer to GET /v1/hosts, so one
// dead host cannot stall the table.
const inventoryTimeout = 2 * time.Second

// relayTimeout bounds a hide or unhide relayed to an agent. An install is
// bounded by the agent's own install_timeout instead.
const relayTimeout = 15 * time.Second

// instanceRE is a Consul service instance id as agents use them.
var instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Host is one row of GET /v1/hosts: an app instance, merged from its
// cyclerd-agent registration, its Consul registration and its agent's
// inventory.
type Host struct {
	Instance string `json:"instance"`
	Service  string `json:"service"`
	Pool     string `json:"pool"`
	Node     string `json:"node,omitempty"`
	Address  string `json:"address,omitempty"`
	Port     int    `json:"port,omitempty"`
	// Version is what the agent reports, else the cycler_version Meta.
	Version string `json:"version,omitempty"`
	// Digest and Release come from the agent only.
	Digest  string `json:"digest,omitempty"`
	Release string `json:"release,omitempty"`
	// State is "visible", "hidden" (in Consul maintenance) or
	// "unregistered" (no app instance in Consul).
	State string `json:"state"`
	// HiddenReason is the maintenance reason Consul shows.
	HiddenReason string `json:"hidden_reason,omitempty"`
	// Health is the agent's own probe of the app ("passing", "failing",
	// "unknown" without a release) when the agent answered; otherwise
	// Consul's view of a visible instance ("passing", "critical"), or
	// "unknown".
	Health string `json:"health"`
	// ConsulPassing is Consul's verdict: every check passing, maintenance
	// included (so always false while hidden).
	ConsulPassing bool `json:"consul_passing"`
	// AgentAddr is the agent's API address; empty without an agent.
	AgentAddr      string `json:"agent_addr,omitempty"`
	AgentReachable bool   `json:"agent_reachable"`
	// AgentError says why the agent's inventory is missing.
	AgentError string `json:"agent_error,omitempty"`
	// Generation is the newest hide or unhide generation the agent saw.
	Generation uint64 `json:"generation,omitempty"`
	// AppPID is the supervised app's pid.
	AppPID      int             `json:"app_pid,omitempty"`
	LastInstall *agent.Install  `json:"last_install,omitempty"`
	Installing  *agent.Progress `json:"installing,omitempty"`
}

// registerHosts adds the host routes. The actions are relayed to the
// agent by the leader, which writes them to the audit trail.
func (c *Controller) registerHosts(srv *api.Server) {
	op := api.ScopeOperator
	srv.Handle("GET /v1/hosts", op, c.handleHosts)
	srv.Handle("POST /v1/hosts/{instance}/install", op, c.onLeader(c.handleHostInstall), api.WithoutTimeouts())
	srv.Handle("POST /v1/hosts/{instance}/hide", op, c.onLeader(c.handleHostMaintenance(true)))
	srv.Handle("POST /v1/hosts/{instance}/unhide", op, c.onLeader(c.handleHostMaintenance(false)))
}

// onLeader runs h on the leader, forwarding from a follower, like write
// but without write's deadline: an install takes as long as it takes.
func (c *Controller) onLeader(h api.HandlerFunc) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !c.store.IsLeader() {
			if err := c.noLeader(); err != nil {
				return err
			}
			return c.peers.forward(w, r, c.store.LeaderAPIAddr())
		}
		return h(w, r)
	}
}

// handleHosts answers GET /v1/hosts[?service=S]: one row per app instance,
// sorted by service, pool and instance. Any server answers it; it reads
// Consul and asks every agent for its inventory at once.
func (c *Controller) handleHosts(w http.ResponseWriter, r *http.Request) error {
	if c.consul == nil {
		return api.Unavailable("this server has no Consul client, so it cannot list the hosts")
	}
	svc := r.URL.Query().Get("service")
	if svc != "" && !serviceNameRE.MatchString(svc) {
		return api.BadRequest("service name %q is not valid: use 1-63 lower-case letters, digits and hyphens, starting with a letter", svc)
	}
	agents, err := c.fleet.Agents(r.Context(), "")
	if err != nil {
		return api.Unavailable("listing the agents in Consul: %v; check that the local Consul agent is up", err)
	}
	rows := map[string]*Host{}
	services := map[string]bool{}
	if svc != "" {
		services[svc] = true
	}
	for _, a := range agents {
		if svc != "" && a.Service != svc {
			continue
		}
		services[a.Service] = true
		rows[a.Instance] = &Host{Instance: a.Instance, Service: a.Service, Pool: a.Pool, Node: a.Node, AgentAddr: a.Addr,
			State: "unregistered", Health: agent.HealthUnknown}
	}
	for s := range services {
		insts, err := pool.ReadInstances(r.Context(), c.consul, s)
		if err != nil {
			return api.Unavailable("reading the instances of %q from Consul: %v", s, err)
		}
		for _, in := range insts.All {
			h := rows[in.ID]
			if h == nil {
				h = &Host{Instance: in.ID, Service: s, Pool: string(in.Pool), AgentError: "no cyclerd-agent is registered for this instance"}
				rows[in.ID] = h
			}
			h.Node, h.Address, h.Port, h.Version, h.ConsulPassing = in.Node, in.Address, in.Port, in.Version, in.Passing
			h.State, h.Health = "visible", "critical"
			if in.Passing {
				h.Health = "passing"
			}
			if in.Maintenance {
				h.State, h.HiddenReason, h.Health = "hidden", in.MaintenanceReason, agent.HealthUnknown
			}
		}
	}
	c.addInventories(r.Context(), agents, rows)
	out := make([]Host, 0, len(rows))
	for _, h := range rows {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Pool != b.Pool {
			return a.Pool < b.Pool
		}
		return a.Instance < b.Instance
	})
	return api.WriteJSON(w, http.StatusOK, out)
}

// addInventories asks the agent of every row for its inventory, in
// parallel, and merges the answers.
func (c *Controller) addInventories(ctx context.Context, agents []fleet.Agent, rows map[string]*Host) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, a := range agents {
		h := rows[a.Instance]
		if h == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inv agent.Inventory
			err := c.fleet.Call(ctx, a, inventoryTimeout, http.MethodGet, "/v1/agent/inventory", nil, &inv)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				h.AgentError = err.Error()
				return
			}
			h.AgentReachable = true
			if inv.Current != nil {
				h.Version, h.Digest, h.Release = inv.Current.Version, inv.Current.Digest, inv.Current.Dir
			}
			h.Health = inv.App.Health
			h.AppPID, h.Generation = inv.App.PID, inv.Maintenance.Generation
			h.LastInstall, h.Installing = inv.LastInstall, inv.Installing
			if h.Address == "" {
				h.Address, h.Port = inv.Address, inv.Port
			}
		}()
	}
	wg.Wait()
}

// hostAgentFor finds the agent of the instance in the request path.
func (c *Controller) hostAgentFor(r *http.Request) (fleet.Agent, error) {
	id := r.PathValue("instance")
	if !instanceRE.MatchString(id) {
		return fleet.Agent{}, api.BadRequest("instance id %q is not valid: use 1-128 letters, digits, '.', '_' and '-'", id)
	}
	if c.consul == nil {
		return fleet.Agent{}, api.Unavailable("this server has no Consul client, so it cannot find the agent of %q", id)
	}
	if c.agentToken == "" {
		return fleet.Agent{}, api.Unavailable("this server has no agent token to call agents with; set agent_token or agent_token_file in its config")
	}
	agents, err := c.fleet.Agents(r.Context(), "")
	if err != nil {
		return fleet.Agent{}, api.Unavailable("listing the agents in Consul: %v; check that the local Consul agent is up", err)
	}
	for _, a := range agents {
		if a.Instance == id {
			return a, nil
		}
	}
	return fleet.Agent{}, api.NotFound("no cyclerd-agent is registered in Consul for instance %q; `cyclerctl hosts` lists the instances", id)
}

// relayErr passes an agent's API error on as it is, and reports a failure
// to reach the agent as 503.
func relayErr(a fleet.Agent, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	return api.Unavailable("the agent of %s at %s did not answer: %v", a.Instance, a.Addr, err)
}

// handleHostInstall answers POST /v1/hosts/{instance}/install {digest}:
// the agent's InstallResult, relayed. The request waits for the install.
func (c *Controller) handleHostInstall(w http.ResponseWriter, r *http.Request) error {
	var req agent.InstallRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	a, err := c.hostAgentFor(r)
	if err != nil {
		return err
	}
	var res agent.InstallResult
	if err := c.fleet.Call(r.Context(), a, 0, http.MethodPost, "/v1/agent/install", req, &res); err != nil {
		return relayErr(a, err)
	}
	detail := fmt.Sprintf("digest %s: %s", req.Digest, res.Outcome)
	if res.Error != "" {
		detail += ": " + res.Error
	}
	c.audit(r, "host.install", a.Instance, detail)
	return api.WriteJSON(w, http.StatusOK, res)
}

// handleHostMaintenance answers POST /v1/hosts/{instance}/hide and
// /unhide {generation}: the agent's Maintenance, relayed.
func (c *Controller) handleHostMaintenance(hide bool) api.HandlerFunc {
	action, path := "host.unhide", "/v1/agent/unhide"
	if hide {
		action, path = "host.hide", "/v1/agent/hide"
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		var req agent.GenerationRequest
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
		if req.Generation == 0 {
			return api.BadRequest("generation is missing or 0; pass --generation N, the service generation the %s is for", action)
		}
		a, err := c.hostAgentFor(r)
		if err != nil {
			return err
		}
		var m agent.Maintenance
		if err := c.fleet.Call(r.Context(), a, relayTimeout, http.MethodPost, path, req, &m); err != nil {
			return relayErr(a, err)
		}
		c.audit(r, action, a.Instance, fmt.Sprintf("generation %d", req.Generation))
		return api.WriteJSON(w, http.StatusOK, m)
	}
}

// Package controller is the HTTP face of `cyclerd server`: it serves the
// replicated state in raftstore over the API, forwards writes that reach a
// follower to the leader, and records every mutating call in the audit trail.
package controller

import (
	"context"
	"errors"
	"net/http"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/orchestrator"
	"github.com/cyclerhq/cycler/pkgstore"
	"github.com/cyclerhq/cycler/raftstore"
)

// writeTimeout bounds how long a write waits for a Raft quorum. A minority
// partition cannot commit, and the caller deserves an answer saying so
// rather than a hang.
const writeTimeout = 10 * time.Second

// maxSnapshotUpload caps a snapshot restore upload; the state inside is
// capped by raftstore.MaxSnapshotStateSize, plus framing.
const maxSnapshotUpload = raftstore.MaxSnapshotStateSize + 1<<20

// Config wires a Controller.
type Config struct {
	// Store is this server's Raft store.
	Store *raftstore.Store
	// Peers reaches the other servers.
	Peers *Peers
	// Logger is the controller's logger.
	Logger *zap.Logger
	// APIAddr is the address other servers reach this one's API at.
	APIAddr string
	// Leave is called once this server has left the cluster on request; it
	// stops the process. Nil leaves the process running.
	Leave func()
	// Consul reads the LBs' acknowledgements (GET /v1/lbs). Nil makes
	// that route answer 503.
	Consul *consulapi.Client
	// Packages is the package blob store. Nil leaves out the /v1/packages
	// routes.
	Packages *pkgstore.Store
	// AgentToken is the secret the server presents to cyclerd agents
	// (GET /v1/hosts, and the install, hide and unhide it relays). Empty
	// makes those calls fail with a message saying so.
	AgentToken string
	// Orchestrator starts and steers cycles. Nil makes the cycle routes
	// answer 503.
	Orchestrator *orchestrator.Orchestrator
	// Metrics serves GET /v1/metrics (Prometheus text). Nil leaves the route out.
	Metrics http.Handler
}

// Controller serves the server role's API.
type Controller struct {
	store *raftstore.Store
	peers *Peers
	log   *zap.Logger
	leave func()
	// apiAddr is reported in /v1/cluster/self.
	apiAddr  string
	consul   *consulapi.Client
	packages *packageState
	// agentToken is Config.AgentToken.
	agentToken string
	// fleet finds and calls agents.
	fleet *fleet.Client
	orch  *orchestrator.Orchestrator
	// metrics serves GET /v1/metrics; nil leaves it out.
	metrics http.Handler
}

// New returns a Controller.
func New(cfg Config) *Controller {
	leave := cfg.Leave
	if leave == nil {
		leave = func() {}
	}
	return &Controller{store: cfg.Store, peers: cfg.Peers, log: cfg.Logger, leave: leave, apiAddr: cfg.APIAddr, consul: cfg.Consul,
		packages: newPackageState(cfg.Packages), agentToken: cfg.AgentToken,
		fleet: &fleet.Client{Consul: cfg.Consul, Token: cfg.AgentToken, HTTP: cfg.Peers.HTTP}, orch: cfg.Orchestrator,
		metrics: cfg.Metrics}
}

// Register adds the server role's routes to srv.
func (c *Controller) Register(srv *api.Server) {
	op := api.ScopeOperator
	srv.Handle("GET /v1/cluster/members", op, c.read(c.handleMembers))
	srv.Handle("GET /v1/cluster/self", op, c.handleSelf)
	srv.Handle("POST /v1/cluster/join", op, c.write(c.handleJoin))
	srv.Handle("POST /v1/cluster/remove", op, c.write(c.handleRemove))
	srv.Handle("POST /v1/cluster/leave", op, c.handleLeave)
	srv.Handle("GET /v1/snapshot", op, c.read(c.handleSnapshotSave), api.WithoutTimeouts())
	srv.HandleStream("POST /v1/snapshot", op, maxSnapshotUpload, c.write(c.handleSnapshotRestore))
	srv.Handle("GET /v1/services", op, c.read(c.handleServices))
	srv.Handle("GET /v1/services/{service}", op, c.read(c.handleService))
	srv.Handle("PUT /v1/services/{service}/freeze", op, c.write(c.handleFreeze))
	srv.Handle("DELETE /v1/services/{service}/freeze", op, c.write(c.handleUnfreeze))
	srv.Handle("GET /v1/audit", op, c.read(c.handleAudit))
	srv.Handle("GET /v1/lbs", op, c.handleLBs)
	c.registerPackages(srv)
	c.registerHosts(srv)
	c.registerCycles(srv)
	c.registerSchedules(srv)
	if c.metrics != nil {
		// Prometheus scrapes with a bearer token like any other client;
		// agent-scope tokens may read it too, so a scrape job needs no
		// operator secret.
		srv.Handle("GET /v1/metrics", api.ScopeAgent, func(w http.ResponseWriter, r *http.Request) error {
			c.metrics.ServeHTTP(w, r)
			return nil
		})
	}
}

// write runs h on the leader. On a follower the request is forwarded to the
// leader and its answer relayed, so the caller never has to find the leader.
func (c *Controller) write(h api.HandlerFunc) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !c.store.IsLeader() {
			if err := c.noLeader(); err != nil {
				return err
			}
			return c.peers.forward(w, r, c.store.LeaderAPIAddr())
		}
		ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
		defer cancel()
		return c.storeErr(h(w, r.WithContext(ctx)))
	}
}

// read answers from this node's state and says how fresh it is in
// X-Cycler-Index. With ?consistent the read is served by the leader after a
// Barrier, so it reflects every write acknowledged before it.
func (c *Controller) read(h api.HandlerFunc) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Query().Has("consistent") {
			if !c.store.IsLeader() {
				if err := c.noLeader(); err != nil {
					return err
				}
				return c.peers.forward(w, r, c.store.LeaderAPIAddr())
			}
			ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
			err := c.store.Barrier(ctx)
			cancel()
			if err != nil {
				return c.storeErr(err)
			}
		}
		api.SetIndex(w, c.store.AppliedIndex())
		return c.storeErr(h(w, r))
	}
}

// storeErr turns raftstore errors into API errors with a stable code.
func (c *Controller) storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		if nl := c.noLeader(); nl != nil {
			return nl
		}
		return api.NotLeader(c.store.LeaderAPIAddr())
	case errors.Is(err, raftstore.ErrInvalidSnapshot), errors.Is(err, raftstore.ErrInvalidCommand):
		return api.BadRequest("%v", err)
	case errors.Is(err, raftstore.ErrStaleGeneration):
		return api.Conflict("%v", err)
	case errors.Is(err, raftstore.ErrShutdown):
		return api.Unavailable("this server is shutting down; use another one")
	case errors.Is(err, context.DeadlineExceeded):
		return api.Unavailable("the write was not committed within %s: this server cannot reach a quorum of the cluster; check `cyclerctl cluster members`", writeTimeout)
	}
	return err
}

// noLeader returns the 503 for a server that knows no leader, or nil when
// it knows one. Without a leader the cause is either an election under way
// or this server being cut off from a quorum (a minority partition, or most
// servers down); the message names the quorum so the operator can tell the
// two apart with `cluster members`. A bare not_leader with no address would
// send clients looking for a leader that does not exist.
func (c *Controller) noLeader() error {
	if _, id := c.store.Leader(); id != "" {
		return nil
	}
	voters := 0
	if ms, err := c.store.Members(); err == nil {
		for _, m := range ms {
			if m.Voter {
				voters++
			}
		}
	}
	if voters == 0 {
		return api.Unavailable("no leader is elected and server %q is not a member of any cluster yet; "+
			"check its raft.join setting and `cyclerctl cluster members` on the other servers", c.store.ID())
	}
	return api.Unavailable("no leader is elected right now: either an election is under way or server %q cannot reach "+
		"a quorum of %d of the %d voting servers; retry in a few seconds, and if it persists check which servers are down "+
		"with `cyclerctl cluster members`", c.store.ID(), voters/2+1, voters)
}

// audit records a mutating call. The change itself is already committed, so
// a failure here is logged rather than returned: the caller's request did
// succeed, and reporting it as failed would invite a retry.
func (c *Controller) audit(r *http.Request, action, target, detail string) {
	_, err := c.store.AppendAudit(r.Context(), raftstore.AuditEntry{
		TokenName: api.Caller(r), Action: action, Target: target, Detail: detail,
	})
	if err != nil {
		c.log.Warn("audit append", zap.String("action", action), zap.String("target", target), zap.Error(err))
	}
}

// Package controller is the HTTP face of `cyclerd server`: it serves the
// replicated state in raftstore over the API, forwards writes that reach a
// follower to the leader, and records every mutating call in the audit trail.
package controller

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
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
}

// Controller serves the server role's API.
type Controller struct {
	store *raftstore.Store
	peers *Peers
	log   *zap.Logger
	leave func()
	// apiAddr is reported in /v1/cluster/self.
	apiAddr string
}

// New returns a Controller.
func New(cfg Config) *Controller {
	leave := cfg.Leave
	if leave == nil {
		leave = func() {}
	}
	return &Controller{store: cfg.Store, peers: cfg.Peers, log: cfg.Logger, leave: leave, apiAddr: cfg.APIAddr}
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
}

// write runs h on the leader. On a follower the request is forwarded to the
// leader and its answer relayed, so the caller never has to find the leader.
func (c *Controller) write(h api.HandlerFunc) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !c.store.IsLeader() {
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

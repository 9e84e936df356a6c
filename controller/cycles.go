package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/orchestrator"
	"github.com/cyclerhq/cycler/pkgstore"
)

// registerCycles adds the cycle, rollback and breaker routes.
func (c *Controller) registerCycles(srv *api.Server) {
	op := api.ScopeOperator
	srv.Handle("POST /v1/cycles", op, c.write(c.handleStart))
	srv.Handle("GET /v1/cycles", op, c.read(c.handleCycles))
	srv.Handle("GET /v1/cycles/{id}", op, c.read(c.handleCycle))
	srv.Handle("GET /v1/cycles/{id}/events", op, c.handleEvents, api.WithoutTimeouts())
	srv.Handle("POST /v1/cycles/{id}/abort", op, c.write(c.withOrch(c.handleAbort)))
	srv.Handle("POST /v1/cycles/{id}/pause", op, c.write(c.withOrch(c.handlePause(true))))
	srv.Handle("POST /v1/cycles/{id}/resume", op, c.write(c.withOrch(c.handlePause(false))))
	srv.Handle("POST /v1/services/{service}/rollback", op, c.write(c.handleRollback))
	srv.Handle("GET /v1/breakers", op, c.read(c.withOrch(c.handleBreakers)))
	srv.Handle("GET /v1/breakers/{service}", op, c.read(c.withOrch(c.handleBreaker)))
	srv.Handle("POST /v1/breakers/{service}/reset", op, c.write(c.withOrch(c.handleBreakerReset)))
}

// cycleErr maps the orchestrator's errors onto the API's.
func cycleErr(err error) error {
	var r *orchestrator.Refusal
	switch {
	case err == nil:
		return nil
	case errors.As(err, &r):
		return api.Refused("%s", r.Reason)
	case errors.Is(err, orchestrator.ErrUnknownService), errors.Is(err, orchestrator.ErrUnknownPackage), errors.Is(err, orchestrator.ErrUnknownCycle):
		return api.NotFound("%v", err)
	case errors.Is(err, cycle.ErrFinished):
		return api.Conflict("%v", err)
	}
	return err
}

// errNoOrchestrator answers the cycle routes of a server built without an
// orchestrator (tests and tools that embed the controller).
var errNoOrchestrator = api.Unavailable("this server runs no orchestrator, so it cannot start or steer cycles")

// withOrch runs h only on a server with an orchestrator. A handler that
// decodes a body still checks it first, so bad input gets its own error.
func (c *Controller) withOrch(h api.HandlerFunc) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if c.orch == nil {
			return errNoOrchestrator
		}
		return h(w, r)
	}
}

func (c *Controller) handleStart(w http.ResponseWriter, r *http.Request) error {
	var req cycle.StartRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if _, err := pkgstore.ParseDigest(req.Digest); err != nil {
		return api.BadRequest("digest %q is not a package digest like sha256:<64 hex digits>", req.Digest)
	}
	if req.Service != "" && !serviceNameRE.MatchString(req.Service) {
		return api.BadRequest("service name %q is not valid: use 1-63 lower-case letters, digits and hyphens, starting with a letter", req.Service)
	}
	if req.AtWindow && req.Force {
		return api.BadRequest("--at-window and --force do not go together: a staged package waits for its schedule and a deploy window; drop --at-window to deploy now")
	}
	if c.orch == nil {
		return errNoOrchestrator
	}
	if req.AtWindow {
		return c.handleStage(w, r, req)
	}
	cy, err := c.orch.Start(r.Context(), orchestrator.StartRequest{StartRequest: req, By: api.Caller(r), Trigger: "manual"})
	if err != nil {
		var ref *orchestrator.Refusal
		if errors.As(err, &ref) {
			c.audit(r, "cycle.refused", req.Service, fmt.Sprintf("%s: %s", req.Digest, ref.Reason))
		}
		return cycleErr(err)
	}
	detail := fmt.Sprintf("deploy %s (%s) to pool %s", cy.Package.Version, cy.Package.Digest, cy.Target)
	if req.Force {
		detail += " (forced outside the deploy windows)"
	}
	c.audit(r, "cycle.start", cy.ID, detail+", trigger manual")
	return api.WriteJSON(w, http.StatusCreated, cy)
}

func (c *Controller) handleCycles(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	svc := q.Get("service")
	if svc != "" && !serviceNameRE.MatchString(svc) {
		return api.BadRequest("service name %q is not valid", svc)
	}
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return api.BadRequest("limit %q is not a whole number of 0 or more", s)
		}
		limit = n
	}
	out := c.store.Cycles(svc, limit)
	if out == nil {
		out = []cycle.Cycle{}
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

func (c *Controller) cycleFor(r *http.Request) (cycle.Cycle, error) {
	id := r.PathValue("id")
	cy, ok := c.store.Cycle(id)
	if !ok {
		return cycle.Cycle{}, api.NotFound("no cycle %q; `cyclerctl history` lists the cycles", id)
	}
	return cy, nil
}

func (c *Controller) handleCycle(w http.ResponseWriter, r *http.Request) error {
	cy, err := c.cycleFor(r)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, cy)
}

// handleEvents streams the cycle as newline-delimited JSON, one document
// per committed revision above ?rev, until it reaches a terminal phase.
// Any server answers from its own replica, so a client whose server dies
// reconnects to another one with the last revision it saw.
func (c *Controller) handleEvents(w http.ResponseWriter, r *http.Request) error {
	var after uint64
	if s := r.URL.Query().Get("rev"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return api.BadRequest("rev %q is not a revision number", s)
		}
		after = n
	}
	// A client that started the cycle through the leader may reach a
	// follower that has not applied it yet: give replication a moment
	// before answering 404.
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		changed := c.store.Changed()
		if _, err := c.cycleFor(r); err == nil {
			break
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return nil
		case <-deadline.C:
			_, err := c.cycleFor(r)
			return err
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	// A quiet cycle (a long bake, a paused cycle) sends its current
	// revision again every eventsHeartbeat, so a client can tell a quiet
	// stream from a dead server and move to another one; clients skip
	// revisions they already have.
	heartbeat := time.NewTicker(eventsHeartbeat)
	defer heartbeat.Stop()
	beat := false
	for {
		changed := c.store.Changed()
		cy, _ := c.store.Cycle(r.PathValue("id"))
		if cy.Rev > after || beat {
			if err := enc.Encode(cy); err != nil {
				return nil // the client went away
			}
			_ = rc.Flush()
			after, beat = cy.Rev, false
			heartbeat.Reset(eventsHeartbeat)
		}
		if cy.Phase.Terminal() {
			return nil
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-changed:
		case <-heartbeat.C:
			beat = true
		}
	}
}

// eventsHeartbeat spaces the repeats of an unchanged cycle on its events
// stream; cyclerctl gives up on a server silent for 35 s.
var eventsHeartbeat = 10 * time.Second

func (c *Controller) handleAbort(w http.ResponseWriter, r *http.Request) error {
	var req cycle.AbortRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	cy, err := c.orch.Abort(r.Context(), r.PathValue("id"), req.Reason)
	if err != nil {
		return cycleErr(err)
	}
	c.audit(r, "cycle.abort", cy.ID, req.Reason)
	return api.WriteJSON(w, http.StatusOK, cy)
}

func (c *Controller) handlePause(paused bool) api.HandlerFunc {
	action := "cycle.resume"
	if paused {
		action = "cycle.pause"
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		cy, err := c.orch.Pause(r.Context(), r.PathValue("id"), paused)
		if err != nil {
			return cycleErr(err)
		}
		c.audit(r, action, cy.ID, "")
		return api.WriteJSON(w, http.StatusOK, cy)
	}
}

func (c *Controller) handleRollback(w http.ResponseWriter, r *http.Request) error {
	name, err := serviceName(r)
	if err != nil {
		return err
	}
	var req cycle.RollbackRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if c.orch == nil {
		return errNoOrchestrator
	}
	cy, err := c.orch.Rollback(r.Context(), name, api.Caller(r), req)
	if err != nil {
		var ref *orchestrator.Refusal
		if errors.As(err, &ref) {
			c.audit(r, "cycle.refused", name, "rollback: "+ref.Reason)
		}
		return cycleErr(err)
	}
	c.audit(r, "cycle.rollback", cy.ID, fmt.Sprintf("%s to %s on pool %s", cy.Kind, cy.Package.Version, cy.Target))
	return api.WriteJSON(w, http.StatusCreated, cy)
}

func (c *Controller) handleBreakers(w http.ResponseWriter, _ *http.Request) error {
	out := c.orch.Breakers()
	if out == nil {
		out = []cycle.BreakerStatus{}
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

func (c *Controller) handleBreaker(w http.ResponseWriter, r *http.Request) error {
	st, err := c.orch.Breaker(r.PathValue("service"))
	if err != nil {
		return cycleErr(err)
	}
	return api.WriteJSON(w, http.StatusOK, st)
}

func (c *Controller) handleBreakerReset(w http.ResponseWriter, r *http.Request) error {
	name, err := serviceName(r)
	if err != nil {
		return err
	}
	st, err := c.orch.ResetBreaker(r.Context(), name)
	if err != nil {
		return cycleErr(err)
	}
	c.audit(r, "breaker.reset", name, "")
	return api.WriteJSON(w, http.StatusOK, st)
}

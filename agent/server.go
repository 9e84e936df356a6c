package agent

import (
	"errors"
	"net/http"

	"github.com/cyclerhq/cycler/api"
)

// Register adds the agent API to srv. Every route needs an agent-scope
// token: the servers call them (the leader during a cycle, any server to
// relay an operator's `cyclerctl host ...`). Operator tokens get 403.
//
//	POST /v1/agent/install       {digest}       synchronous: the InstallResult
//	POST /v1/agent/switch-local  {release}      synchronous: the InstallResult
//	POST /v1/agent/hide          {generation}   the Maintenance
//	POST /v1/agent/unhide        {generation}   the Maintenance
//	GET  /v1/agent/inventory                    the Inventory
//
// An install that ran answers 200 whatever its outcome; the body says
// whether it failed, at which step, and whether it rolled back. Requests
// the agent refuses to act on answer 400 (malformed), 409 (another
// install under way, or a stale generation) or 503 (shutting down, or
// Consul unreachable after the change was recorded).
func (a *Agent) Register(srv *api.Server) {
	ag := api.ScopeAgent
	// An install outlives the server's write timeout; the route waits for
	// it (InstallTimeout bounds it).
	srv.Handle("POST /v1/agent/install", ag, a.handleInstall, api.WithoutTimeouts())
	srv.Handle("POST /v1/agent/switch-local", ag, a.handleSwitch, api.WithoutTimeouts())
	srv.Handle("POST /v1/agent/hide", ag, a.handleMaintenance(true))
	srv.Handle("POST /v1/agent/unhide", ag, a.handleMaintenance(false))
	srv.Handle("GET /v1/agent/inventory", ag, a.handleInventory)
}

func (a *Agent) handleInstall(w http.ResponseWriter, r *http.Request) error {
	var req InstallRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	res, err := a.Install(r.Context(), req.Digest)
	if err != nil {
		return apiError(err)
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

func (a *Agent) handleSwitch(w http.ResponseWriter, r *http.Request) error {
	var req SwitchRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	res, err := a.SwitchLocal(r.Context(), req.Release)
	if err != nil {
		return apiError(err)
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

func (a *Agent) handleMaintenance(hide bool) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req GenerationRequest
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
		if req.Generation == 0 {
			return api.BadRequest("generation is missing or 0; pass the service generation the hide or unhide is for")
		}
		set := a.Unhide
		if hide {
			set = a.Hide
		}
		m, err := set(r.Context(), req.Generation)
		if err != nil {
			return apiError(err)
		}
		return api.WriteJSON(w, http.StatusOK, m)
	}
}

func (a *Agent) handleInventory(w http.ResponseWriter, r *http.Request) error {
	return api.WriteJSON(w, http.StatusOK, a.Inventory(r.Context()))
}

// apiError maps the agent's errors to API errors with their messages.
func apiError(err error) error {
	switch {
	case errors.Is(err, ErrBadRequest):
		return api.BadRequest("%v", err)
	case errors.Is(err, ErrBusy), errors.Is(err, ErrStaleGeneration):
		return api.Conflict("%v", err)
	case errors.Is(err, ErrClosed), errors.Is(err, ErrConsul):
		return api.Unavailable("%v", err)
	}
	return err
}

package controller

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/orchestrator"
)

// registerSchedules adds the schedule routes.
func (c *Controller) registerSchedules(srv *api.Server) {
	op := api.ScopeOperator
	srv.Handle("GET /v1/schedules", op, c.read(c.withOrch(c.handleSchedules)))
	srv.Handle("GET /v1/schedules/{service}", op, c.read(c.withOrch(c.handleSchedules)))
}

// handleStage stages a package for the service's deploy-staged schedules
// (POST /v1/cycles with at_window). It answers 202: nothing runs until a
// schedule fires inside a window.
func (c *Controller) handleStage(w http.ResponseWriter, r *http.Request, req cycle.StartRequest) error {
	res, err := c.orch.Stage(r.Context(), req, api.Caller(r))
	if err != nil {
		var ref *orchestrator.Refusal
		if errors.As(err, &ref) {
			c.audit(r, "schedule.stage_refused", req.Service, fmt.Sprintf("%s: %s", req.Digest, ref.Reason))
		}
		return cycleErr(err)
	}
	c.audit(r, "schedule.stage", res.Service, fmt.Sprintf("staged %s (%s) for the next deploy window", res.Version, res.Digest))
	return api.WriteJSON(w, http.StatusAccepted, res)
}

// handleSchedules answers GET /v1/schedules and /v1/schedules/{service}:
// each schedule's next fire times in its zone and its last runs, the
// staged package and the window state.
func (c *Controller) handleSchedules(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("service")
	if name != "" && !serviceNameRE.MatchString(name) {
		return api.BadRequest("service name %q is not valid: use 1-63 lower-case letters, digits and hyphens, starting with a letter", name)
	}
	out, err := c.orch.Schedules(name)
	if err != nil {
		return cycleErr(err)
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

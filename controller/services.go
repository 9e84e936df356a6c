package controller

import (
	"net/http"
	"regexp"
	"sort"
	"strconv"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/raftstore"
)

// serviceNameRE is the Consul service name shape cycler accepts.
var serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Service is one service as GET /v1/services shows it: its replicated state
// (nil before its first cycle) and its freeze, if any.
type Service struct {
	Name   string                  `json:"name"`
	State  *raftstore.ServiceState `json:"state,omitempty"`
	Frozen *raftstore.Freeze       `json:"frozen,omitempty"`
}

func (c *Controller) service(name string) (Service, bool) {
	out := Service{Name: name}
	if st, ok := c.store.Service(name); ok {
		out.State = &st
	}
	if f, ok := c.store.Freeze(name); ok {
		out.Frozen = &f
	}
	return out, out.State != nil || out.Frozen != nil
}

func (c *Controller) handleServices(w http.ResponseWriter, _ *http.Request) error {
	names := map[string]bool{}
	for _, st := range c.store.Services() {
		names[st.Service] = true
	}
	for _, f := range c.store.Freezes() {
		names[f.Service] = true
	}
	out := []Service{}
	for n := range names {
		s, _ := c.service(n)
		out = append(out, s)
	}
	sortServices(out)
	return api.WriteJSON(w, http.StatusOK, out)
}

func (c *Controller) handleService(w http.ResponseWriter, r *http.Request) error {
	name, err := serviceName(r)
	if err != nil {
		return err
	}
	s, ok := c.service(name)
	if !ok {
		return api.NotFound("service %q has no state yet: it has never been cycled or frozen", name)
	}
	return api.WriteJSON(w, http.StatusOK, s)
}

func (c *Controller) handleFreeze(w http.ResponseWriter, r *http.Request) error {
	name, err := serviceName(r)
	if err != nil {
		return err
	}
	var req api.FreezeRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Reason == "" {
		return api.BadRequest("a freeze needs a reason, so whoever finds it knows why; pass --reason")
	}
	if err := c.store.SetFreeze(r.Context(), raftstore.Freeze{Service: name, Reason: req.Reason, By: api.Caller(r)}, true); err != nil {
		return err
	}
	c.audit(r, "service.freeze", name, req.Reason)
	s, _ := c.service(name)
	return api.WriteJSON(w, http.StatusOK, s)
}

func (c *Controller) handleUnfreeze(w http.ResponseWriter, r *http.Request) error {
	name, err := serviceName(r)
	if err != nil {
		return err
	}
	if err := c.store.SetFreeze(r.Context(), raftstore.Freeze{Service: name}, false); err != nil {
		return err
	}
	c.audit(r, "service.unfreeze", name, "")
	s, _ := c.service(name)
	return api.WriteJSON(w, http.StatusOK, s)
}

func (c *Controller) handleAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, err := uintParam(q.Get("after"), "after", 0)
	if err != nil {
		return err
	}
	limit, err := uintParam(q.Get("limit"), "limit", 100)
	if err != nil {
		return err
	}
	entries := c.store.Audit(after, int(min(limit, raftstore.AuditRetain)))
	if entries == nil {
		entries = []raftstore.AuditEntry{}
	}
	return api.WriteJSON(w, http.StatusOK, entries)
}

func serviceName(r *http.Request) (string, error) {
	name := r.PathValue("service")
	if !serviceNameRE.MatchString(name) {
		return "", api.BadRequest("service name %q is not valid: use 1-63 lower-case letters, digits and hyphens, starting with a letter", name)
	}
	return name, nil
}

func uintParam(v, name string, def uint64) (uint64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, api.BadRequest("query parameter %s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

func sortServices(s []Service) {
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
}

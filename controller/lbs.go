package controller

import (
	"net/http"
	"sort"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/lb"
)

// LBAck is one row of GET /v1/lbs: an LB's acknowledgement for one service,
// as the LB wrote it to KV cycler/<service>/lb/<lb_id>, with its age.
type LBAck struct {
	// LBID and Service come from the KV key.
	LBID    string `json:"lb_id"`
	Service string `json:"service"`
	// Ack holds the document's fields (generation, backends, applied_at,
	// driver, checked_at, last_error, last_error_at, refused).
	lb.Ack
	// StalenessSeconds is the time since the LB last proved its set
	// (checked_at, else applied_at); null when it never has.
	StalenessSeconds *float64 `json:"staleness_seconds"`
	// Error says why the document could not be read.
	Error string `json:"error,omitempty"`
}

// handleLBs answers GET /v1/lbs[?service=NAME]: every LB acknowledgement in
// Consul, sorted by LB then service. It reads Consul directly, not the Raft
// state, so any server answers it the same way.
func (c *Controller) handleLBs(w http.ResponseWriter, r *http.Request) error {
	if c.consul == nil {
		return api.Unavailable("this server has no Consul client, so it cannot read the LB acknowledgements")
	}
	svc := r.URL.Query().Get("service")
	if svc != "" && !serviceNameRE.MatchString(svc) {
		return api.BadRequest("service name %q is not valid: use 1-63 lower-case letters, digits and hyphens, starting with a letter", svc)
	}
	entries, err := lb.ListAcks(r.Context(), c.consul)
	if err != nil {
		return api.Unavailable("reading the LB acknowledgements from Consul: %v; check that the local Consul agent is up", err)
	}
	now := time.Now()
	out := []LBAck{}
	for _, e := range entries {
		if svc != "" && e.Service != svc {
			continue
		}
		row := LBAck{LBID: e.LBID, Service: e.Service, Ack: e.Ack, Error: e.Err}
		proved := e.Ack.CheckedAt
		if proved.IsZero() {
			proved = e.Ack.AppliedAt
		}
		if !proved.IsZero() {
			s := max(now.Sub(proved).Seconds(), 0)
			row.StalenessSeconds = &s
		}
		out = append(out, row)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].LBID != out[j].LBID {
			return out[i].LBID < out[j].LBID
		}
		return out[i].Service < out[j].Service
	})
	return api.WriteJSON(w, http.StatusOK, out)
}

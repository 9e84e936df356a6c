package pool

import (
	"context"
	"fmt"
	"sort"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// maintenanceCheckPrefix starts the id of the critical check Consul adds to
// a service instance in maintenance mode; its Notes hold the reason.
const maintenanceCheckPrefix = "_service_maintenance:"

// Instance is one app instance of a service as Consul reports it.
type Instance struct {
	// ID is the Consul service instance id.
	ID string `json:"id"`
	// Node is the Consul node the instance is registered on.
	Node string `json:"node"`
	// Address is the instance address (the node's address when the
	// registration left it empty).
	Address string `json:"address"`
	// Port is the instance port.
	Port int `json:"port"`
	// Pool is the instance's cycler_pool Meta; "" when missing or invalid.
	Pool Pool `json:"pool"`
	// Version is the cycler_version Meta.
	Version string `json:"version"`
	// Passing is true when every check (node and service), maintenance
	// included, is passing.
	Passing bool `json:"passing"`
	// Maintenance is true when the instance is in service maintenance mode.
	Maintenance bool `json:"maintenance"`
	// MaintenanceReason is the reason given for maintenance mode.
	MaintenanceReason string `json:"maintenance_reason,omitempty"`
}

// Serving reports whether an LB may route to the instance: passing and not
// in maintenance.
func (i Instance) Serving() bool { return i.Passing && !i.Maintenance }

// Instances is every instance of a service at one Consul index.
type Instances struct {
	Service string     `json:"service"`
	Index   uint64     `json:"index"`
	All     []Instance `json:"instances"`
}

// Pool returns the instances of p, in id order.
func (s Instances) Pool(p Pool) []Instance {
	var out []Instance
	for _, in := range s.All {
		if in.Pool == p {
			out = append(out, in)
		}
	}
	return out
}

// fromEntries converts Consul health entries, sorted by instance id so that
// equal sets compare equal.
func fromEntries(service string, index uint64, entries []*consulapi.ServiceEntry) Instances {
	out := Instances{Service: service, Index: index, All: make([]Instance, 0, len(entries))}
	for _, e := range entries {
		in := Instance{ID: e.Service.ID, Node: e.Node.Node, Address: e.Service.Address, Port: e.Service.Port, Passing: true}
		if in.Address == "" {
			in.Address = e.Node.Address
		}
		if p, err := Parse(e.Service.Meta[MetaPool]); err == nil {
			in.Pool = p
		}
		in.Version = e.Service.Meta[MetaVersion]
		for _, c := range e.Checks {
			if c.Status != consulapi.HealthPassing {
				in.Passing = false
			}
			if strings.HasPrefix(c.CheckID, maintenanceCheckPrefix) {
				in.Maintenance = true
				in.MaintenanceReason = c.Notes
			}
		}
		out.All = append(out.All, in)
	}
	sort.Slice(out.All, func(i, j int) bool { return out.All[i].ID < out.All[j].ID })
	return out
}

// ReadInstances returns every instance of service with its health, once.
func ReadInstances(ctx context.Context, c *consulapi.Client, service string) (Instances, error) {
	entries, meta, err := c.Health().Service(service, "", false, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return Instances{}, fmt.Errorf("consul: health of service %q: %w", service, err)
	}
	return fromEntries(service, meta.LastIndex, entries), nil
}

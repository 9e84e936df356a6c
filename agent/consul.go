package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/pool"
)

// Registry is the local Consul agent, as the agent uses it.
type Registry interface {
	// Register adds or updates the app instance. It must keep the
	// instance's maintenance mode (Consul does, unless told to replace
	// existing checks).
	Register(ctx context.Context, reg *consulapi.AgentServiceRegistration) error
	// Maintenance reads whether the instance is registered and whether it
	// is in maintenance mode, with which reason.
	Maintenance(ctx context.Context, id string) (registered, on bool, reason string, err error)
	// SetMaintenance turns maintenance mode on (with reason) or off.
	SetMaintenance(ctx context.Context, id string, on bool, reason string) error
}

// consulRegistry is the Registry of a real Consul agent.
type consulRegistry struct{ c *consulapi.Client }

// NewConsulRegistry returns the Registry backed by Consul client c.
func NewConsulRegistry(c *consulapi.Client) Registry { return consulRegistry{c: c} }

// maintenanceCheckPrefix starts the id of the check Consul adds to a
// service in maintenance mode; its Notes hold the reason.
const maintenanceCheckPrefix = "_service_maintenance:"

// Register implements Registry.
func (r consulRegistry) Register(ctx context.Context, reg *consulapi.AgentServiceRegistration) error {
	// ReplaceExistingChecks stays false: true would drop the maintenance
	// check, unhiding a hidden instance on every re-registration.
	if err := r.c.Agent().ServiceRegisterOpts(reg, consulapi.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: register %q: %w", reg.ID, err)
	}
	return nil
}

// Maintenance implements Registry.
func (r consulRegistry) Maintenance(ctx context.Context, id string) (bool, bool, string, error) {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	svc, _, err := r.c.Agent().Service(id, q)
	var se consulapi.StatusError
	if errors.As(err, &se) && se.Code == 404 {
		return false, false, "", nil
	}
	if err != nil {
		return false, false, "", fmt.Errorf("consul: read service %q: %w", id, err)
	}
	if svc == nil {
		return false, false, "", nil
	}
	checks, err := r.c.Agent().ChecksWithFilterOpts(fmt.Sprintf("ServiceID == %q", id), q)
	if err != nil {
		return true, false, "", fmt.Errorf("consul: read checks of %q: %w", id, err)
	}
	if c, ok := checks[maintenanceCheckPrefix+id]; ok {
		return true, true, c.Notes, nil
	}
	return true, false, "", nil
}

// SetMaintenance implements Registry.
func (r consulRegistry) SetMaintenance(ctx context.Context, id string, on bool, reason string) error {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	if on {
		if err := r.c.Agent().EnableServiceMaintenanceOpts(id, reason, q); err != nil {
			return fmt.Errorf("consul: maintenance on for %q: %w", id, err)
		}
		return nil
	}
	if err := r.c.Agent().DisableServiceMaintenanceOpts(id, q); err != nil {
		return fmt.Errorf("consul: maintenance off for %q: %w", id, err)
	}
	return nil
}

// registration builds the app instance's Consul registration under the
// Consul contract: Meta cycler_pool and cycler_version, tag cycler-<pool>,
// and a health check matching the manifest's.
func (a *Agent) registration(version string, hc healthCheck) *consulapi.AgentServiceRegistration {
	p := pool.Pool(a.cfg.Pool)
	interval := a.cfg.CheckInterval
	check := &consulapi.AgentServiceCheck{
		CheckID:  "service:" + a.cfg.Instance,
		Name:     a.cfg.Instance + " health",
		Interval: interval.String(),
		// A probe may take the whole interval, but no longer than the
		// agent's own probes.
		Timeout: min(interval, probeTimeout).String(),
	}
	if hc.path != "" {
		check.HTTP = hc.url()
	} else {
		check.TCP = hc.addr
	}
	return &consulapi.AgentServiceRegistration{
		ID:      a.cfg.Instance,
		Name:    a.cfg.Service,
		Address: a.cfg.Address,
		Port:    a.cfg.Port,
		Tags:    []string{pool.Tag(p)},
		Meta:    map[string]string{pool.MetaPool: string(p), pool.MetaVersion: version},
		Check:   check,
	}
}

// appAddr is the app's "host:port".
func (a *Agent) appAddr() string {
	return net.JoinHostPort(a.cfg.Address, strconv.Itoa(a.cfg.Port))
}

// consulTimeout bounds one call to the local Consul agent.
const consulTimeout = 5 * time.Second

// register (re)registers the app instance for the current release and
// restores the maintenance mode the agent's state says it is in. It does
// nothing while there is no current release.
func (a *Agent) register(ctx context.Context) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	a.mu.Lock()
	cur := a.st.release(a.st.Current)
	maint := a.st.Maintenance
	a.mu.Unlock()
	if cur == nil {
		return nil
	}
	m, err := a.layout.readManifest(cur.Dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, consulTimeout)
	defer cancel()
	want := a.registration(cur.Version, healthFor(m, a.appAddr()))
	registered, on, _, err := a.reg.Maintenance(ctx, a.cfg.Instance)
	if err != nil {
		return err
	}
	// Register only what changed or went missing: every registration is
	// a catalog write that wakes the blocking queries of every watcher.
	if !registered || !reflect.DeepEqual(want, a.lastReg) {
		if err := a.reg.Register(ctx, want); err != nil {
			return err
		}
		a.lastReg = want
		// Consul keeps the maintenance check across a re-registration; a
		// new registration has none.
		on = on && registered
	}
	if !maint.Hidden || on {
		return nil
	}
	// Hidden before the first registration, or Consul (in dev mode, or
	// after losing its data) forgot the maintenance with the service.
	return a.reg.SetMaintenance(ctx, a.cfg.Instance, true, pool.HiddenReason(maint.Generation))
}

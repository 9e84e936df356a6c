package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/pool"
)

// Hide puts the instance in Consul service maintenance with the reason
// pool.HiddenReason(gen), so it leaves every passing-only view (Consul DNS,
// health?passing, LBs). It is idempotent. A generation older than the
// newest one a hide or unhide carried is refused with ErrStaleGeneration,
// so a deposed leader cannot flap the instance.
//
// The state is recorded first; when the app is not registered yet (no
// release installed) the maintenance is applied right after it is. An
// instance already hidden keeps the reason of the hide that hid it:
// Consul cannot change a reason without leaving maintenance, and leaving
// it, even briefly, would expose a hidden host.
func (a *Agent) Hide(ctx context.Context, gen uint64) (Maintenance, error) {
	return a.setHidden(ctx, gen, true)
}

// Unhide takes the instance out of maintenance; see Hide.
func (a *Agent) Unhide(ctx context.Context, gen uint64) (Maintenance, error) {
	return a.setHidden(ctx, gen, false)
}

func (a *Agent) setHidden(ctx context.Context, gen uint64, hidden bool) (Maintenance, error) {
	a.maintMu.Lock()
	defer a.maintMu.Unlock()
	a.mu.Lock()
	m := a.st.Maintenance
	if gen < m.Generation {
		a.mu.Unlock()
		return m, fmt.Errorf("%w: generation %d is older than generation %d, which this instance already acted on; "+
			"the caller's view of the service is out of date", ErrStaleGeneration, gen, m.Generation)
	}
	changed := m.Hidden != hidden || m.Generation != gen
	m.Hidden, m.Generation = hidden, gen
	if !hidden {
		m.Reason = ""
	}
	a.st.Maintenance = m
	var err error
	if changed {
		err = a.saveLocked()
	}
	hasRelease := a.st.Current != ""
	a.mu.Unlock()
	if err != nil {
		return m, err
	}
	if !hasRelease {
		// Nothing is registered yet; register applies it.
		return m, nil
	}
	ctx, cancel := context.WithTimeout(ctx, consulTimeout)
	defer cancel()
	registered, on, reason, err := a.reg.Maintenance(ctx, a.cfg.Instance)
	if err == nil && !registered {
		err = a.register(ctx)
		if err == nil {
			_, on, reason, err = a.reg.Maintenance(ctx, a.cfg.Instance)
		}
	}
	if err == nil && on != hidden {
		reason = ""
		if hidden {
			reason = pool.HiddenReason(gen)
		}
		err = a.reg.SetMaintenance(ctx, a.cfg.Instance, hidden, reason)
	}
	if err != nil {
		return m, fmt.Errorf("%w: the instance is recorded as hidden=%t (generation %d) and the agent keeps retrying, but Consul "+
			"was not updated yet: %v; check the local Consul agent", ErrConsul, hidden, gen, err)
	}
	m.Reason = reason
	a.mu.Lock()
	a.st.Maintenance.Reason = reason
	a.mu.Unlock()
	if changed {
		a.log.Info("maintenance set", zap.Bool("hidden", hidden), zap.Uint64("generation", gen), zap.String("reason", reason))
	}
	return m, nil
}

// Inventory reports what is installed and running, probing the app's
// health and reading Consul for this answer.
func (a *Agent) Inventory(ctx context.Context) Inventory {
	select {
	case <-a.adopted:
	case <-ctx.Done():
	}
	a.mu.Lock()
	st := a.st.clone()
	a.mu.Unlock()
	inv := Inventory{
		Service: a.cfg.Service, Instance: a.cfg.Instance, Pool: a.cfg.Pool, Node: a.cfg.Node,
		Address: a.cfg.Address, Port: a.cfg.Port,
		Current: st.release(st.Current), Previous: st.release(st.Previous),
		Maintenance: st.Maintenance, LastInstall: st.LastInstall,
		Releases: []Release{},
	}
	if dirs, err := a.layout.listReleases(); err == nil {
		for _, d := range dirs {
			if r := st.release(d); r != nil {
				inv.Releases = append(inv.Releases, *r)
				continue
			}
			r := Release{Dir: d, Version: versionOf(d)}
			if fi, err := os.Stat(filepath.Join(a.layout.releases(), d)); err == nil {
				r.InstalledAt = fi.ModTime().UTC()
			}
			inv.Releases = append(inv.Releases, r)
		}
	}
	a.jobMu.Lock()
	if a.job != nil {
		p := a.job.prog
		inv.Installing = &p
	}
	a.jobMu.Unlock()

	inv.App = AppStatus{Mode: ModeNone, Health: HealthUnknown}
	if inv.Current != nil {
		if m, err := a.layout.readManifest(inv.Current.Dir); err == nil {
			inv.App.Mode = a.mode(m)
			if err := healthFor(m, a.appAddr()).probe(ctx); err != nil {
				inv.App.Health, inv.App.HealthError = HealthFailing, err.Error()
			} else {
				inv.App.Health = HealthPassing
			}
		} else {
			inv.App.Health, inv.App.HealthError = HealthFailing, err.Error()
		}
	}
	inv.App.PID, inv.App.Running, inv.App.Adopted, inv.App.Restarts = a.sup.status()

	cctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if registered, on, reason, err := a.reg.Maintenance(cctx, a.cfg.Instance); err != nil {
		inv.ConsulError = err.Error()
	} else if registered {
		inv.Maintenance.Reason = reason
		switch {
		case on && !inv.Maintenance.Hidden:
			inv.ConsulError = "Consul shows the instance in maintenance, but the agent did not hide it: someone else set it; unhide it to clear it"
		case !on && inv.Maintenance.Hidden:
			inv.ConsulError = "the agent records the instance as hidden, but Consul does not show maintenance yet; the agent retries every 10s"
		}
	}
	return inv
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/raftstore"
)

// Refusal is a cycle that was not started; nothing changed. The API answers
// it as 409 "refused" and cyclerctl exits 2.
type Refusal struct {
	Reason string
	// cold marks the refusal of a rollback whose standby pool is not warm;
	// Rollback then redeploys the previous package instead.
	cold bool
}

func (r *Refusal) Error() string { return r.Reason }

func refuse(format string, args ...any) error { return &Refusal{Reason: fmt.Sprintf(format, args...)} }

// Errors Start and the operator actions return for bad requests.
var (
	// ErrUnknownService: no service of that name is defined in the config.
	ErrUnknownService = errors.New("unknown service")
	// ErrUnknownPackage: no package with that digest was pushed.
	ErrUnknownPackage = errors.New("unknown package")
	// ErrUnknownCycle: no cycle with that id.
	ErrUnknownCycle = errors.New("unknown cycle")
)

// preflight checks that a cycle may start now. It writes nothing. self is
// the id of the cycle being checked (its own lock is not a conflict).
func (o *Orchestrator) preflight(ctx context.Context, spec Spec, kind cycle.Kind, forced bool, self string) error {
	if err := o.admit(spec, kind, forced, self); err != nil {
		return err
	}
	return o.preflightHosts(ctx, spec, kind)
}

// admit is the part of preflight that reads only the replicated state and
// the config: freezes, the breaker, the windows and the per-service lock.
// The scheduler asks it before claiming a fire, so a refused fire is one
// skip record rather than a claim and its undoing.
func (o *Orchestrator) admit(spec Spec, kind cycle.Kind, forced bool, self string) error {
	svc := spec.Name
	if f, ok := o.cfg.Store.Freeze(svc); ok {
		return refuse("service %q is frozen by %s since %s: %s; `cyclerctl unfreeze %s` lifts it (--force does not)", svc, f.By, f.At.UTC().Format(time.RFC3339), f.Reason, svc)
	}
	if spec.Freeze != "" {
		return refuse("service %q is frozen by the server config: %s; remove its freeze block to lift it", svc, spec.Freeze)
	}
	if kind != cycle.KindRollback {
		if open, why := o.breakers.open(svc, spec); open {
			return refuse("%s", why)
		}
		if !forced {
			if ok, next := inWindows(spec.Windows, o.now()); !ok {
				return refuse("service %q is outside its deploy windows; the next one opens at %s; pass --force to start anyway (it is audited)", svc, next)
			}
		}
	}
	if last, ok := o.cfg.Store.LastCycle(svc); ok && last.Active() && last.ID != self {
		return refuse("cycle %s of %q is in phase %s; wait for it, or stop it with `cyclerctl abort %s`", last.ID, svc, last.Phase, last.ID)
	}
	return nil
}

// preflightHosts is the part of preflight that asks the agents, the LBs
// and Consul.
func (o *Orchestrator) preflightHosts(ctx context.Context, spec Spec, kind cycle.Kind) error {
	svc := spec.Name
	st, has := o.cfg.Store.Service(svc)
	target := raftstore.PoolBlue
	if has {
		target = other(st.Live)
	}
	agents, err := o.cfg.Fleet.Agents(ctx, svc)
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	var hosts []fleet.Agent
	for _, a := range agents {
		if a.Pool == target {
			hosts = append(hosts, a)
		}
	}
	if len(hosts) == 0 {
		return refuse("no cyclerd-agent is registered in Consul for pool %s of %q; start the agents of that pool first", target, svc)
	}
	invs, errs := o.inventories(ctx, hosts)
	var unreachable []string
	for i, err := range errs {
		if err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", hosts[i].Instance, err))
		}
	}
	if len(unreachable) > spec.failureLimit(len(hosts)) {
		return refuse("agents of pool %s cannot be reached: %s", target, strings.Join(unreachable, "; "))
	}
	if kind == cycle.KindRollback {
		want := poolRelease(st, target)
		warm := 0
		for i, inv := range invs {
			if errs[i] == nil && inv.Current != nil && inv.Current.Digest == want.Digest && inv.App.Health == agent.HealthPassing {
				warm++
			}
		}
		if warm < spec.MinLive {
			return &Refusal{cold: true, Reason: fmt.Sprintf("the standby pool %s is not warm: %d of its hosts run %s and pass their health check, fewer than min_live %d",
				target, warm, want.Version, spec.MinLive)}
		}
	}
	if !has || poolRelease(st, st.Live).IsZero() {
		return nil // nothing is live yet: there is no traffic to protect
	}
	if err := o.waitAcks(ctx, svc, st.Generation); err != nil {
		return refuse("not every LB serves the current generation: %s", strings.TrimPrefix(err.Error(), "waiting: "))
	}
	live := poolIDs(mapAgents(agents), st.Live)
	n, err := o.serving(ctx, svc, live)
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if n < spec.MinLive {
		return refuse("the live pool %s has %d serving instances, fewer than min_live %d; fix it before cycling", st.Live, n, spec.MinLive)
	}
	return nil
}

func mapAgents(list []fleet.Agent) map[string]fleet.Agent {
	out := make(map[string]fleet.Agent, len(list))
	for _, a := range list {
		out[a.Instance] = a
	}
	return out
}

// inventories asks every agent at once.
func (o *Orchestrator) inventories(ctx context.Context, hosts []fleet.Agent) ([]agent.Inventory, []error) {
	invs := make([]agent.Inventory, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, a := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			invs[i], errs[i] = o.cfg.Fleet.Inventory(ctx, a)
		}()
	}
	wg.Wait()
	return invs, errs
}

// StartRequest is a cycle to start.
type StartRequest struct {
	cycle.StartRequest
	// By is the token name (or "scheduler"); Trigger is "manual",
	// "rollback" or "schedule:<name>".
	By, Trigger string
	// Kind is the cycle's kind; empty means a deploy.
	Kind cycle.Kind
}

// Start checks and commits a new cycle, which Run then drives. It must run
// on the leader.
func (o *Orchestrator) Start(ctx context.Context, req StartRequest) (cycle.Cycle, error) {
	pkg, ok := o.cfg.Store.Package(req.Digest)
	if !ok {
		return cycle.Cycle{}, fmt.Errorf("%w: no package %s was pushed; push it with `cyclerctl package push FILE` or pass the file to deploy", ErrUnknownPackage, req.Digest)
	}
	svc := req.Service
	if svc == "" {
		svc = pkg.Name
	}
	spec, ok := o.spec(svc)
	if !ok {
		return cycle.Cycle{}, fmt.Errorf("%w: %q is not defined in the servers' config (service blocks); pass --service", ErrUnknownService, svc)
	}
	if pkg.Name != svc {
		return cycle.Cycle{}, refuse("package %s is named %q in its manifest, not %q; deploy it to its own service", req.Digest, pkg.Name, svc)
	}
	if last, ok := o.cfg.Store.LastCycle(svc); ok && req.RequestID != "" && last.RequestID == req.RequestID {
		return last, nil // a retried request: answer as the first attempt did
	}
	kind := req.Kind
	if kind == "" {
		kind = cycle.KindDeploy
	}
	if err := o.preflight(ctx, spec, kind, req.Force, ""); err != nil {
		return cycle.Cycle{}, err
	}
	st, has := o.cfg.Store.Service(svc)
	c := cycle.Cycle{Service: svc, Kind: kind, Trigger: req.Trigger, By: req.By, Forced: req.Force, RequestID: req.RequestID,
		Package: cycle.Release{Version: pkg.Version, Digest: pkg.Digest}, Target: raftstore.PoolBlue,
		Phase: cycle.Preflight, Message: "preflight passed"}
	if has {
		c.From, c.Target, c.BaseGeneration = st.Live, other(st.Live), st.Generation
		c.Previous = poolRelease(st, st.Live)
		if c.Previous.IsZero() {
			c.From = ""
		}
	}
	if kind == cycle.KindRecycle {
		if !has || c.Previous.IsZero() {
			return cycle.Cycle{}, refuse("service %q has no live version to recycle the standby pool to", svc)
		}
		c.Package = c.Previous
	}
	created, err := o.cfg.Store.CreateCycle(ctx, c)
	if errors.Is(err, cycle.ErrInProgress) {
		return cycle.Cycle{}, refuse("%v", err)
	}
	if err == nil {
		o.cfg.Observer.SetCycleActive(svc, true)
	}
	return created, err
}

// Rollback flips service to its warm standby pool when that pool holds
// the release that was live before and is healthy, with no install.
// Otherwise it starts a deploy cycle of the previous package.
func (o *Orchestrator) Rollback(ctx context.Context, service, by string, req cycle.RollbackRequest) (cycle.Cycle, error) {
	force := req.Force
	spec, ok := o.spec(service)
	if !ok {
		return cycle.Cycle{}, fmt.Errorf("%w: %q is not defined in the servers' config", ErrUnknownService, service)
	}
	if last, ok := o.cfg.Store.LastCycle(service); ok && req.RequestID != "" && last.RequestID == req.RequestID {
		return last, nil
	}
	st, has := o.cfg.Store.Service(service)
	if !has || poolRelease(st, st.Live).IsZero() {
		return cycle.Cycle{}, refuse("service %q has nothing live yet, so there is nothing to roll back", service)
	}
	live, standby := poolRelease(st, st.Live), other(st.Live)
	prev := o.previousRelease(service, live)
	sb := poolRelease(st, standby)
	if !sb.IsZero() && sb != live && (prev.IsZero() || sb == prev) {
		err := o.preflight(ctx, spec, cycle.KindRollback, force, "")
		var r *Refusal
		if err == nil {
			return o.createRollback(ctx, cycle.Cycle{Service: service, Kind: cycle.KindRollback, Trigger: "rollback", By: by, Forced: force,
				RequestID: req.RequestID, Package: sb, Previous: live, From: st.Live, Target: standby, BaseGeneration: st.Generation,
				Phase: cycle.Preflight, Message: "rollback to the warm standby"})
		}
		if !errors.As(err, &r) || !r.cold {
			return cycle.Cycle{}, err
		}
		// A cold standby: fall through to redeploying the previous package.
	}
	if prev.IsZero() {
		return cycle.Cycle{}, refuse("the standby pool %s is not warm on an earlier release and no earlier release of %q is recorded; deploy the release you want", standby, service)
	}
	if _, ok := o.cfg.Store.Package(prev.Digest); !ok {
		return cycle.Cycle{}, refuse("the previous release %s (%s) is no longer in the package store; push it again and deploy it", prev.Version, prev.Digest)
	}
	return o.Start(ctx, StartRequest{StartRequest: cycle.StartRequest{Service: service, Digest: prev.Digest, Force: force, RequestID: req.RequestID}, By: by, Trigger: "rollback"})
}

// createRollback commits an instant rollback cycle with the standby
// pool's hosts, which it unhides in its switch step.
func (o *Orchestrator) createRollback(ctx context.Context, c cycle.Cycle) (cycle.Cycle, error) {
	agents, err := o.cfg.Fleet.Agents(ctx, c.Service)
	if err != nil {
		return cycle.Cycle{}, err
	}
	for _, a := range agents {
		if a.Pool == c.Target {
			c.Hosts = append(c.Hosts, cycle.Host{Instance: a.Instance, Pool: a.Pool})
		}
	}
	created, err := o.cfg.Store.CreateCycle(ctx, c)
	if errors.Is(err, cycle.ErrInProgress) {
		return cycle.Cycle{}, refuse("%v", err)
	}
	return created, err
}

// previousRelease is the release that was live before live, from the
// newest finished cycle that put live in place.
func (o *Orchestrator) previousRelease(service string, live cycle.Release) cycle.Release {
	for _, c := range o.cfg.Store.Cycles(service, 0) {
		if c.Phase == cycle.Done && c.Package == live && c.Kind != cycle.KindRecycle {
			return c.Previous
		}
	}
	return cycle.Release{}
}

// Abort asks cycle id to stop at its next step.
func (o *Orchestrator) Abort(ctx context.Context, id, reason string) (cycle.Cycle, error) {
	if reason == "" {
		reason = "no reason given"
	}
	return o.operator(ctx, id, func(c *cycle.Cycle) { c.AbortRequested = reason })
}

// Pause holds cycle id before its next step; Resume lets it go on.
func (o *Orchestrator) Pause(ctx context.Context, id string, paused bool) (cycle.Cycle, error) {
	return o.operator(ctx, id, func(c *cycle.Cycle) { c.Paused = paused })
}

func (o *Orchestrator) operator(ctx context.Context, id string, fn func(c *cycle.Cycle)) (cycle.Cycle, error) {
	if _, ok := o.cfg.Store.Cycle(id); !ok {
		return cycle.Cycle{}, fmt.Errorf("%w: %s", ErrUnknownCycle, id)
	}
	return o.patch(ctx, id, fn)
}

// Breaker returns the breaker of service, read from this server's state.
func (o *Orchestrator) Breaker(service string) (cycle.BreakerStatus, error) {
	spec, ok := o.spec(service)
	if !ok {
		return cycle.BreakerStatus{}, fmt.Errorf("%w: %q", ErrUnknownService, service)
	}
	st := o.breakers.status(service, spec)
	o.cfg.Observer.SetBreaker(service, st.State)
	return st, nil
}

// Breakers returns every defined service's breaker.
func (o *Orchestrator) Breakers() []cycle.BreakerStatus {
	var out []cycle.BreakerStatus
	for _, name := range sortedKeys(o.cfg.Services()) {
		if st, err := o.Breaker(name); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// ResetBreaker closes the breaker of service. It must run on the leader.
func (o *Orchestrator) ResetBreaker(ctx context.Context, service string) (cycle.BreakerStatus, error) {
	if _, ok := o.spec(service); !ok {
		return cycle.BreakerStatus{}, fmt.Errorf("%w: %q", ErrUnknownService, service)
	}
	if err := o.breakers.reset(ctx, service); err != nil {
		return cycle.BreakerStatus{}, err
	}
	return o.Breaker(service)
}

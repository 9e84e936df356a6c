package orchestrator

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/smoke"
)

// serving counts the instances of ids that Consul reports passing and not
// in maintenance: the ones an LB will accept.
func (o *Orchestrator) serving(ctx context.Context, service string, ids []string) (int, error) {
	insts, err := o.cfg.Discovery.Instances(ctx, service)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range insts.All {
		if in.Serving() && slices.Contains(ids, in.ID) {
			n++
		}
	}
	return n, nil
}

func (c cycleHosts) good() []string {
	var out []string
	for _, h := range c {
		if !h.Failed {
			out = append(out, h.Instance)
		}
	}
	return out
}

func (c cycleHosts) failed() []string {
	var out []string
	for _, h := range c {
		if h.Failed {
			out = append(out, h.Instance)
		}
	}
	return out
}

type cycleHosts []cycle.Host

// setHidden hides or unhides the instances ids for gen, hideParallel at a
// time (one at a time, a pool of hundreds would take seconds of round
// trips); strict makes any error fatal to the step (the first, in id
// order), otherwise errors are logged and skipped. The order among ids does
// not matter: the step that calls it publishes nothing until all are done.
func (o *Orchestrator) setHidden(ctx context.Context, log *zap.Logger, agents map[string]fleet.Agent, ids []string, gen uint64, hidden, strict bool) error {
	errs := make([]error, len(ids))
	forEach(len(ids), hideParallel, func(i int) {
		id := ids[i]
		a, ok := agents[id]
		if !ok {
			if strict {
				errs[i] = fmt.Errorf("instance %s has no cyclerd-agent registered in Consul", id)
			}
			return
		}
		if _, err := o.cfg.Fleet.SetHidden(ctx, a, gen, hidden); err != nil {
			if strict {
				errs[i] = fmt.Errorf("set hidden=%t on %s: %w", hidden, id, err)
				return
			}
			log.Warn("maintenance not set", zap.String("instance", id), zap.Bool("hidden", hidden), zap.Error(err))
		}
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- switch ----

// switchStep makes the target pool live. The order matters: the target
// hosts leave maintenance first (the LBs ignore them, because the published
// live pool is still the old one), then the new generation is committed and
// published, so an LB that reads it finds a full, healthy live set at once
// and never applies a partial one. Only after every LB acked does the old
// pool go into maintenance.
func (o *Orchestrator) switchStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	st, _ := o.cfg.Store.Service(c.Service)
	if c.SwitchGeneration == 0 {
		c.SwitchGeneration = max(st.Generation, c.HideGeneration) + 1
		c.LBs = nil
		_, err := o.update(ctx, c)
		return err
	}
	gen := c.SwitchGeneration
	agents, err := o.agentsByInstance(ctx, c.Service)
	if err != nil {
		return err
	}
	good := cycleHosts(c.Hosts).good()
	if st.Generation < gen {
		if err := o.setHidden(ctx, log, agents, good, gen, false, true); err != nil {
			return err
		}
		n, err := o.serving(ctx, c.Service, good)
		if err != nil {
			return err
		}
		if n < spec.MinLive {
			return waiting("%d of pool %s's %d hosts pass their Consul checks, fewer than min_live %d", n, c.Target, len(good), spec.MinLive)
		}
		next := st
		next.Service, next.Generation, next.Live = c.Service, gen, c.Target
		setPoolRelease(&next, c.Target, c.Package)
		next.Hidden = union(poolIDs(agents, other(c.Target)), cycleHosts(c.Hosts).failed())
		_, err = o.cfg.Store.SetServiceState(ctx, next)
		return err
	}
	if err := o.cfg.Discovery.PublishState(ctx, c.Service, toPoolState(st)); err != nil {
		return err
	}
	lbs, acks, behind, err := o.lbAcks(ctx, c.Service, gen)
	if err != nil {
		return err
	}
	if recorded, err := o.recordAcks(ctx, c, gen, st.UpdatedAt, lbs, acks); err != nil || recorded {
		return err
	}
	if err := behindErr(gen, behind); err != nil {
		return err
	}
	if probe := o.probeLBs(ctx, c, spec); probe != "" {
		o.breakers.failure(c.Service, spec)
		return o.move(ctx, log, c, cycle.FlipBack, "flipping back: the switch probe through the LBs failed: "+probe)
	}
	_ = o.setHidden(ctx, log, agents, poolIDs(agents, other(c.Target)), gen, true, false)
	c.BakeUntil = o.now().Add(spec.BakeTime)
	return o.move(ctx, log, c, cycle.Bake, fmt.Sprintf("every LB serves pool %s (generation %d); baking for %s", c.Target, gen, spec.BakeTime))
}

// recordAcks adds the LBs that acked gen to c.LBs, with the time from the
// commit of gen (committed) to now. It reports whether it committed anything.
func (o *Orchestrator) recordAcks(ctx context.Context, c cycle.Cycle, gen uint64, committed time.Time, lbs []LBInfo, acks map[string]lb.Ack) (bool, error) {
	var add []cycle.LB
	for _, l := range lbs {
		if acks[l.ID].Generation < gen || hasLB(c.LBs, l.ID) {
			continue
		}
		now := o.now()
		d := now.Sub(committed)
		add = append(add, cycle.LB{ID: l.ID, Generation: acks[l.ID].Generation, AckedAt: now, AckMS: d.Milliseconds()})
		o.cfg.Observer.LBAck(c.Service, l.ID, d)
	}
	if len(add) == 0 {
		return false, nil
	}
	_, err := o.patch(ctx, c.ID, func(c *cycle.Cycle) {
		for _, l := range add {
			if !hasLB(c.LBs, l.ID) {
				c.LBs = append(c.LBs, l)
			}
		}
	})
	return true, err
}

func hasLB(lbs []cycle.LB, id string) bool {
	return slices.ContainsFunc(lbs, func(l cycle.LB) bool { return l.ID == id })
}

// lbTargets turns the LBs' front-end URLs into smoke targets.
func (o *Orchestrator) lbTargets(ctx context.Context, service, version string) ([]smoke.Target, error) {
	lbs, err := o.cfg.Discovery.LBs(ctx, service)
	if err != nil {
		return nil, err
	}
	var out []smoke.Target
	for _, l := range lbs {
		if l.FrontendURL == "" {
			continue
		}
		u, err := url.Parse(l.FrontendURL)
		if err != nil {
			continue
		}
		port := 80
		if u.Scheme == "https" {
			port = 443
		}
		if p := u.Port(); p != "" {
			port, _ = strconv.Atoi(p)
		}
		out = append(out, smoke.Target{Host: u.Hostname(), Port: port, Scheme: u.Scheme, Version: version, InstanceID: l.ID})
	}
	return out, nil
}

// probeLBs runs the bake checks once through every LB. It returns "" when
// they pass (or there are none) and what failed otherwise.
func (o *Orchestrator) probeLBs(ctx context.Context, c cycle.Cycle, spec Spec) string {
	if len(spec.Bake) == 0 {
		return ""
	}
	targets, err := o.lbTargets(ctx, c.Service, c.Package.Version)
	if err != nil {
		return err.Error()
	}
	var bad []string
	for _, r := range o.cfg.Smoke.RunAll(ctx, targets, spec.Bake, len(targets)) {
		if r.Passed {
			continue
		}
		for _, f := range r.Failed() {
			bad = append(bad, fmt.Sprintf("lb %s: %s: %s", r.Target.InstanceID, f.Name, f.Error))
		}
	}
	return strings.Join(bad, "; ")
}

// ---- bake ----

func (o *Orchestrator) bakeStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	if !o.now().Before(c.BakeUntil) {
		return o.move(ctx, log, c, cycle.Standby, fmt.Sprintf("baked for %s (%d rounds passed)", spec.BakeTime, c.BakeRounds))
	}
	var problem string
	good := cycleHosts(c.Hosts).good()
	n, err := o.serving(ctx, c.Service, good)
	switch {
	case err != nil:
		return err
	case n < spec.MinLive:
		problem = fmt.Sprintf("only %d of the new live pool's %d hosts pass their Consul checks (min_live %d)", n, len(good), spec.MinLive)
	default:
		problem = o.probeLBs(ctx, c, spec)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if problem != "" {
		o.breakers.failure(c.Service, spec)
		c.BakeFailures = append(c.BakeFailures, problem)
		return o.move(ctx, log, c, cycle.FlipBack, "flipping back: bake failed: "+problem)
	}
	next, err := o.patch(ctx, c.ID, func(c *cycle.Cycle) { c.BakeRounds++ })
	if err != nil {
		return err
	}
	wait := min(spec.BakeInterval, next.BakeUntil.Sub(o.now()))
	if wait > 0 && !sleep(ctx, wait) {
		return ctx.Err()
	}
	return nil
}

// ---- standby and done ----

func (o *Orchestrator) standbyStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	gen := c.SwitchGeneration
	agents, err := o.agentsByInstance(ctx, c.Service)
	if err != nil {
		return err
	}
	old := poolIDs(agents, other(c.Target))
	if err := o.setHidden(ctx, log, agents, old, gen, true, true); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s is live on pool %s (generation %d)", c.Package.Version, c.Target, gen)
	st, _ := o.cfg.Store.Service(c.Service)
	if spec.Standby == config.StandbyRefresh && c.Kind == cycle.KindDeploy && poolRelease(st, other(c.Target)) != c.Package {
		for _, id := range old {
			step := o.install(ctx, log, c, agents, id)
			if step == nil {
				return ctx.Err()
			}
			if !step.OK {
				return fmt.Errorf("refresh standby %s: %s", id, step.Error)
			}
		}
		next := st
		next.Generation++
		setPoolRelease(&next, other(c.Target), c.Package)
		_, err := o.cfg.Store.SetServiceState(ctx, next)
		return err
	}
	if r := poolRelease(st, other(c.Target)); !r.IsZero() {
		msg += fmt.Sprintf("; standby pool %s holds %s, hidden", other(c.Target), r.Version)
	}
	if err := o.cfg.Discovery.PublishState(ctx, c.Service, toPoolState(st)); err != nil {
		return err
	}
	o.breakers.success(c.Service, spec)
	return o.finish(ctx, log, c, cycle.Done, msg)
}

// ---- flip back ----

// flipBackStep makes the pool that was live before the switch live again,
// in the same order as a switch: unhide it, publish, wait for every ack,
// then hide the failed pool.
func (o *Orchestrator) flipBackStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	reason := strings.TrimPrefix(c.Message, "flipping back: ")
	if c.From == "" || c.Previous.IsZero() {
		return o.finish(ctx, log, c, cycle.RolledBack, reason+"; there was no live pool before this cycle to flip back to, so pool "+c.Target+" stays live")
	}
	st, _ := o.cfg.Store.Service(c.Service)
	if c.FlipGeneration == 0 {
		c.FlipGeneration = max(st.Generation, c.SwitchGeneration) + 1
		_, err := o.update(ctx, c)
		return err
	}
	gen := c.FlipGeneration
	agents, err := o.agentsByInstance(ctx, c.Service)
	if err != nil {
		return err
	}
	back := poolIDs(agents, c.From)
	if st.Generation < gen {
		if err := o.setHidden(ctx, log, agents, back, gen, false, true); err != nil {
			return err
		}
		if n, err := o.serving(ctx, c.Service, back); err != nil {
			return err
		} else if n < spec.MinLive {
			return waiting("%d of pool %s's hosts pass their Consul checks, fewer than min_live %d", n, c.From, spec.MinLive)
		}
		next := st
		next.Generation, next.Live = gen, c.From
		next.Hidden = poolIDs(agents, c.Target)
		_, err := o.cfg.Store.SetServiceState(ctx, next)
		return err
	}
	if err := o.cfg.Discovery.PublishState(ctx, c.Service, toPoolState(st)); err != nil {
		return err
	}
	kept, err := o.flipBackAcks(ctx, c, gen)
	if err != nil {
		return err
	}
	_ = o.setHidden(ctx, log, agents, poolIDs(agents, c.Target), gen, true, false)
	msg := fmt.Sprintf("%s; traffic is back on pool %s (%s, generation %d)", reason, c.From, c.Previous.Version, gen)
	if len(kept) > 0 {
		msg += "; " + strings.Join(kept, "; ")
	}
	return o.finish(ctx, log, c, cycle.RolledBack, msg)
}

// flipBackAcks returns nil once every LB serves pool c.From again: it acked
// gen, or it never applied the switch at all. The second case matters when
// the switch failed because an LB could not apply anything (its config
// check fails, say): that LB still serves the set of a generation from
// before the switch, in which c.From was live (preflight made every LB ack
// c.BaseGeneration first), and it could not ack gen either, so waiting for
// it would hold the flip back, and the service's lock, forever. Such LBs
// are described in kept.
func (o *Orchestrator) flipBackAcks(ctx context.Context, c cycle.Cycle, gen uint64) (kept []string, err error) {
	lbs, acks, _, err := o.lbAcks(ctx, c.Service, gen)
	if err != nil {
		return nil, err
	}
	var behind []string
	for _, l := range lbs {
		a := acks[l.ID]
		switch {
		case a.Generation >= gen:
		case a.Generation >= c.BaseGeneration && a.Generation < c.SwitchGeneration:
			kept = append(kept, fmt.Sprintf("LB %s never applied the switch, so it kept serving pool %s: %s", l.ID, c.From, describeAck(l.ID, a)))
		default:
			behind = append(behind, describeAck(l.ID, a))
		}
	}
	return kept, behindErr(gen, behind)
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/pool"
	"github.com/cyclerhq/cycler/raftstore"
	"github.com/cyclerhq/cycler/smoke"
)

// patch re-reads cycle id, applies fn and commits, retrying when an
// operator's change (pause, abort) landed in between. Steps use it to
// record results that took a while to gather.
func (o *Orchestrator) patch(ctx context.Context, id string, fn func(c *cycle.Cycle)) (cycle.Cycle, error) {
	for {
		c, ok := o.cfg.Store.Cycle(id)
		if !ok {
			return cycle.Cycle{}, fmt.Errorf("cycle %s is gone", id)
		}
		if c.Phase.Terminal() {
			return c, cycle.ErrFinished
		}
		fn(&c)
		next, err := o.update(ctx, c)
		if errors.Is(err, cycle.ErrConflict) {
			continue
		}
		return next, err
	}
}

// agentsByInstance lists the service's agents.
func (o *Orchestrator) agentsByInstance(ctx context.Context, service string) (map[string]fleet.Agent, error) {
	list, err := o.cfg.Fleet.Agents(ctx, service)
	if err != nil {
		return nil, err
	}
	out := make(map[string]fleet.Agent, len(list))
	for _, a := range list {
		out[a.Instance] = a
	}
	return out, nil
}

func poolIDs(agents map[string]fleet.Agent, p string) []string {
	var out []string
	for id, a := range agents {
		if a.Pool == p {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// hideParallel is how many agents a hide step calls at once.
const hideParallel = 32

// forEach calls fn(0) to fn(n-1), at most limit at a time, and returns
// when every call has.
func forEach(n, limit int, fn func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// ---- preflight ----

func (o *Orchestrator) preflightStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	if err := o.preflight(ctx, spec, c.Kind, c.Forced, c.ID); err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			return o.finish(ctx, log, c, cycle.Aborted, "preflight: "+r.Reason)
		}
		return err
	}
	if c.Kind == cycle.KindRollback {
		return o.move(ctx, log, c, cycle.Switch, fmt.Sprintf("flipping to the warm standby pool %s on %s", c.Target, c.Package.Version))
	}
	return o.move(ctx, log, c, cycle.Hide, fmt.Sprintf("hiding pool %s", c.Target))
}

// ---- hide ----

func (o *Orchestrator) hideStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	agents, err := o.agentsByInstance(ctx, c.Service)
	if err != nil {
		return err
	}
	if len(c.Hosts) == 0 {
		ids := poolIDs(agents, c.Target)
		if len(ids) == 0 {
			return o.finish(ctx, log, c, cycle.Aborted, fmt.Sprintf("no cyclerd-agent is registered for pool %s of %q", c.Target, c.Service))
		}
		for _, id := range ids {
			c.Hosts = append(c.Hosts, cycle.Host{Instance: id, Pool: c.Target})
		}
		_, err := o.update(ctx, c)
		return err
	}
	st, has := o.cfg.Store.Service(c.Service)
	ids := make([]string, 0, len(c.Hosts))
	for _, h := range c.Hosts {
		ids = append(ids, h.Instance)
	}
	if c.HideGeneration == 0 {
		if has && len(union(st.Hidden, ids)) == len(st.Hidden) {
			// Already hidden (the standby of the last cycle): no new
			// generation and no drain are needed.
			c.HideGeneration, c.DrainUntil = st.Generation, o.now()
		} else {
			c.HideGeneration = st.Generation + 1
		}
		_, err := o.update(ctx, c)
		return err
	}
	gen := c.HideGeneration
	if !has || st.Generation < gen {
		next := st
		if !has {
			next = raftstore.ServiceState{Service: c.Service, Live: other(c.Target)}
		}
		next.Generation, next.Hidden = gen, union(st.Hidden, ids)
		_, err := o.cfg.Store.SetServiceState(ctx, next)
		return err
	}
	if err := o.cfg.Discovery.PublishState(ctx, c.Service, toPoolState(st)); err != nil {
		return err
	}
	// Every host is asked at once (hideParallel at a time): each hide is
	// an agent call that waits on its local Consul, and a pool of hundreds
	// asked one by one would take seconds even when all are hidden already.
	fails := make([]string, len(c.Hosts))
	errs := make([]error, len(c.Hosts))
	forEach(len(c.Hosts), hideParallel, func(i int) {
		h := c.Hosts[i]
		if h.Failed {
			return
		}
		a, ok := agents[h.Instance]
		if !ok {
			fails[i] = h.Instance + ": its cyclerd-agent is no longer registered in Consul"
			return
		}
		if _, err := o.cfg.Fleet.SetHidden(ctx, a, gen, true); err != nil {
			if !a.Passing {
				fails[i] = fmt.Sprintf("%s: agent unreachable and failing in Consul: %v", h.Instance, err)
				return
			}
			errs[i] = fmt.Errorf("hide %s: %w", h.Instance, err)
		}
	})
	for _, err := range errs {
		if err != nil {
			return err // the first, in host order; the step is retried whole
		}
	}
	var failed []string
	for _, f := range fails {
		if f != "" {
			failed = append(failed, f)
		}
	}
	if len(failed) > 0 {
		return o.hostFailures(ctx, log, c, spec, failed, "hide")
	}
	if has && !poolRelease(st, st.Live).IsZero() {
		if err := o.awaitAcks(ctx, c.Service, gen); err != nil {
			return err
		}
	}
	if c.DrainUntil.IsZero() {
		c.DrainUntil = o.now().Add(spec.Drain)
		_, err := o.update(ctx, c)
		return err
	}
	if d := c.DrainUntil.Sub(o.now()); d > 0 {
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
	return o.move(ctx, log, c, cycle.Deploy, fmt.Sprintf("deploying %s to pool %s", c.Package.Version, c.Target))
}

// hostFailures marks hosts failed (each "instance: why"), counts them
// against the breaker and aborts the cycle past the failure limit.
func (o *Orchestrator) hostFailures(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec, failed []string, step string) error {
	now := o.now()
	next, err := o.patch(ctx, c.ID, func(c *cycle.Cycle) {
		for _, f := range failed {
			id, why, _ := strings.Cut(f, ": ")
			if h := c.Host(id); h != nil && !h.Failed {
				h.Failed = true
				if h.Deploy == nil {
					h.Deploy = &cycle.Step{Error: step + ": " + why, StartedAt: now, FinishedAt: now}
				}
			}
		}
	})
	if err != nil {
		return err
	}
	for range failed {
		o.breakers.failure(c.Service, spec)
	}
	return o.checkFailures(ctx, log, next, spec)
}

// checkFailures aborts c when more hosts failed than the limit allows.
// It returns nil when the cycle may go on.
func (o *Orchestrator) checkFailures(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	n, limit := c.Failures(), spec.failureLimit(len(c.Hosts))
	if n <= limit {
		return nil
	}
	o.breakers.failure(c.Service, spec)
	var why []string
	for _, h := range c.Hosts {
		if h.Failed {
			why = append(why, h.Instance+": "+hostError(h))
		}
	}
	return o.finish(ctx, log, c, cycle.Aborted, fmt.Sprintf("%d of %d hosts failed in %s, more than failure_limit allows (%d); pool %s stays hidden and users never saw %s (%s)",
		n, len(c.Hosts), c.Phase, limit, c.Target, c.Package.Version, strings.Join(why, "; ")))
}

func hostError(h cycle.Host) string {
	switch {
	case h.Smoke != nil && !h.Smoke.OK:
		return h.Smoke.Error
	case h.Deploy != nil && !h.Deploy.OK:
		return h.Deploy.Error
	}
	return "failed"
}

// ackWait bounds how long one step waits for the LBs' acks. The wait is a
// blocking query when the Discovery can watch acks, so a step sees an ack
// as soon as Consul has it instead of after the drive loop's retry pause;
// past ackWait the step reports that it is waiting, as before.
const ackWait = 2 * time.Second

// lbAcks reads the LBs that serve service and their acknowledgements, and
// describes the ones that have not acked gen yet. When some have not, it
// waits up to ackWait for them (see readAcks).
func (o *Orchestrator) lbAcks(ctx context.Context, service string, gen uint64) ([]LBInfo, map[string]lb.Ack, []string, error) {
	return o.readAcks(ctx, service, gen, ackWait)
}

// readAcks is lbAcks with the longest wait for acks; 0 reads once. The
// LBs are listed once, before the wait: one that registers meanwhile is
// seen by the next step.
func (o *Orchestrator) readAcks(ctx context.Context, service string, gen uint64, wait time.Duration) ([]LBInfo, map[string]lb.Ack, []string, error) {
	lbs, err := o.cfg.Discovery.LBs(ctx, service)
	if err != nil {
		return nil, nil, nil, err
	}
	w, canWatch := o.cfg.Discovery.(AckWatcher)
	var (
		acks  map[string]lb.Ack
		index uint64
	)
	if canWatch {
		acks, index, err = w.WatchAcks(ctx, service, 0, 0)
	} else {
		acks, err = o.cfg.Discovery.Acks(ctx, service)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	behind := acksBehind(lbs, acks, gen)
	deadline := time.Now().Add(wait)
	for canWatch && len(behind) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		// Index 0 would answer at once and spin; 1 blocks until any write.
		next, nextIndex, err := w.WatchAcks(ctx, service, max(index, 1), left)
		if err != nil {
			return nil, nil, nil, err
		}
		if nextIndex < index {
			nextIndex = 0 // Consul's index went backwards (a restored or new Consul): start over
		}
		acks, index = next, nextIndex
		behind = acksBehind(lbs, acks, gen)
	}
	return lbs, acks, behind, nil
}

// acksBehind describes the LBs of lbs that have not acked gen in acks.
func acksBehind(lbs []LBInfo, acks map[string]lb.Ack, gen uint64) []string {
	var behind []string
	for _, l := range lbs {
		a := acks[l.ID]
		if a.Generation >= gen {
			continue
		}
		behind = append(behind, describeAck(l.ID, a))
	}
	return behind
}

// describeAck says where LB id stands: its generation, and why it is stuck
// there when it says.
func describeAck(id string, a lb.Ack) string {
	s := fmt.Sprintf("%s at generation %d", id, a.Generation)
	if a.Refused != "" {
		s += " (refused: " + a.Refused + ")"
	} else if a.LastError != "" {
		s += " (" + a.LastError + ")"
	}
	return s
}

// waitAcks returns nil when every LB serving service acked gen or later.
// It reads once and does not wait: preflight uses it to refuse at once.
func (o *Orchestrator) waitAcks(ctx context.Context, service string, gen uint64) error {
	_, _, behind, err := o.readAcks(ctx, service, gen, 0)
	if err != nil {
		return err
	}
	return behindErr(gen, behind)
}

// awaitAcks is waitAcks that waits up to ackWait for the acks.
func (o *Orchestrator) awaitAcks(ctx context.Context, service string, gen uint64) error {
	_, _, behind, err := o.readAcks(ctx, service, gen, ackWait)
	if err != nil {
		return err
	}
	return behindErr(gen, behind)
}

func behindErr(gen uint64, behind []string) error {
	if len(behind) > 0 {
		return waiting("LBs have not acked generation %d: %s", gen, strings.Join(behind, "; "))
	}
	return nil
}

// ---- deploy ----

// deployCommitEvery bounds how long a finished install waits to be
// committed with the ones that finish after it: results are committed
// together, so a pool of hundreds of hosts costs tens of Raft commits of
// the cycle, not one per host.
const deployCommitEvery = 250 * time.Millisecond

// deployResult is one finished install; step is nil when leadership was
// lost during it.
type deployResult struct {
	id   string
	step *cycle.Step
}

// deployStep installs the pending hosts, max_parallel at a time. A new
// install starts as soon as one finishes, so no host waits for the
// slowest of a batch, and results are committed as they come in (see
// deployCommitEvery). It stops starting installs when the cycle must stop
// (leadership lost, an operator's abort or pause, the breaker open, the
// phase timeout passed, or more failures than failure_limit), lets the
// ones under way finish and records them; the drive loop then handles the
// cycle as before.
func (o *Orchestrator) deployStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	var pending []cycle.Host
	for _, h := range c.Hosts {
		if !h.Failed && h.Deploy == nil {
			pending = append(pending, h)
		}
	}
	if len(pending) == 0 {
		return o.move(ctx, log, c, cycle.Smoke, fmt.Sprintf("smoke-testing %d hosts of pool %s", len(c.Hosts)-c.Failures(), c.Target))
	}
	agents, err := o.agentsByInstance(ctx, c.Service)
	if err != nil {
		return err
	}
	limit := max(spec.MaxParallel, 1)
	results := make(chan deployResult)
	var (
		wg                 sync.WaitGroup
		buf                []deployResult
		flushAt            <-chan time.Time
		launched, inflight int
		stop               bool
		stopErr            error
		failed             bool
	)
	flush := func() {
		rec := buf
		buf, flushAt = nil, nil
		if stop && stopErr != nil || ctx.Err() != nil {
			return // a new leader installs again; the agent answers with the same result
		}
		next, err := o.patch(ctx, c.ID, func(c *cycle.Cycle) {
			for _, r := range rec {
				if e := c.Host(r.id); e != nil {
					e.Deploy, e.Failed = r.step, !r.step.OK
				}
			}
		})
		if err != nil {
			stop, stopErr = true, err
			return
		}
		for _, r := range rec {
			if !r.step.OK {
				failed = true
				o.breakers.failure(c.Service, spec)
			}
		}
		if next.Failures() > spec.failureLimit(len(next.Hosts)) || next.AbortRequested != "" || next.Paused {
			stop = true
		}
	}
	for {
		if !stop {
			if open, _ := o.breakers.open(c.Service, spec); open || o.deployTimedOut(c, spec) || ctx.Err() != nil {
				stop = true
			}
		}
		for !stop && inflight < limit && launched < len(pending) {
			id := pending[launched].Instance
			launched++
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- deployResult{id: id, step: o.install(ctx, log, c, agents, id)}
			}()
		}
		if inflight == 0 {
			break
		}
		select {
		case r := <-results:
			inflight--
			if r.step != nil {
				buf = append(buf, r)
				if flushAt == nil {
					flushAt = time.After(deployCommitEvery)
				}
			}
			if len(buf) >= limit || (inflight == 0 && len(buf) > 0) {
				flush()
			}
		case <-flushAt:
			flush()
		}
	}
	if len(buf) > 0 {
		flush()
	}
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case stopErr != nil:
		return stopErr
	case failed:
		latest, ok := o.cfg.Store.Cycle(c.ID)
		if !ok || latest.Phase != cycle.Deploy {
			return nil
		}
		return o.checkFailures(ctx, log, latest, spec)
	}
	return nil
}

// deployTimedOut reports whether the deploy phase of c has run past its
// timeout; the next step then ends the cycle as the timeout says.
func (o *Orchestrator) deployTimedOut(c cycle.Cycle, spec Spec) bool {
	limit := spec.timeout(cycle.Deploy)
	return limit > 0 && len(c.Phases) > 0 && o.now().Sub(c.Phases[len(c.Phases)-1].Start) > limit
}

func (o *Orchestrator) install(ctx context.Context, log *zap.Logger, c cycle.Cycle, agents map[string]fleet.Agent, id string) *cycle.Step {
	start := o.now()
	step := &cycle.Step{StartedAt: start}
	a, ok := agents[id]
	if !ok {
		step.Error = "its cyclerd-agent is no longer registered in Consul"
		step.FinishedAt = o.now()
		return step
	}
	res, err := o.cfg.Fleet.Install(ctx, a, c.Package.Digest)
	step.FinishedAt = o.now()
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		step.Error = err.Error()
	case res.Outcome == agent.OutcomeFailed:
		step.Error = fmt.Sprintf("%s: %s", res.Step, res.Error)
		if res.RolledBack {
			step.Error += " (the host was put back on its previous release)"
		}
	case res.Current == nil || res.Current.Digest != c.Package.Digest:
		step.Error = "the agent reports a different current release after the install"
	default:
		step.OK, step.Detail = true, string(res.Outcome)+" "+res.Current.Dir
	}
	o.cfg.Observer.HostInstall(c.Service, step.OK, step.FinishedAt.Sub(start))
	log.Info("host deployed", zap.String("instance", id), zap.Bool("ok", step.OK), zap.String("error", step.Error))
	return step
}

// ---- smoke ----

func (o *Orchestrator) smokeStep(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	var pending []cycle.Host
	for _, h := range c.Hosts {
		if !h.Failed && h.Smoke == nil {
			pending = append(pending, h)
		}
	}
	if len(pending) == 0 {
		good := len(c.Hosts) - c.Failures()
		if good < spec.MinLive {
			o.breakers.failure(c.Service, spec)
			return o.finish(ctx, log, c, cycle.Aborted, fmt.Sprintf("only %d hosts of pool %s passed deploy and smoke, fewer than min_live %d; the pool stays hidden", good, c.Target, spec.MinLive))
		}
		if c.Kind == cycle.KindRecycle {
			return o.finishRecycle(ctx, log, c, spec)
		}
		return o.move(ctx, log, c, cycle.Switch, fmt.Sprintf("switching the LBs to pool %s", c.Target))
	}
	insts, err := o.cfg.Discovery.Instances(ctx, c.Service)
	if err != nil {
		return err
	}
	byID := map[string]pool.Instance{}
	for _, in := range insts.All {
		byID[in.ID] = in
	}
	var targets []smoke.Target
	for _, h := range pending {
		in, ok := byID[h.Instance]
		if !ok {
			return waiting("instance %s is not registered in Consul yet", h.Instance)
		}
		targets = append(targets, smoke.Target{Host: in.Address, Port: in.Port, Version: c.Package.Version, InstanceID: h.Instance})
	}
	results := o.cfg.Smoke.RunAll(ctx, targets, spec.smokeChecks(), len(targets))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := o.now()
	failures := 0
	next, err := o.patch(ctx, c.ID, func(c *cycle.Cycle) {
		for _, r := range results {
			h := c.Host(r.Target.InstanceID)
			if h == nil {
				continue
			}
			h.Address, h.Port, h.Checks = r.Target.Host, r.Target.Port, r.Checks
			st := &cycle.Step{OK: r.Passed, StartedAt: now.Add(-time.Duration(r.DurationMS) * time.Millisecond), FinishedAt: now}
			if !r.Passed {
				var why []string
				for _, f := range r.Failed() {
					why = append(why, f.Name+": "+f.Error)
				}
				st.Error = "smoke: " + strings.Join(why, "; ")
				h.Failed = true
			}
			h.Smoke = st
		}
	})
	if err != nil {
		return err
	}
	for _, r := range results {
		for _, ch := range r.Checks {
			o.cfg.Observer.SmokeCheck(c.Service, ch.Passed)
		}
		if !r.Passed {
			failures++
			o.breakers.failure(c.Service, spec)
			log.Warn("smoke failed", zap.String("instance", r.Target.InstanceID))
		}
	}
	if failures > 0 {
		return o.checkFailures(ctx, log, next, spec)
	}
	return nil
}

// finishRecycle records the refreshed standby pool and ends a recycle.
func (o *Orchestrator) finishRecycle(ctx context.Context, log *zap.Logger, c cycle.Cycle, spec Spec) error {
	st, _ := o.cfg.Store.Service(c.Service)
	if poolRelease(st, c.Target) != c.Package {
		next := st
		next.Generation++
		setPoolRelease(&next, c.Target, c.Package)
		if _, err := o.cfg.Store.SetServiceState(ctx, next); err != nil {
			return err
		}
		return nil
	}
	if err := o.cfg.Discovery.PublishState(ctx, c.Service, toPoolState(st)); err != nil {
		return err
	}
	o.breakers.success(c.Service, spec)
	return o.finish(ctx, log, c, cycle.Done, fmt.Sprintf("standby pool %s refreshed to %s", c.Target, c.Package.Version))
}

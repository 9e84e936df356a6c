package lb

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// refusedPrefix starts last_error while the desired set is refused.
const refusedPrefix = "refused: "

// pass moves the LB one step toward the plan the inputs ask for, then
// writes the ack if it changed. It returns an error when something must be
// retried (an apply, a read-back or an ack write).
func (r *Reconciler) pass(ctx context.Context) error {
	r.mu.Lock()
	p := desired(r.cfg.Service, r.cfg.MinLive, r.in)
	if p.refused != "" && p.refused != r.cur.refused {
		r.refusedAt = time.Now()
		r.log.Info("backend set refused", zap.Uint64("generation", p.gen), zap.Int("backends", p.serving),
			zap.Int("min_live", r.cfg.MinLive), zap.String("reason", p.refused))
	}
	if p.waiting != "" && p.waiting != r.cur.waiting {
		r.log.Info("waiting", zap.String("reason", p.waiting))
	}
	r.cur = p
	app, dirty := r.applied, r.dirty
	r.mu.Unlock()

	var gen uint64
	var set []lbdrivers.Backend
	switch {
	case p.waiting == "" && p.refused == "":
		gen, set = p.gen, p.backends
	case dirty && app != nil:
		// The LB lost its set (or a read-back failed) and there is no
		// acceptable new one: put the last good set back.
		gen, set = app.gen, app.backends
	default:
		return r.writeAck(ctx)
	}
	if !dirty && app != nil && app.gen == gen && sameSet(app.backends, set) {
		return r.writeAck(ctx)
	}
	if err := r.apply(ctx, gen, set); err != nil {
		if ctx.Err() == nil {
			if aerr := r.writeAck(ctx); aerr != nil {
				r.log.Debug("ack of the error not written", zap.Error(aerr))
			}
		}
		return err
	}
	return r.writeAck(ctx)
}

// apply applies gen and set through the driver and proves it by read-back.
// On failure the LB keeps its last good set (the drivers guarantee it) and
// the error is recorded for the status and the ack.
func (r *Reconciler) apply(ctx context.Context, gen uint64, set []lbdrivers.Backend) error {
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	start := time.Now()
	err := r.cfg.Driver.Apply(opCtx, gen, set)
	if err == nil {
		err = r.readBack(opCtx, gen, set)
	}
	took := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // shutting down; not the LB's fault
		}
		// Retries of the same failure log at Debug, so a long outage does
		// not flood the log; the status and the ack carry it meanwhile.
		logAt := r.log.Debug
		if r.fail(err) {
			logAt = r.log.Warn
		}
		logAt("apply failed; the LB keeps its last good set", zap.Uint64("generation", gen),
			zap.Int("backends", len(set)), zap.Duration("took", took), zap.Error(err))
		return err
	}
	now := time.Now()
	r.mu.Lock()
	r.applied = &applied{gen: gen, backends: lbdrivers.Sorted(set), at: now}
	r.checkedAt, r.dirty = now, false
	r.applyErr, r.applyErrAt = "", time.Time{}
	live := r.cur.live
	r.mu.Unlock()
	r.log.Info("generation applied", zap.Uint64("generation", gen), zap.String("live", string(live)),
		zap.Int("backends", len(set)), zap.Duration("took", took))
	return nil
}

// readBack checks that the LB reports gen and set.
func (r *Reconciler) readBack(ctx context.Context, gen uint64, set []lbdrivers.Backend) error {
	g, got, err := r.cfg.Driver.Applied(ctx)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if g != gen || !lbdrivers.Equal(got, set) {
		return fmt.Errorf("%w: the LB reports generation %d with %d backends after generation %d with %d was applied",
			ErrReadBack, g, len(got), gen, len(set))
	}
	return nil
}

// fail records an apply or read-back error and marks the LB dirty, so the
// next pass applies again even if the plan did not change. It reports
// whether the error differs from the one already recorded.
func (r *Reconciler) fail(err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirty = true
	if msg := err.Error(); msg != r.applyErr {
		r.applyErr, r.applyErrAt = msg, time.Now()
		return true
	}
	return false
}

// verify reads the set back from the LB. A difference from the applied set
// (nginx restarted with an empty shared dict, someone loaded another VCL)
// marks the LB dirty so the pass that follows applies again; a match
// refreshes checked_at. When nothing else has talked to Consul for a verify
// interval it pings Consul, so the staleness report stays true.
func (r *Reconciler) verify(ctx context.Context) {
	r.mu.Lock()
	app, lastContact := r.applied, r.contact
	r.mu.Unlock()
	if app != nil {
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		gen, got, err := r.cfg.Driver.Applied(opCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if r.fail(fmt.Errorf("verify: read back: %w", err)) {
				r.log.Warn("verify failed", zap.Uint64("generation", app.gen), zap.Error(err))
			}
		case gen != app.gen || !lbdrivers.Equal(got, app.backends):
			r.log.Warn("drift detected; applying again", zap.Uint64("generation", app.gen), zap.Int("backends", len(app.backends)),
				zap.Uint64("lb_generation", gen), zap.Int("lb_backends", len(got)))
			r.mu.Lock()
			r.dirty = true
			r.mu.Unlock()
		default:
			r.mu.Lock()
			r.checkedAt = time.Now()
			r.mu.Unlock()
			r.log.Debug("read-back matches", zap.Uint64("generation", gen), zap.Int("backends", len(got)))
		}
	}
	if time.Since(lastContact) < r.cfg.VerifyInterval {
		return
	}
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	err := r.cfg.Store.Ping(opCtx)
	cancel()
	switch {
	case ctx.Err() != nil:
	case err != nil:
		r.ConsulError(err)
	default:
		r.mu.Lock()
		r.contactLocked(time.Now())
		r.mu.Unlock()
	}
}

// ackLocked builds the ack from the current state, and false when there is
// nothing to acknowledge or report yet.
func (r *Reconciler) ackLocked() (Ack, bool) {
	a := Ack{Backends: []lbdrivers.Backend{}, Driver: r.cfg.Driver.Name(), CheckedAt: r.checkedAt, Refused: r.cur.refused}
	if app := r.applied; app != nil {
		a.Generation, a.Backends, a.AppliedAt = app.gen, app.backends, app.at
	}
	switch {
	case r.applyErr != "":
		a.LastError, a.LastErrorAt = r.applyErr, r.applyErrAt
	case a.Refused != "":
		a.LastError, a.LastErrorAt = refusedPrefix+a.Refused, r.refusedAt
	}
	return a, r.applied != nil || a.LastError != ""
}

// writeAck stores the ack when it differs from the last one stored.
func (r *Reconciler) writeAck(ctx context.Context) error {
	r.mu.Lock()
	ack, ok := r.ackLocked()
	if !ok || (r.written != nil && r.written.equal(ack)) {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := r.cfg.Store.PutAck(opCtx, r.key, ack)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.ConsulError(err)
		return fmt.Errorf("ack: %w", err)
	}
	r.mu.Lock()
	r.written = &ack
	r.contactLocked(time.Now())
	r.mu.Unlock()
	r.log.Debug("ack written", zap.String("key", r.key), zap.Uint64("generation", ack.Generation),
		zap.Int("backends", len(ack.Backends)), zap.String("last_error", ack.LastError))
	return nil
}

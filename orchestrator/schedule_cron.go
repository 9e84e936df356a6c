package orchestrator

import (
	"context"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/config"
)

// scheduleRetry is how often a leader re-drives claimed runs that have no
// cycle yet (a Start that failed for a reason other than a refusal, such
// as an unreachable Consul).
const scheduleRetry = 5 * time.Second

// runSchedules runs the schedules of every service for one term of
// leadership: one cron.Cron, created here and stopped (waiting for its
// running jobs) when ctx ends, so a server that lost leadership starts
// nothing more. Before cron's first fire it catches up on the fires no
// leader handled (see fireSchedule).
func (o *Orchestrator) runSchedules(ctx context.Context) {
	entries := o.scheduleEntries()
	if len(entries) == 0 {
		return
	}
	l := cronLogger{log: o.log.Named("cron")}
	c := cron.New(cron.WithLogger(l), cron.WithChain(cron.Recover(l), cron.SkipIfStillRunning(l)),
		cron.WithParser(config.CronParser()), cron.WithLocation(time.UTC))
	for _, e := range entries {
		// Each entry's schedule carries its own zone (CRON_TZ), so the
		// Cron's location does not matter.
		c.Schedule(e.sched, cron.FuncJob(func() {
			if err := o.fireSchedule(ctx, e, o.now(), true); err != nil && ctx.Err() == nil {
				o.log.Warn("schedule fire", zap.String("service", e.spec.Name), zap.String("schedule", e.cfg.Name), zap.Error(err))
			}
		}))
	}
	c.Start()
	o.catchUp(ctx, entries)
	t := time.NewTicker(scheduleRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Stop waits for running jobs, whose ctx is this one: they
			// end promptly and no job outlives the term.
			<-c.Stop().Done()
			o.log.Info("schedules stopped")
			return
		case <-t.C:
			for _, e := range entries {
				if err := o.retryRuns(ctx, e); err != nil && ctx.Err() == nil {
					o.log.Warn("scheduled run not completed", zap.String("service", e.spec.Name), zap.String("schedule", e.cfg.Name), zap.Error(err))
				}
			}
		}
	}
}

// catchUp handles, once per term, the fires that happened while no
// leader was running the schedules.
func (o *Orchestrator) catchUp(ctx context.Context, entries []scheduleEntry) {
	for _, e := range entries {
		if err := o.fireSchedule(ctx, e, o.now(), false); err != nil && ctx.Err() == nil {
			o.log.Warn("schedule catch-up", zap.String("service", e.spec.Name), zap.String("schedule", e.cfg.Name), zap.Error(err))
		}
	}
}

// retryRuns re-drives e's claimed runs without a cycle.
func (o *Orchestrator) retryRuns(ctx context.Context, e scheduleEntry) error {
	unlock := o.lockSchedule(e.key())
	defer unlock()
	return o.completeRuns(ctx, e)
}

// cronLogger adapts zap to cron.Logger. cron's keysAndValues come in
// pairs; zap.Any keeps them structured.
type cronLogger struct{ log *zap.Logger }

// Info implements cron.Logger. cron logs every wake-up and run at info;
// that is debug detail here.
func (l cronLogger) Info(msg string, keysAndValues ...any) {
	l.log.Debug(msg, fields(keysAndValues)...)
}

// Error implements cron.Logger.
func (l cronLogger) Error(err error, msg string, keysAndValues ...any) {
	l.log.Error(msg, append(fields(keysAndValues), zap.Error(err))...)
}

func fields(kv []any) []zap.Field {
	out := make([]zap.Field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			k = "key"
		}
		out = append(out, zap.Any(k, kv[i+1]))
	}
	return out
}

var _ cron.Logger = cronLogger{}

package smoke

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Runner runs checks against targets. It is safe for concurrent use.
type Runner struct {
	log *zap.Logger
	// noFollow and follow are shallow copies of the injected client that
	// differ only in redirect policy, so a check's FollowRedirects never
	// changes the caller's client.
	noFollow *http.Client
	follow   *http.Client
}

// New returns a Runner that logs to log and sends HTTP checks through
// client. A nil log discards logs. A nil client means one that ignores proxy
// settings, since smoke checks must reach the host itself, and opens a new
// connection per attempt, so a pass proves the host accepts connections now.
func New(log *zap.Logger, client *http.Client) *Runner {
	if log == nil {
		log = zap.NewNop()
	}
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			DialContext:            (&net.Dialer{}).DialContext,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		}}
	}
	noFollow, follow := *client, *client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Runner{log: log.Named("smoke"), noFollow: &noFollow, follow: &follow}
}

// prepared is a check compiled once per Run or RunAll, or the reason it is
// invalid.
type prepared struct {
	name    string
	kind    Kind
	c       compiled
	invalid string
}

// prepare compiles every check once, so that no attempt parses anything.
func prepare(checks []Check) []prepared {
	out := make([]prepared, len(checks))
	for i, ch := range checks {
		c, probs := ch.compile()
		out[i] = prepared{name: ch.Name, kind: ch.Kind, c: c, invalid: strings.Join(probs, "; ")}
	}
	return out
}

// Run runs every check against t, one after another, and returns their
// results in order. Every check runs even after one fails, so the result is
// complete. A check that does not validate, or every check when t does not,
// fails with ReasonInvalid without running. When ctx ends, the checks still
// pending fail at once with ReasonCanceled.
func (r *Runner) Run(ctx context.Context, t Target, checks []Check) Result {
	return r.run(ctx, t, prepare(checks))
}

// RunAll runs the checks against every target, at most parallel targets at
// a time (values below 1 mean 1), and returns one HostResult per target in
// the order of targets.
func (r *Runner) RunAll(ctx context.Context, targets []Target, checks []Check, parallel int) []HostResult {
	ps := prepare(checks)
	out := make([]HostResult, len(targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(parallel, 1), len(targets)) {
		wg.Go(func() {
			for i := range next {
				// Each worker writes only its own index, so out needs no lock.
				out[i] = HostResult{Target: targets[i], Result: r.run(ctx, targets[i], ps)}
			}
		})
	}
	for i := range targets {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// run runs prepared checks against t.
func (r *Runner) run(ctx context.Context, t Target, ps []prepared) Result {
	start := time.Now()
	log := r.log.With(zap.String("host", t.Host), zap.Int("port", t.Port),
		zap.String("instance_id", t.InstanceID), zap.String("version", t.Version))
	targetProblem := t.validate()
	res := Result{Passed: true, Checks: make([]CheckResult, 0, len(ps))}
	failed := 0
	for _, p := range ps {
		var cr CheckResult
		switch {
		case targetProblem != "":
			cr = CheckResult{Name: p.name, Kind: p.kind, Reason: ReasonInvalid, Error: targetProblem}
		case p.invalid != "":
			cr = CheckResult{Name: p.name, Kind: p.kind, Reason: ReasonInvalid,
				Error: fmt.Sprintf("check %q is invalid: %s", p.name, p.invalid)}
		default:
			cr = r.runCheck(ctx, t, p.c, log)
		}
		logResult(log, cr)
		if !cr.Passed {
			res.Passed = false
			failed++
		}
		res.Checks = append(res.Checks, cr)
	}
	res.DurationMS = time.Since(start).Milliseconds()
	log.Info("host checked", zap.Bool("passed", res.Passed), zap.Int("checks", len(res.Checks)),
		zap.Int("failed", failed), zap.Int64("duration_ms", res.DurationMS))
	return res
}

// logResult logs one check's result at Info.
func logResult(log *zap.Logger, cr CheckResult) {
	fields := []zap.Field{zap.String("check", cr.Name), zap.String("kind", string(cr.Kind)),
		zap.Int("attempts", cr.Attempts), zap.Int64("duration_ms", cr.DurationMS)}
	if cr.Passed {
		log.Info("check passed", fields...)
		return
	}
	log.Info("check failed", append(fields, zap.String("reason", string(cr.Reason)), zap.String("error", cr.Error))...)
}

// runCheck runs one valid check with its retries.
func (r *Runner) runCheck(ctx context.Context, t Target, c compiled, log *zap.Logger) CheckResult {
	start := time.Now()
	cr := CheckResult{Name: c.Name, Kind: c.Kind}
	log = log.With(zap.String("check", c.Name))
	// last is the most recent failure not caused by ctx ending; it is what
	// a canceled result reports as the last thing seen.
	var last *failure
	delay := c.Backoff.Initial
	for {
		if ctx.Err() != nil {
			cr.Reason, cr.Error = ReasonCanceled, canceledMessage(ctx, cr.Attempts, last)
			break
		}
		cr.Attempts++
		out, err := r.attempt(ctx, t, c)
		cr.Output = out
		if err == nil {
			cr.Passed, cr.Reason, cr.Error = true, "", ""
			log.Debug("check attempt passed", zap.Int("attempt", cr.Attempts))
			break
		}
		if ctx.Err() != nil {
			cr.Reason, cr.Error = ReasonCanceled, canceledMessage(ctx, cr.Attempts, last)
			break
		}
		last = err
		cr.Reason, cr.Error = err.reason, err.msg
		if cr.Attempts > c.Retries {
			break
		}
		wait := jitter(delay)
		log.Debug("check attempt failed", zap.Int("attempt", cr.Attempts), zap.String("reason", string(err.reason)),
			zap.String("error", err.msg), zap.Duration("retry_in", wait))
		if !sleep(ctx, wait) {
			cr.Reason, cr.Error = ReasonCanceled, canceledMessage(ctx, cr.Attempts, last)
			break
		}
		delay = nextDelay(delay, c.Backoff.Max)
	}
	cr.DurationMS = time.Since(start).Milliseconds()
	return cr
}

// attempt runs one attempt of c under its timeout. It returns a command's
// output tail and the failure, if any.
func (r *Runner) attempt(ctx context.Context, t Target, c compiled) (string, *failure) {
	actx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var out string
	var err error
	switch c.Kind {
	case KindHTTP:
		err = r.probeHTTP(actx, t, c)
	case KindTCP:
		err = probeTCP(actx, t, c)
	case KindCommand:
		out, err = probeCommand(actx, t, c)
	}
	if err == nil {
		return out, nil
	}
	// Why check actx and not the error: every probe reports its deadline
	// differently (a url.Error, a net.OpError, "signal: killed"), but all of
	// them mean the attempt ran out of time when actx expired while ctx
	// is still alive.
	if errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return out, &failure{ReasonTimeout, fmt.Sprintf("%s: no result within the %s timeout", describe(t, c), c.Timeout)}
	}
	var f *failure
	if errors.As(err, &f) {
		return out, f
	}
	return out, &failure{ReasonError, fmt.Sprintf("%s: %v", describe(t, c), err)}
}

// describe names what an attempt of c does, to start its error messages.
func describe(t Target, c compiled) string {
	switch c.Kind {
	case KindHTTP:
		return c.HTTP.Method + " " + checkURL(t, c)
	case KindTCP:
		return "tcp connect " + t.addr(c.Port)
	default:
		return fmt.Sprintf("command %q", c.Command.Argv)
	}
}

// canceledMessage explains a check that ctx stopped after attempts, with the
// last failure seen.
func canceledMessage(ctx context.Context, attempts int, last *failure) string {
	msg := fmt.Sprintf("stopped after %d attempt(s): %v", attempts, context.Cause(ctx))
	if last != nil {
		msg += "; last error: " + last.msg
	}
	return msg
}

// failure is a failed attempt: why, and what was expected and seen.
type failure struct {
	reason Reason
	msg    string
}

// Error implements error.
func (f *failure) Error() string { return f.msg }

// fail returns a failure with a formatted message.
func fail(reason Reason, format string, args ...any) *failure {
	return &failure{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// jitter returns a delay between d/2 and d, so that hosts failing together
// do not retry together.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// nextDelay doubles d up to limit, without overflowing.
func nextDelay(d, limit time.Duration) time.Duration {
	if d > limit/2 {
		return limit
	}
	return d * 2
}

// sleep waits for d, or until ctx ends, and reports whether it waited the
// whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/pkgfile"
)

// Steps of an install or switch, as Progress.Step and Install.Step name them.
const (
	stepFetch      = "fetch"
	stepUnpack     = "unpack"
	stepPreSwitch  = "pre_switch"
	stepSwitch     = "switch"
	stepPostSwitch = "post_switch"
	stepRestart    = "restart"
	stepHealth     = "health"
)

// job is the install or switch under way.
type job struct {
	prog Progress
	done chan struct{}
	// res is set before done closes.
	res InstallResult
}

// Install installs package digest: download it from a server (verifying
// its sha256) unless a release of it is already on disk, unpack it
// safely into releases/<version>-<short digest>, run its pre_switch hooks,
// switch `current` atomically, run its post_switch hooks, restart the app,
// wait for it to be healthy and update its Consul registration. Any
// failure after the switch puts `current` back on the previous release
// and restarts that; a failure before it leaves everything as it was.
// Installing the current digest changes nothing (OutcomeUnchanged).
//
// The install runs to completion (bounded by InstallTimeout) even if ctx
// ends first; ctx only bounds the wait for its result. A second Install of
// the same digest while one runs waits for the same result; any other
// install or switch meanwhile gets ErrBusy.
func (a *Agent) Install(ctx context.Context, digest string) (InstallResult, error) {
	if err := checkDigest(digest); err != nil {
		return InstallResult{}, err
	}
	return a.runJob(ctx, Progress{Action: ActionInstall, Digest: digest}, func(jctx context.Context, j *job) InstallResult {
		return a.install(jctx, j, digest)
	})
}

// SwitchLocal points `current` at release, a release directory already on
// disk, and restarts the app, health-checked and rolled back on failure
// like Install. It runs the release's hooks as Install does.
func (a *Agent) SwitchLocal(ctx context.Context, release string) (InstallResult, error) {
	if !releaseNameRE.MatchString(release) {
		return InstallResult{}, fmt.Errorf("%w: release %q is not a release directory name like \"1.4.2-0123456789ab\"; "+
			"the inventory lists the releases on this host", ErrBadRequest, release)
	}
	if fi, err := os.Stat(a.layout.release(release)); err != nil || !fi.IsDir() {
		return InstallResult{}, fmt.Errorf("%w: release %q is not on this host; the inventory lists the releases on disk", ErrBadRequest, release)
	}
	return a.runJob(ctx, Progress{Action: ActionSwitchLocal, Release: release}, func(jctx context.Context, j *job) InstallResult {
		return a.switchLocal(jctx, j, release)
	})
}

// runJob runs fn as the one job under way; see Install.
func (a *Agent) runJob(ctx context.Context, p Progress, fn func(context.Context, *job) InstallResult) (InstallResult, error) {
	a.jobMu.Lock()
	if a.closed {
		a.jobMu.Unlock()
		return InstallResult{}, ErrClosed
	}
	if j := a.job; j != nil {
		a.jobMu.Unlock()
		if j.prog.Action != p.Action || j.prog.Digest != p.Digest || j.prog.Release != p.Release {
			return InstallResult{}, fmt.Errorf("%w: %s of %s%s started at %s is at step %s; retry when it is done",
				ErrBusy, j.prog.Action, j.prog.Digest, j.prog.Release, j.prog.StartedAt.Format(time.RFC3339), j.prog.Step)
		}
		return a.wait(ctx, j)
	}
	p.StartedAt = time.Now().UTC()
	p.Step = "starting"
	j := &job{prog: p, done: make(chan struct{})}
	a.job = j
	a.wg.Add(1)
	a.jobMu.Unlock()
	go func() {
		defer a.wg.Done()
		a.opMu.Lock()
		jctx, cancel := context.WithTimeout(a.life, a.cfg.InstallTimeout)
		res := fn(jctx, j)
		cancel()
		a.opMu.Unlock()
		a.jobMu.Lock()
		j.res = res
		a.job = nil
		a.jobMu.Unlock()
		close(j.done)
	}()
	return a.wait(ctx, j)
}

func (a *Agent) wait(ctx context.Context, j *job) (InstallResult, error) {
	select {
	case <-j.done:
		return j.res, nil
	case <-ctx.Done():
		return InstallResult{}, fmt.Errorf("waiting for the %s: %w; it goes on, see the inventory", j.prog.Action, ctx.Err())
	}
}

// step records the step a job has reached.
func (a *Agent) step(j *job, s string) {
	a.jobMu.Lock()
	j.prog.Step = s
	a.jobMu.Unlock()
}

func (a *Agent) install(ctx context.Context, j *job, digest string) InstallResult {
	rec := Install{Action: ActionInstall, Digest: digest, StartedAt: j.prog.StartedAt}
	a.mu.Lock()
	cur := a.st.release(a.st.Current)
	a.mu.Unlock()
	if cur != nil && cur.Digest == digest {
		rec.Outcome, rec.Version, rec.Release = OutcomeUnchanged, cur.Version, cur.Dir
		return a.finish(rec)
	}
	rel, fresh, step, err := a.ensureRelease(ctx, j, digest)
	if err != nil {
		rec.Step, rec.Error = step, err.Error()
		return a.finish(rec)
	}
	if cur != nil && rel.Dir == cur.Dir {
		// The current release, whose digest the state had lost.
		rec.Outcome, rec.Version, rec.Release = OutcomeUnchanged, rel.Version, rel.Dir
		return a.finish(rec)
	}
	return a.switchTo(ctx, j, rec, rel, fresh)
}

func (a *Agent) switchLocal(ctx context.Context, j *job, dir string) InstallResult {
	rec := Install{Action: ActionSwitchLocal, Release: dir, StartedAt: j.prog.StartedAt}
	a.mu.Lock()
	cur := a.st.Current
	r := a.st.release(dir)
	a.mu.Unlock()
	if r == nil {
		m, err := a.layout.readManifest(dir)
		if err != nil {
			rec.Step, rec.Error = stepUnpack, err.Error()
			return a.finish(rec)
		}
		r = &Release{Dir: dir, Name: m.Name, Version: m.Version, InstalledAt: modTime(a.layout.release(dir))}
		a.mu.Lock()
		a.st.addRelease(*r)
		err = a.saveLocked()
		a.mu.Unlock()
		if err != nil {
			rec.Step, rec.Error = stepUnpack, err.Error()
			return a.finish(rec)
		}
	}
	if cur == dir {
		rec.Outcome, rec.Version, rec.Digest = OutcomeUnchanged, r.Version, r.Digest
		return a.finish(rec)
	}
	return a.switchTo(ctx, j, rec, *r, false)
}

// ensureRelease returns the release of digest, unpacking it first when it
// is not on disk (fresh is then true). On error, step names the step.
func (a *Agent) ensureRelease(ctx context.Context, j *job, digest string) (rel Release, fresh bool, step string, err error) {
	dir, err := a.layout.findRelease(digest)
	if err != nil {
		return Release{}, false, stepUnpack, err
	}
	if dir != "" {
		rel, err := a.knownRelease(dir, digest)
		return rel, false, stepUnpack, err
	}
	a.step(j, stepFetch)
	// Unpack under staging/, on the same file system as releases/, so the
	// releases directory sees only the final, complete rename.
	tmp := filepath.Join(a.layout.staging(), "release-"+randomHex(6))
	defer os.RemoveAll(tmp) // a no-op once renamed
	m, step, err := fetch(ctx, a.cfg.Sources, digest, tmp, a.cfg.Limits)
	if err != nil {
		return Release{}, false, step, err
	}
	a.step(j, stepUnpack)
	if m.Name != a.cfg.Service {
		return Release{}, false, stepUnpack, fmt.Errorf("package %s is %q version %s, not a package of service %q, which this host runs; "+
			"install a %q package", digest, m.Name, m.Version, a.cfg.Service, a.cfg.Service)
	}
	rel = Release{Dir: releaseDir(m.Version, digest), Name: m.Name, Version: m.Version, Digest: digest, InstalledAt: time.Now().UTC()}
	if err := os.Rename(tmp, a.layout.release(rel.Dir)); err != nil {
		return Release{}, false, stepUnpack, fmt.Errorf("package %s: move into releases: %w", digest, err)
	}
	if err := syncDir(a.layout.releases()); err != nil {
		a.discard(rel)
		return Release{}, false, stepUnpack, err
	}
	a.mu.Lock()
	a.st.addRelease(rel)
	err = a.saveLocked()
	a.mu.Unlock()
	if err != nil {
		a.discard(rel)
		return Release{}, false, stepUnpack, err
	}
	a.log.Info("package unpacked", zap.String("digest", digest), zap.String("release", rel.Dir))
	return rel, true, "", nil
}

// knownRelease returns the record of release dir, already on disk, that
// holds digest, recording it if the state lacks it (a crash between the
// unpack and the state write).
func (a *Agent) knownRelease(dir, digest string) (Release, error) {
	a.mu.Lock()
	r := a.st.release(dir)
	a.mu.Unlock()
	switch {
	case r != nil && r.Digest == digest:
		return *r, nil
	case r != nil && r.Digest != "":
		return Release{}, fmt.Errorf("release %s holds package %s, whose digest starts like %s; remove %s to install it",
			dir, r.Digest, digest, a.layout.release(dir))
	}
	m, err := a.layout.readManifest(dir)
	if err != nil {
		return Release{}, err
	}
	rel := Release{Dir: dir, Name: m.Name, Version: m.Version, Digest: digest, InstalledAt: modTime(a.layout.release(dir))}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.addRelease(rel)
	return rel, a.saveLocked()
}

// switchTo makes rel current and the app healthy on it, or rolls back;
// fresh releases are deleted again when that fails.
func (a *Agent) switchTo(ctx context.Context, j *job, rec Install, rel Release, fresh bool) InstallResult {
	rec.Version, rec.Release = rel.Version, rel.Dir
	if rec.Digest == "" {
		rec.Digest = rel.Digest
	}
	fail := func(step string, err error) InstallResult {
		if fresh {
			a.discard(rel)
		}
		rec.Step, rec.Error = step, err.Error()
		return a.finish(rec)
	}
	m, err := a.layout.readManifest(rel.Dir)
	if err != nil {
		return fail(stepUnpack, err)
	}
	if m.Name != a.cfg.Service {
		return fail(stepUnpack, fmt.Errorf("release %s is of %q, not of service %q, which this host runs", rel.Dir, m.Name, a.cfg.Service))
	}
	env := a.env(rel, m)
	a.step(j, stepPreSwitch)
	if err := a.hooks(ctx, stepPreSwitch, rel, m.Hooks.PreSwitch, env); err != nil {
		return fail(stepPreSwitch, err)
	}

	a.step(j, stepSwitch)
	a.mu.Lock()
	prevCur, prevPrev := a.st.Current, a.st.Previous
	a.mu.Unlock()
	if err := a.layout.switchCurrent(rel.Dir); err != nil {
		return fail(stepSwitch, err)
	}
	a.setCurrent(rel.Dir, prevCur)
	undo := func(step string, err error) InstallResult {
		rec.Step, rec.Error, rec.RolledBack = step, err.Error(), true
		if rbErr := a.rollback(prevCur, prevPrev); rbErr != nil {
			rec.Error += "; rolling back: " + rbErr.Error()
		}
		if fresh {
			a.discard(rel)
		}
		return a.finish(rec)
	}

	a.step(j, stepPostSwitch)
	if err := a.hooks(ctx, stepPostSwitch, rel, m.Hooks.PostSwitch, env); err != nil {
		return undo(stepPostSwitch, err)
	}
	a.step(j, stepRestart)
	exited, err := a.restartApp(ctx, rel, m)
	if err != nil {
		return undo(stepRestart, err)
	}
	a.step(j, stepHealth)
	if err := healthFor(m, a.appAddr()).waitHealthy(ctx, a.healthTimeout(m), exited); err != nil {
		return undo(stepHealth, err)
	}
	if err := a.register(ctx); err != nil {
		// The app runs the new release; Run re-registers every few seconds.
		a.log.Warn("consul registration after install; retrying in the background", zap.Error(err))
	}
	rec.Outcome = OutcomeInstalled
	a.prune()
	return a.finish(rec)
}

// setCurrent records dir as current and prev (if any) as previous.
func (a *Agent) setCurrent(dir, prev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Current = dir
	if prev != "" && prev != dir {
		a.st.Previous = prev
	}
	if err := a.saveLocked(); err != nil {
		// `current` is the truth and already switched; a restart reconciles.
		a.log.Error("saving the agent state", zap.Error(err))
	}
}

// hooks runs a manifest's hooks of one kind in the release directory.
func (a *Agent) hooks(ctx context.Context, kind string, rel Release, hooks [][]string, env []string) error {
	for i, h := range hooks {
		argv, err := a.command(rel, h)
		if err != nil {
			return err
		}
		what := fmt.Sprintf("%s hook %d", kind, i)
		if err := runCommand(ctx, what, argv, a.layout.release(rel.Dir), env, a.layout.appLog(), a.cfg.HookTimeout); err != nil {
			return err
		}
	}
	return nil
}

// restartApp restarts the app on rel. For a supervised app it returns a
// channel that closes if the new process exits.
func (a *Agent) restartApp(ctx context.Context, rel Release, m pkgfile.Manifest) (<-chan struct{}, error) {
	switch a.mode(m) {
	case ModeRestartCommand:
		return nil, runCommand(ctx, "restart command", a.cfg.RestartCommand, a.layout.release(rel.Dir), a.env(rel, m), a.layout.appLog(), a.cfg.HookTimeout)
	case ModeSupervised:
		// Build the command before stopping the old process, so a bad
		// one leaves it running.
		spec, err := a.startSpec(rel, m)
		if err != nil {
			return nil, err
		}
		if err := a.sup.stop(); err != nil {
			return nil, err
		}
		p, err := a.sup.start(spec)
		if err != nil {
			return nil, err
		}
		return p.done, nil
	}
	// Something else serves the port; stop what an older release ran.
	return nil, a.sup.stop()
}

// rollback puts `current` back on prevCur (none: removes it), restarts the
// app there and waits for it to be healthy. It runs on its own deadline:
// the install's may be what ran out.
func (a *Agent) rollback(prevCur, prevPrev string) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StopTimeout+a.cfg.HookTimeout+a.cfg.HealthTimeout)
	defer cancel()
	if prevCur == "" {
		err := errors.Join(a.sup.stop(), a.layout.clearCurrent())
		a.mu.Lock()
		a.st.Current, a.st.Previous = "", prevPrev
		err = errors.Join(err, a.saveLocked())
		a.mu.Unlock()
		return err
	}
	if err := a.layout.switchCurrent(prevCur); err != nil {
		return err
	}
	a.mu.Lock()
	a.st.Current, a.st.Previous = prevCur, prevPrev
	prev := a.st.release(prevCur)
	err := a.saveLocked()
	a.mu.Unlock()
	if err != nil {
		a.log.Error("saving the agent state", zap.Error(err))
	}
	if prev == nil {
		return fmt.Errorf("release %s has no record", prevCur)
	}
	m, err := a.layout.readManifest(prevCur)
	if err != nil {
		return err
	}
	exited, err := a.restartApp(ctx, *prev, m)
	if err == nil {
		err = healthFor(m, a.appAddr()).waitHealthy(ctx, a.healthTimeout(m), exited)
	}
	if rerr := a.register(ctx); rerr != nil {
		a.log.Warn("consul registration after rollback; retrying in the background", zap.Error(rerr))
	}
	if err != nil {
		return fmt.Errorf("the previous release %s did not come back healthy: %w", prevCur, err)
	}
	return nil
}

// finish records rec as the last install (unless it changed nothing) and
// returns the result.
func (a *Agent) finish(rec Install) InstallResult {
	rec.FinishedAt = time.Now().UTC()
	if rec.Outcome == "" {
		rec.Outcome = OutcomeFailed
	}
	a.mu.Lock()
	if rec.Outcome != OutcomeUnchanged {
		r := rec
		a.st.LastInstall = &r
		if err := a.saveLocked(); err != nil {
			a.log.Error("saving the agent state", zap.Error(err))
		}
	}
	cur := a.st.release(a.st.Current)
	a.mu.Unlock()
	log := a.log.With(zap.String("action", rec.Action), zap.String("digest", rec.Digest), zap.String("release", rec.Release),
		zap.String("outcome", string(rec.Outcome)), zap.Duration("took", rec.FinishedAt.Sub(rec.StartedAt)))
	if rec.Outcome == OutcomeFailed {
		log.Warn("install failed", zap.String("step", rec.Step), zap.String("error", rec.Error), zap.Bool("rolled_back", rec.RolledBack))
	} else {
		log.Info("install done")
	}
	return InstallResult{Install: rec, Current: cur}
}

// Package agent is the `cyclerd agent` role: on each app server it installs
// packages into release directories, switches the `current` symlink
// atomically, restarts the app (as a supervised child or through a
// configured restart command), waits for it to be healthy, registers the
// app instance in the local Consul agent under cycler's Consul contract,
// hides and unhides it with Consul service maintenance, and reports an
// inventory. Its API is served under /v1/agent/ for agent-scope tokens.
//
// Every operation is idempotent. Installs and switches run one at a time;
// a repeat of the one under way waits for its result. The agent persists
// what it needs in <data_dir>/agent-state.json and, after its own restart,
// re-adopts: it re-registers the instance and brings the app up from
// `current` (adopting the process an earlier run started when it is still
// alive) without redeploying.
package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pool"
)

// Config wires an Agent. Durations must be positive.
type Config struct {
	// DataDir holds releases, `current`, staging, app.log and the state.
	DataDir string
	// Service, Pool and Instance identify the app instance in Consul.
	Service  string
	Pool     string
	Instance string
	// Node names the host, for the inventory.
	Node string
	// Address and Port are where the app listens and is reached.
	Address string
	Port    int
	// KeepReleases is how many releases besides the current one stay on
	// disk; the current and the previous release are never deleted.
	KeepReleases int
	// RestartCommand, when set, restarts the app instead of supervising
	// the manifest's start command.
	RestartCommand []string
	// StopTimeout is how long the app gets after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	// HealthTimeout is how long a restarted app gets to become healthy
	// when its manifest has no health block (a manifest's health.timeout
	// wins otherwise).
	HealthTimeout time.Duration
	// CheckInterval is the Consul check interval.
	CheckInterval time.Duration
	// HookTimeout bounds each hook and the restart command.
	HookTimeout time.Duration
	// InstallTimeout bounds one install or switch.
	InstallTimeout time.Duration
	// StopWithAgent stops the supervised app when the agent shuts down.
	StopWithAgent bool
	// Sources are where package blobs are downloaded from.
	Sources []BlobSource
	// Registry is the local Consul agent.
	Registry Registry
	// Limits bound a package; zero means pkgfile.DefaultLimits().
	Limits pkgfile.Limits
	// Logger is the agent's logger.
	Logger *zap.Logger
}

// Sentinel errors the API maps to statuses.
var (
	// ErrBusy: another install or switch is under way (409).
	ErrBusy = errors.New("another install or switch is under way")
	// ErrStaleGeneration: a hide or unhide older than one already seen (409).
	ErrStaleGeneration = errors.New("stale generation")
	// ErrClosed: the agent is shutting down (503).
	ErrClosed = errors.New("the agent is shutting down")
	// ErrConsul: the change was recorded but Consul could not be told yet (503).
	ErrConsul = errors.New("consul unavailable")
)

// reconcileEvery is how often Run re-registers the instance, so that a
// Consul agent that lost its registrations (dev mode, a wiped data dir)
// gets them back, maintenance included.
const reconcileEvery = 10 * time.Second

// Agent is the agent role. Create it with New, start it with Run, and
// register its routes with Register.
type Agent struct {
	cfg    Config
	log    *zap.Logger
	layout layout
	reg    Registry
	sup    *supervisor

	// life ends installs when Run returns; supLife then ends the
	// supervisor's timers and watchers, once it has stopped the app.
	life     context.Context
	stopLife context.CancelFunc
	stopSup  context.CancelFunc
	wg       sync.WaitGroup

	// mu guards st and its file. Lock order: supervisor.mu, then mu;
	// nothing calls into the supervisor while holding mu.
	mu sync.Mutex
	st state

	// jobMu guards job and closed: the one install or switch under way.
	jobMu  sync.Mutex
	job    *job
	closed bool
	// opMu is held by whatever changes `current` or the app process: a
	// job, or the re-adoption at start-up, so they never interleave.
	opMu sync.Mutex
	// adopted is closed once Run has re-adopted (or started) the app, so
	// an inventory asked for during start-up describes the adopted app
	// rather than a not-yet-running one.
	adopted     chan struct{}
	adoptedOnce sync.Once

	// maintMu serializes hide and unhide; regMu serializes registrations
	// and guards lastReg, the last registration sent to Consul.
	maintMu sync.Mutex
	regMu   sync.Mutex
	lastReg *consulapi.AgentServiceRegistration
}

// New checks cfg, prepares the data directory and loads the state. It
// does not touch the app or Consul; Run does.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("agent: DataDir is empty"))
	}
	if cfg.Service == "" || cfg.Instance == "" || cfg.Address == "" || cfg.Port <= 0 {
		errs = append(errs, fmt.Errorf("agent: Service %q, Instance %q, Address %q and Port %d must all be set", cfg.Service, cfg.Instance, cfg.Address, cfg.Port))
	}
	if _, err := pool.Parse(cfg.Pool); err != nil {
		errs = append(errs, fmt.Errorf("agent: %w", err))
	}
	if cfg.Registry == nil {
		errs = append(errs, errors.New("agent: Registry is nil"))
	}
	for name, d := range map[string]time.Duration{"StopTimeout": cfg.StopTimeout, "HealthTimeout": cfg.HealthTimeout,
		"CheckInterval": cfg.CheckInterval, "HookTimeout": cfg.HookTimeout, "InstallTimeout": cfg.InstallTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("agent: %s is %s; it must be positive", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Limits == (pkgfile.Limits{}) {
		cfg.Limits = pkgfile.DefaultLimits()
	}
	if cfg.KeepReleases < 1 {
		cfg.KeepReleases = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, layout: layout{root: cfg.DataDir}, reg: cfg.Registry, adopted: make(chan struct{})}
	if err := a.layout.prepare(); err != nil {
		return nil, err
	}
	st, err := loadState(a.layout.state())
	if err != nil {
		return nil, err
	}
	a.st = st
	if err := a.reconcileDisk(); err != nil {
		return nil, err
	}
	a.life, a.stopLife = context.WithCancel(context.Background())
	a.sup = newSupervisor(a.log.Named("app"), a.layout.appLog(), cfg.StopTimeout, a.recordApp)
	return a, nil
}

// reconcileDisk makes the state agree with the disk: `current` is the
// truth for the current release (the state is saved just after the link
// is switched, so a crash in between leaves the link ahead), and releases
// that are gone are forgotten.
func (a *Agent) reconcileDisk() error {
	cur, err := a.layout.readCurrent()
	if err != nil {
		return err
	}
	dirs, err := a.layout.listReleases()
	if err != nil {
		return err
	}
	onDisk := map[string]bool{}
	for _, d := range dirs {
		onDisk[d] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var gone []string
	for _, r := range a.st.Releases {
		if !onDisk[r.Dir] {
			gone = append(gone, r.Dir)
		}
	}
	for _, d := range gone {
		a.log.Warn("release recorded in the state is gone from disk; forgetting it", zap.String("release", d))
		a.st.dropRelease(d)
	}
	if cur != "" && !onDisk[cur] {
		return fmt.Errorf("agent: %s points at release %s, which does not exist; point it at a release under %s or remove it",
			a.layout.current(), cur, a.layout.releases())
	}
	if cur != "" && a.st.release(cur) == nil {
		m, err := a.layout.readManifest(cur)
		if err != nil {
			return err
		}
		a.st.addRelease(Release{Dir: cur, Name: m.Name, Version: m.Version})
	}
	if a.st.Current != cur {
		// A crash between switching the link and saving the state: the
		// release the state names was current just before.
		a.log.Warn("current release differs from the state; following the link", zap.String("link", cur), zap.String("state", a.st.Current))
		if a.st.Current != "" {
			a.st.Previous = a.st.Current
		}
		a.st.Current = cur
	}
	if a.st.Previous == a.st.Current {
		a.st.Previous = ""
	}
	if a.st.release(a.st.Previous) == nil {
		a.st.Previous = ""
	}
	return saveState(a.layout.state(), a.st)
}

// Run re-adopts (re-registers the instance and brings the app up from
// `current`), then keeps the Consul registration in place until ctx ends.
// On return it waits for an install under way to finish or roll back, and
// stops the app only when StopWithAgent is set.
func (a *Agent) Run(ctx context.Context) error {
	a.readopt(ctx)
	a.adoptedOnce.Do(func() { close(a.adopted) })
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	failing := false
	for {
		err := a.register(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.log.Warn("consul registration failing; retrying", zap.Error(err))
			failing = true
		case err == nil && failing:
			a.log.Info("consul registration restored")
			failing = false
		}
		select {
		case <-ctx.Done():
			return a.shutdown()
		case <-t.C:
		}
	}
}

// shutdown ends Run; see Run.
func (a *Agent) shutdown() error {
	a.jobMu.Lock()
	a.closed = true
	a.jobMu.Unlock()
	a.stopLife()
	a.wg.Wait()
	return a.sup.shutdown(a.cfg.StopWithAgent)
}

// readopt brings the app up from `current` after an agent start: it
// adopts the process an earlier run started when that is still alive,
// else starts it. Nothing is downloaded or switched.
func (a *Agent) readopt(ctx context.Context) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	cur := a.st.release(a.st.Current)
	rec := a.st.App
	a.mu.Unlock()
	if cur == nil {
		a.log.Info("no current release yet; waiting for an install")
		return
	}
	log := a.log.With(zap.String("release", cur.Dir), zap.String("version", cur.Version))
	m, err := a.layout.readManifest(cur.Dir)
	if err != nil {
		log.Error("current release unreadable; the app is not started", zap.Error(err))
		return
	}
	if a.mode(m) != ModeSupervised {
		log.Info("current release found; the app is run by its restart command or by something else", zap.String("mode", a.mode(m)))
		return
	}
	spec, err := a.startSpec(*cur, m)
	if err != nil {
		log.Error("current release cannot be started", zap.Error(err))
		return
	}
	if rec != nil && a.sup.adopt(*rec, spec) {
		log.Info("re-adopted the running app", zap.Int("pid", rec.PID))
		return
	}
	p, err := a.sup.start(spec)
	if err != nil {
		log.Error("starting the app from current", zap.Error(err))
		return
	}
	if err := healthFor(m, a.appAddr()).waitHealthy(ctx, a.healthTimeout(m), p.done); err != nil {
		log.Warn("app started from current is not healthy yet", zap.Error(err))
	}
}

// mode says how the app of manifest m is run.
func (a *Agent) mode(m pkgfile.Manifest) string {
	switch {
	case len(a.cfg.RestartCommand) > 0:
		return ModeRestartCommand
	case m.Start != nil && len(m.Start.Command) > 0:
		return ModeSupervised
	}
	return ModeNone
}

// healthTimeout is how long the app of m gets to become healthy.
func (a *Agent) healthTimeout(m pkgfile.Manifest) time.Duration {
	if m.Health != nil && m.Health.Timeout > 0 {
		return m.Health.Timeout
	}
	return a.cfg.HealthTimeout
}

// recordApp persists the supervised process (nil: none), for adoption.
func (a *Agent) recordApp(rec *appRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.App = rec
	if err := saveState(a.layout.state(), a.st); err != nil {
		a.log.Error("saving the agent state", zap.Error(err))
	}
}

// save writes the state; the caller holds mu.
func (a *Agent) saveLocked() error {
	return saveState(a.layout.state(), a.st)
}

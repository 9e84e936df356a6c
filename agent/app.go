package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Restart backoff after the supervised app exits on its own.
const (
	restartBackoffMin = time.Second
	restartBackoffMax = 30 * time.Second
	// stableRun is how long a run must last for the backoff to reset.
	stableRun = 30 * time.Second
	// adoptPoll is how often an adopted process (not our child, so no
	// wait(2)) is checked for life.
	adoptPoll = 500 * time.Millisecond
	// killWait bounds the wait for a process group after SIGKILL.
	killWait = 10 * time.Second
)

// startSpec says how to start the app from one release.
type startSpec struct {
	// argv is the expanded start command; argv[0] is resolved.
	argv []string
	env  []string
	// dir is the release directory (its real path, not `current`, so the
	// process keeps its working directory when `current` moves on).
	dir     string
	release string
}

// proc is one run of the app.
type proc struct {
	pid     int
	ticks   uint64
	exe     string
	release string
	adopted bool
	started time.Time
	// done closes when the process has exited.
	done chan struct{}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// supervisor runs the app as a child in its own process group, restarts it
// with backoff when it exits on its own, stops it with SIGTERM and then
// SIGKILL to the whole group, and adopts a process an earlier agent run
// started. The app's output goes to a file, not a pipe, so the app
// survives the agent and keeps logging after an agent restart.
type supervisor struct {
	log         *zap.Logger
	logPath     string
	stopTimeout time.Duration
	// record persists the identity of a started process (nil: stopped).
	record func(*appRecord)

	// ctx ends restart timers and adopted-process watchers at shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu  sync.Mutex // guards the fields below
	cur *proc
	// spec is what a restart after an unexpected exit starts; nil after
	// a deliberate stop.
	spec *startSpec
	// epoch grows on every deliberate start or stop, so a restart that
	// was scheduled before one does not fire after it.
	epoch    uint64
	restarts int
	backoff  time.Duration
	// bg counts restart timers and adopted-process watchers; children
	// counts the waits on started processes.
	bg, children sync.WaitGroup
}

func newSupervisor(log *zap.Logger, logPath string, stopTimeout time.Duration, record func(*appRecord)) *supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	return &supervisor{ctx: ctx, cancel: cancel, log: log, logPath: logPath, stopTimeout: stopTimeout, record: record, backoff: restartBackoffMin}
}

// start starts spec and returns the new process. The caller has stopped
// any earlier process.
func (s *supervisor) start(spec startSpec) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && !s.cur.exited() {
		return nil, fmt.Errorf("app: pid %d still runs; it must be stopped before another start", s.cur.pid)
	}
	s.epoch++
	s.spec = &spec
	s.backoff = restartBackoffMin
	if err := s.startLocked(spec); err != nil {
		s.spec = nil
		return nil, err
	}
	return s.cur, nil
}

func (s *supervisor) startLocked(spec startSpec) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("app: open log: %w", err)
	}
	// The child holds its own descriptor; ours is only for Start.
	defer logf.Close()
	fmt.Fprintf(logf, "=== cyclerd agent %s: start %q in release %s\n", time.Now().Format(time.RFC3339), spec.argv, spec.release)
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Dir = spec.dir
	cmd.Env = spec.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: stopping the app takes its children along,
	// and a kill of the agent's group (kill -9 of the agent by a
	// supervisor that kills groups) leaves the app running for adoption.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("app: start %q: %w", spec.argv, err)
	}
	pid := cmd.Process.Pid
	ticks, exe, _ := procIdentity(pid) // Start returns after exec, so exe is the app
	p := &proc{pid: pid, ticks: ticks, exe: exe, release: spec.release, started: time.Now(), done: make(chan struct{})}
	s.cur = p
	s.record(&appRecord{PID: pid, StartTicks: ticks, Exe: exe, Release: spec.release})
	s.log.Info("app started", zap.Int("pid", pid), zap.String("release", spec.release), zap.Strings("argv", spec.argv))
	s.children.Add(1)
	go func() {
		defer s.children.Done()
		err := cmd.Wait()
		close(p.done)
		s.exited(p, err)
	}()
	return nil
}

// adopt takes over the process rec describes when it is still the app
// started from release spec.release by an earlier agent run: same pid,
// same start time, same executable. It reports whether it did.
func (s *supervisor) adopt(rec appRecord, spec startSpec) bool {
	if rec.PID <= 0 || rec.Release != spec.release {
		return false
	}
	ticks, exe, err := procIdentity(rec.PID)
	if err != nil || ticks != rec.StartTicks || exe != rec.Exe {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.spec = &spec
	p := &proc{pid: rec.PID, ticks: ticks, exe: exe, release: rec.Release, adopted: true, started: time.Now(), done: make(chan struct{})}
	s.cur = p
	s.log.Info("app adopted", zap.Int("pid", p.pid), zap.String("release", p.release))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(adoptPoll)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			if !sameProcess(p.pid, p.ticks) {
				close(p.done)
				s.exited(p, errors.New("adopted process is gone"))
				return
			}
		}
	}()
	return true
}

// exited handles the end of p: a restart with backoff unless the exit was
// asked for.
func (s *supervisor) exited(p *proc, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != p || s.spec == nil {
		return // stopped on purpose, or replaced
	}
	if time.Since(p.started) >= stableRun {
		s.backoff = restartBackoffMin
	}
	wait := s.backoff
	s.backoff = min(s.backoff*2, restartBackoffMax)
	epoch, spec := s.epoch, *s.spec
	s.log.Warn("app exited on its own; restarting", zap.Int("pid", p.pid), zap.Error(err), zap.Duration("after", wait))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.cur != p {
			return
		}
		s.restarts++
		if err := s.startLocked(spec); err != nil {
			s.log.Error("app restart", zap.Error(err))
			s.cur = nil
			s.record(nil)
		}
	}()
}

// stop stops the app: SIGTERM to its process group, SIGKILL to the group
// after the stop timeout. No restart follows.
func (s *supervisor) stop() error {
	s.mu.Lock()
	s.epoch++
	s.spec = nil
	p := s.cur
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	err := s.stopProc(p)
	s.mu.Lock()
	if s.cur == p {
		s.cur = nil
		s.record(nil)
	}
	s.mu.Unlock()
	return err
}

func (s *supervisor) stopProc(p *proc) error {
	if p.exited() {
		return nil
	}
	// Signal while the leader is unreaped (done not closed), so the group
	// id cannot belong to another process yet.
	if err := syscall.Kill(-p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("app: stop pid %d: %w", p.pid, err)
	}
	if p.waitGone(s.stopTimeout) {
		s.log.Info("app stopped", zap.Int("pid", p.pid))
		return nil
	}
	s.log.Warn("app still running after the stop timeout; killing its process group", zap.Int("pid", p.pid), zap.Duration("stop_timeout", s.stopTimeout))
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("app: kill process group %d: %w", p.pid, err)
	}
	if p.waitGone(killWait) {
		return nil
	}
	return fmt.Errorf("app: pid %d did not exit %s after SIGKILL", p.pid, killWait)
}

// waitGone waits up to d for p to exit. An adopted process is not our
// child, so besides done (closed by its watcher) /proc is polled too.
func (p *proc) waitGone(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return true
		case <-deadline.C:
			return false
		case <-tick.C:
			if p.adopted && !sameProcess(p.pid, p.ticks) {
				return true
			}
		}
	}
}

// current returns the running process, or nil.
func (s *supervisor) current() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// status reports the process for the inventory.
func (s *supervisor) status() (pid int, running, adopted bool, restarts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		pid, running, adopted = s.cur.pid, !s.cur.exited(), s.cur.adopted
	}
	return pid, running, adopted, s.restarts
}

// shutdown ends restarts, timers and watchers and waits for them; with
// stopApp it first stops the app and also waits for its process. Without,
// the app keeps running for the next agent to adopt.
func (s *supervisor) shutdown(stopApp bool) error {
	var err error
	if stopApp {
		err = s.stop()
	} else {
		s.mu.Lock()
		s.epoch++
		s.spec = nil
		s.mu.Unlock()
	}
	s.cancel()
	s.bg.Wait()
	if stopApp {
		s.children.Wait()
	}
	return err
}

// procIdentity reads a process's start time (field 22 of /proc/<pid>/stat)
// and executable path.
func procIdentity(pid int) (uint64, string, error) {
	ticks, state, err := procStat(pid)
	if err != nil {
		return 0, "", err
	}
	if state == 'Z' || state == 'X' {
		return 0, "", fmt.Errorf("pid %d is a zombie", pid)
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return 0, "", err
	}
	return ticks, exe, nil
}

// sameProcess reports whether pid is alive, not a zombie, and started at ticks.
func sameProcess(pid int, ticks uint64) bool {
	t, state, err := procStat(pid)
	return err == nil && t == ticks && state != 'Z' && state != 'X'
}

// procStat returns the start time and state letter of pid.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// comm (field 2) may hold spaces and parentheses; the fields after the
	// last ')' are fixed: state (3), ppid (4), ... starttime (22).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("pid %d: malformed stat", pid)
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("pid %d: start time: %w", pid, err)
	}
	return ticks, f[0][0], nil
}

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for ProcessConfig.
const (
	defaultReadyTimeout = 30 * time.Second
	defaultStopTimeout  = 10 * time.Second
	// tailLines is how much of each log a failed test prints.
	tailLines = 40
)

// ProcessConfig describes one child process. Every component of the harness runs
// through it, so they all log, wait, stop and report the same way.
type ProcessConfig struct {
	// Name labels the process in messages and names its log file (<Dir>/<Name>.log).
	Name string
	// Path is the binary to run.
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env is added to the harness's own environment.
	Env []string
	// Dir is the working directory and holds the log file. Required.
	Dir string
	// Ready is polled with WaitFor after every start until it returns nil. It must
	// check a real endpoint. Nil means the process counts as ready once started.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the wait for Ready. Default 30s.
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL. Default 10s.
	StopTimeout time.Duration
	// ExtraLogs are more log files (nginx's error.log) whose tails are printed with
	// the process log when the test fails.
	ExtraLogs []string
}

// Process is a running child process owned by a test. It runs in its own process
// group, so Kill and a stop timeout take its children (nginx workers, the varnish
// cache process) down with it. The test's Cleanup stops it.
type Process struct {
	t       T
	cfg     ProcessConfig
	logPath string

	mu sync.Mutex // guards the fields below; Kill may race Stop from a chaos goroutine
	// cmd and exited belong to the current run; exited closes once cmd.Wait returns.
	cmd    *exec.Cmd
	exited chan struct{}
	// requested is set when the harness asked the current run to end, so its exit
	// is not reported as unexpected.
	requested  bool
	unexpected []string
}

// StartProcess starts cfg's process, waits until it is ready and registers a Cleanup
// that stops it (and prints its log tails if the test failed). It calls t.Fatalf
// when the process cannot start or never gets ready; the Cleanup then prints the
// tails, because the test has failed.
func StartProcess(t T, cfg ProcessConfig) *Process {
	t.Helper()
	armRecap(t)
	if cfg.Name == "" || cfg.Path == "" || cfg.Dir == "" {
		fatalf(t, "harness: process config needs Name, Path and Dir; got %+v", cfg)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = defaultReadyTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = defaultStopTimeout
	}
	p := &Process{t: t, cfg: cfg, logPath: filepath.Join(cfg.Dir, fileName(cfg.Name)+".log")}
	if err := p.start(); err != nil {
		fatalf(t, "harness: %v", err)
	}
	t.Cleanup(p.cleanup)
	if err := p.waitReady(); err != nil {
		_ = p.Stop()
		// The Cleanup registered above prints the log tails, because the run has failed.
		fatalf(t, "harness: %v", err)
	}
	return p
}

// Pid returns the pid of the current (or last) run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// LogPath returns the file that holds the process's stdout and stderr, across restarts.
func (p *Process) LogPath() string { return p.logPath }

// Name returns the process's label.
func (p *Process) Name() string { return p.cfg.Name }

// Running reports whether the current run has not exited yet.
func (p *Process) Running() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the process to exit; after StopTimeout it kills
// the whole process group. Stopping a process that has exited does nothing.
func (p *Process) Stop() error {
	pid, exited := p.markRequested()
	select {
	case <-exited:
		return nil
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: stop pid %d: %w", p.cfg.Name, pid, err)
	}
	timer := time.NewTimer(p.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
	}
	p.note("still running %s after SIGTERM; sending SIGKILL to its process group", p.cfg.StopTimeout)
	return p.killGroup(pid, exited)
}

// Kill sends SIGKILL to the process and everything in its process group, the way a
// host dies, and waits for it to exit. Chaos tests use it; call Restart to bring the
// process back.
func (p *Process) Kill() error {
	pid, exited := p.markRequested()
	select {
	case <-exited:
		return nil
	default:
	}
	return p.killGroup(pid, exited)
}

// Restart stops the process (if it runs), starts it again with the same
// configuration (same ports, same files) and waits until it is ready.
func (p *Process) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady()
}

// Tails returns the last lines of the process log and of every extra log, for
// failure messages.
func (p *Process) Tails() string {
	var b strings.Builder
	for _, path := range append([]string{p.logPath}, p.cfg.ExtraLogs...) {
		fmt.Fprintf(&b, "--- %s: last %d lines of %s ---\n%s", p.cfg.Name, tailLines, path, tailFile(path, tailLines))
	}
	return b.String()
}

// markRequested records that the harness is ending the current run and returns its
// pid and exit channel.
func (p *Process) markRequested() (int, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requested = true
	return p.cmd.Process.Pid, p.exited
}

// killGroup SIGKILLs the process group led by pid and waits for the leader to exit.
// It signals while the leader is still unreaped, so the group id cannot have been
// reused by an unrelated process.
func (p *Process) killGroup(pid int, exited chan struct{}) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: kill process group %d: %w", p.cfg.Name, pid, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(p.cfg.StopTimeout):
		return fmt.Errorf("%s: pid %d did not exit %s after SIGKILL", p.cfg.Name, pid, p.cfg.StopTimeout)
	}
}

func (p *Process) start() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.cfg.Name, err)
	}
	// The child holds its own copy of the descriptor; ours is only for Start.
	defer logf.Close()
	fmt.Fprintf(logf, "=== harness %s: start %s %q\n", time.Now().Format(time.RFC3339Nano), p.cfg.Path, p.cfg.Args)

	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Dir = p.cfg.Dir
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", p.cfg.Name, p.cfg.Path, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.requested = cmd, exited, false
	p.mu.Unlock()

	go func() {
		werr := cmd.Wait()
		p.mu.Lock()
		if !p.requested && p.cmd == cmd {
			p.unexpected = append(p.unexpected, fmt.Sprintf("pid %d exited on its own: %v", cmd.Process.Pid, werr))
		}
		p.mu.Unlock()
		p.note("pid %d exited: %v", cmd.Process.Pid, werr)
		close(exited)
	}()
	return nil
}

// waitReady polls cfg.Ready, giving up at once if the process exits.
func (p *Process) waitReady() error {
	if p.cfg.Ready == nil {
		return nil
	}
	p.mu.Lock()
	exited := p.exited
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ReadyTimeout)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitFor(ctx, p.cfg.Name+" (pid "+fmt.Sprint(pid)+") to be ready", func() error { return p.cfg.Ready(ctx) })
	select {
	case <-exited:
		return fmt.Errorf("%s exited during startup; see %s: %w", p.cfg.Name, p.logPath, err)
	default:
	}
	return err
}

// cleanup stops the process at the end of the test and reports what went wrong.
func (p *Process) cleanup() {
	if err := p.Stop(); err != nil {
		p.t.Logf("harness: %v", err)
	}
	p.mu.Lock()
	unexpected := p.unexpected
	p.mu.Unlock()
	for _, u := range unexpected {
		p.t.Logf("harness: %s: %s", p.cfg.Name, u)
	}
	if p.t.Failed() {
		p.t.Logf("harness: %s logs:\n%s", p.cfg.Name, p.Tails())
	}
	p.keepLogs()
}

// KeepLogsEnv names a directory to which every process copies its logs
// when its test ends, failed or not, because a test's temp dir is removed
// with it: CYCLER_TEST_LOGS=/tmp/logs go test ... keeps them for reading.
const KeepLogsEnv = "CYCLER_TEST_LOGS"

// keptLogs numbers the directories keepLogs makes, in the order the
// processes stop.
var keptLogs atomic.Int64

// keepLogs copies the process's logs to $CYCLER_TEST_LOGS/<pid>-<n>-<name>/,
// if it is set. Errors are logged, never fatal.
func (p *Process) keepLogs() {
	root := os.Getenv(KeepLogsEnv)
	if root == "" {
		return
	}
	dst := filepath.Join(root, fmt.Sprintf("%d-%03d-%s", os.Getpid(), keptLogs.Add(1), fileName(p.cfg.Name)))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		p.t.Logf("harness: keep logs of %s: %v", p.cfg.Name, err)
		return
	}
	for _, path := range append([]string{p.logPath}, p.cfg.ExtraLogs...) {
		b, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, filepath.Base(path)), b, 0o644)
		}
		if err != nil && !os.IsNotExist(err) {
			p.t.Logf("harness: keep logs of %s: %v", p.cfg.Name, err)
		}
	}
	p.t.Logf("harness: %s logs kept in %s", p.cfg.Name, dst)
}

// note appends a harness line to the process log; errors are ignored because the
// note is only a debugging aid.
func (p *Process) note(format string, args ...any) {
	f, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "=== harness %s: %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// tailFile returns the last n lines of the file at path (reading at most 64 KiB),
// or a note saying why it could not.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)\n", err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot seek: %v)\n", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)\n", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

// fileName maps a process name to a safe file name: anything but letters, digits,
// '.', '_' and '-' becomes '_'.
func fileName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
}

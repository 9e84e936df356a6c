package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBytes is how much of a failed command's output its error quotes.
const tailBytes = 1024

// runCommand runs argv (never through a shell) in dir with env, its output
// appended to logPath, in its own process group that is killed when
// timeout passes or ctx ends. A failure quotes the end of the output.
func runCommand(ctx context.Context, what string, argv []string, dir string, env []string, logPath string, timeout time.Duration) error {
	if len(argv) == 0 {
		return fmt.Errorf("%s: empty command", what)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", what, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== cyclerd agent %s: %s: run %q\n", time.Now().Format(time.RFC3339), what, argv)
	tail := &tailBuffer{max: tailBytes}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = io.MultiWriter(logf, tail)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A command that leaves a child holding its output open must not hang
	// the install.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s %q did not finish within %s and was killed; output ends: %s", what, argv, timeout, tail.quote())
	default:
		return fmt.Errorf("%s %q failed: %v; output ends: %s", what, argv, err, tail.quote())
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// quote returns the kept output, trimmed and quoted, or "(nothing)".
func (t *tailBuffer) quote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(bytes.ToValidUTF8(t.b, []byte("?"))))
	if s == "" {
		return "(nothing)"
	}
	return fmt.Sprintf("%q", s)
}

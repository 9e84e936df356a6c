package execdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Output limits.
const (
	// MaxStdout bounds what a program may print on stdout; more is
	// ErrBadOutput, and the pipe is closed so the program gets EPIPE.
	MaxStdout = 1 << 20
	// StderrTail is how much of the end of a program's stderr is kept for
	// error messages.
	StderrTail = 4 << 10
)

// waitDelay bounds how long a call waits for stdout and stderr to close
// after the program exits (a background child of the program may hold them).
const waitDelay = 2 * time.Second

// defaultPath is the PATH programs run with.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CommandError is a program run that exited with a non-zero status (or was
// killed by a signal other than the driver's timeout).
type CommandError struct {
	// Verb is the verb that failed: info, apply or applied.
	Verb string
	// ExitCode is the exit status, or -1 when a signal ended the program.
	ExitCode int
	// Signal names the signal that ended the program, if one did.
	Signal string
	// Stderr is the last lines of the program's stderr (at most StderrTail
	// bytes, control characters replaced), the program's own message.
	Stderr string
}

// Error implements error. The stderr lines are joined with "; " so the
// message stays on one line.
func (e *CommandError) Error() string {
	status := fmt.Sprintf("exit status %d", e.ExitCode)
	if e.Signal != "" {
		status = "killed by " + e.Signal
	}
	msg := strings.Join(strings.Split(e.Stderr, "\n"), "; ")
	if msg == "" {
		msg = "(nothing on stderr)"
	}
	return fmt.Sprintf("%s: %s: %s", e.Verb, status, msg)
}

// run runs the program with verb, stdin (nil: none) and the driver's
// environment, and returns its stdout. It fails when the program exits
// non-zero (*CommandError), overruns the timeout (ErrTimeout) or prints
// more than MaxStdout.
func (d *Driver) run(ctx context.Context, verb string, stdin []byte) ([]byte, error) {
	runCtx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	args := append(append([]string(nil), d.argv[1:]...), verb)
	cmd := exec.CommandContext(runCtx, d.argv[0], args...)
	cmd.Env = d.env
	cmd.Dir = "/"
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	stdout := &cappedBuffer{max: MaxStdout}
	stderr := &tailBuffer{max: StderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The program runs in its own process group, and the timeout kills the
	// whole group, so helpers it started (a curl, a ssh) die with it.
	inOwnGroup(cmd)
	cmd.WaitDelay = waitDelay

	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	d.log.Debug("driver program ran", zap.String("verb", verb), zap.Duration("took", took), zap.Error(err))

	if runCtx.Err() != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%s: %w", verb, cerr)
		}
		return nil, fmt.Errorf("%s: %w after %s (stderr: %s)", verb, ErrTimeout, d.timeout, orNothing(stderr.String()))
	}
	if stdout.overflow {
		return nil, fmt.Errorf("%w: %s: stdout exceeds %d bytes", ErrBadOutput, verb, MaxStdout)
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		ce := &CommandError{Verb: verb, ExitCode: exitErr.ExitCode(), Stderr: stderr.String()}
		ce.Signal = signalName(exitErr)
		return nil, ce
	case errors.Is(err, exec.ErrWaitDelay):
		return nil, fmt.Errorf("%s: the program exited but something it started kept its stdout or stderr open for %s; "+
			"detach background processes from them", verb, waitDelay)
	case err != nil:
		return nil, fmt.Errorf("%s: run %s: %w", verb, d.argv[0], err)
	}
	return stdout.buf.Bytes(), nil
}

// orNothing stands in for an empty stderr in messages.
func orNothing(s string) string {
	if s == "" {
		return "(nothing)"
	}
	return strings.Join(strings.Split(s, "\n"), "; ")
}

// errTooLarge stops the copy of a program's stdout.
var errTooLarge = errors.New("output too large")

// cappedBuffer keeps up to max bytes and fails the write that would exceed
// them, which makes os/exec close the pipe.
type cappedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

// Write implements io.Writer.
func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.buf.Len()+len(p) > c.max {
		c.overflow = true
		return 0, errTooLarge
	}
	return c.buf.Write(p)
}

// tailBuffer keeps the last max bytes written to it (and one more, to
// tell whether the kept part starts at a line boundary).
type tailBuffer struct {
	buf []byte
	max int
}

// Write implements io.Writer. It never fails, so a chatty program is not
// stopped by its own stderr.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	// Trim only when the buffer doubles, so a stream of small writes costs
	// amortised constant time.
	if len(t.buf) > 2*(t.max+1) {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max-1:]...)
	}
	return len(p), nil
}

// String returns the kept tail: whole lines only (a line cut by the limit
// is dropped, unless it is the only one), invalid UTF-8 and control
// characters other than newline replaced, blank lines and surrounding space
// removed.
func (t *tailBuffer) String() string {
	b := t.buf
	if len(b) > t.max {
		cut := b[len(b)-t.max-1] != '\n'
		b = b[len(b)-t.max:]
		if i := bytes.IndexByte(b, '\n'); cut && i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	s = strings.Map(func(r rune) rune {
		if r != '\n' && unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

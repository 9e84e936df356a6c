package harness

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// T is the part of *testing.T the harness uses. The lab program supplies LabT.
type T interface {
	// Helper marks the caller as a helper, as testing.T.Helper does.
	Helper()
	// Cleanup registers f to run when the test (or lab) ends, last registered first.
	Cleanup(f func())
	// TempDir returns a new directory that is removed (tests) or kept (lab) at the end.
	TempDir() string
	// Logf logs a line.
	Logf(format string, args ...any)
	// Fatalf logs a line, marks the run failed and stops the calling goroutine.
	Fatalf(format string, args ...any)
	// Failed reports whether the run has failed; components print their log tails then.
	Failed() bool
}

var _ T = (*testing.T)(nil)

// LabT is a T for programs (the demo lab) that use the harness outside `go test`.
// Work that may call Fatalf must run inside Run, exactly as test code runs inside a
// test function: Fatalf ends the goroutine Run started.
type LabT struct {
	dir string
	log io.Writer

	mu       sync.Mutex // guards the fields below; cleanups and Logf may run on any goroutine
	cleanups []func()
	failed   bool
	fatal    string
	ndirs    int
}

var _ T = (*LabT)(nil)

// NewLabT returns a LabT whose TempDir calls make numbered directories under dir
// (created if missing) and whose Logf writes lines to log. Close runs the cleanups;
// nothing removes dir, so the logs stay for the user to read.
func NewLabT(dir string, log io.Writer) *LabT {
	return &LabT{dir: dir, log: log}
}

// Helper does nothing; it exists to satisfy T.
func (l *LabT) Helper() {}

// Cleanup registers f to run in Close, last registered first.
func (l *LabT) Cleanup(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

// TempDir returns a new numbered directory under the lab dir. It calls Fatalf if the
// directory cannot be made.
func (l *LabT) TempDir() string {
	l.mu.Lock()
	l.ndirs++
	n := l.ndirs
	l.mu.Unlock()
	d := filepath.Join(l.dir, fmt.Sprintf("%03d", n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		l.Fatalf("lab: make temp dir: %v", err)
	}
	return d
}

// Logf writes one line to the lab's log writer.
func (l *LabT) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.log, format+"\n", args...)
}

// Fatalf logs, marks the lab failed and ends the calling goroutine (runtime.Goexit),
// which must be one started by Run or Close.
func (l *LabT) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.Logf("%s", msg)
	l.mu.Lock()
	l.failed = true
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	runtime.Goexit()
}

// Failed reports whether Fatalf has been called.
func (l *LabT) Failed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Run calls fn on a new goroutine and waits for it, so that a Fatalf inside fn ends
// only that goroutine. It returns an error carrying the first Fatalf message, if any.
func (l *LabT) Run(fn func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed {
		return fmt.Errorf("lab: %s", l.fatal)
	}
	return nil
}

// Close runs the registered cleanups, last registered first, each through Run so
// that one failing cleanup does not skip the others. It is safe to call twice.
func (l *LabT) Close() {
	for {
		l.mu.Lock()
		n := len(l.cleanups)
		if n == 0 {
			l.mu.Unlock()
			return
		}
		f := l.cleanups[n-1]
		l.cleanups = l.cleanups[:n-1]
		l.mu.Unlock()
		_ = l.Run(f) // a failure is already logged and recorded in Failed
	}
}

//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
)

// labTimeout bounds one run of the demo lab: building its binaries (cached
// after the first), starting the fleet and two cycles under load.
const labTimeout = 4 * time.Minute

// TestLabOnce runs `make demo ARGS=--once` as the user would (the lab
// binary, built from ./integration/lab): it must exit 0, print a summary
// with 0 failed requests through both LBs, a timeline that ends on v2 and
// the phase timings of both cycles, and leave no process behind.
func TestLabOnce(t *testing.T) {
	bin := harness.BuildBinary(t, "./integration/lab")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), labTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := harness.Command(ctx, bin, "--once", "--dir", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("lab --once took %s; its output:\n%s", time.Since(start).Round(time.Second), stdout.String())
	if err != nil {
		harness.Fatalf(t, "lab --once: %v, want exit 0\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	requireNothingLeft(t, dir)

	for _, want := range []string{
		"RESULT: OK. 0 failed requests; nginx-1 and varnish-1 serve v2.",
		"web-1 done: web v1 is live on the blue pool", // cyclerctl deploy --follow's own summary
		"web-2 done: web v2 is live on the green pool",
	} {
		if !strings.Contains(out, want) {
			harness.Errorf(t, "summary lacks %q", want)
		}
	}
	for _, lb := range []string{"nginx-1", "varnish-1"} {
		// The traffic table: requests, answered, failed.
		row := regexp.MustCompile(`(?m)^` + lb + `\s+\S+(?: \([a-z]+ mode\))?\s+(\d+)\s+(\d+)\s+(\d+)\s+`).FindStringSubmatch(out)
		if row == nil {
			harness.Errorf(t, "no traffic row for %s", lb)
		} else if row[3] != "0" || row[2] == "0" {
			harness.Errorf(t, "%s: %s requests, %s answered, %s failed; want answers and 0 failed", lb, row[1], row[2], row[3])
		}
		// The timeline strip ends on v2 (character 2) and never shows a failure.
		strip := regexp.MustCompile(`(?m)^` + lb + `\s+([.12+X ]+)$`).FindStringSubmatch(out)
		if strip == nil || !strings.HasSuffix(strip[1], "2") || strings.Contains(strip[1], "X") || !strings.Contains(strip[1], "1") {
			harness.Errorf(t, "%s's timeline strip %q: want v1 (1) then v2 (2), no X", lb, strip)
		}
		// The segments end on v2.
		seg := regexp.MustCompile(`(?m)^` + lb + `\s+(00:00-.*)$`).FindStringSubmatch(out)
		if seg == nil || !regexp.MustCompile(`\d\d:\d\d-\d\d:\d\d v2$`).MatchString(seg[1]) {
			harness.Errorf(t, "%s's timeline segments %q: want them to end with v2", lb, seg)
		}
	}
	// Phase timings of both cycles, each done.
	for _, id := range []string{"web-1", "web-2"} {
		re := regexp.MustCompile(`(?m)^` + id + `\s+v\d\s+cyc-\d\s+\S+ -> \S+\s+done \(exit 0\)(\s+\d+\.\ds){7}\s+\d+\.\ds\s+\d\d:\d\d$`)
		if !re.MatchString(out) {
			harness.Errorf(t, "no phase-timing row for %s with 7 phase durations, a total and a start", id)
		}
	}
	if !strings.Contains(out, "preflight  hide") || !strings.Contains(out, "switch  bake  standby") {
		harness.Errorf(t, "the phase table lacks its phase columns")
	}
}

// requireNothingLeft waits until no process mentions dir in its command line
// or works in it: every process the lab started has its config, data or
// prefix there.
func requireNothingLeft(t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := harness.WaitFor(ctx, "every process of the lab in "+dir+" to exit", func() error {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		var left []string
		for _, p := range procs {
			cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
			if err != nil {
				continue
			}
			cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
			if bytes.Contains(cmdline, []byte(dir)) || strings.HasPrefix(cwd, dir) {
				var pid int
				if _, err := fmt.Sscan(filepath.Base(p), &pid); err == nil && harness.Alive(pid) {
					left = append(left, fmt.Sprintf("%d %q", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
				}
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still running: %s", strings.Join(left, "; "))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestLabInterrupt starts the lab as `make demo` does (no --once), waits
// for the summary and the commands to try, then presses Ctrl-C (SIGINT): the
// lab must exit 0 and stop every process it started.
func TestLabInterrupt(t *testing.T) {
	bin := harness.BuildBinary(t, "./integration/lab")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), labTimeout)
	defer cancel()
	var stdout, stderr syncWriter
	cmd := harness.Command(ctx, bin, "--dir", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		harness.Fatal(t, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	err := harness.WaitFor(ctx, "the lab to print its commands", func() error {
		select {
		case err := <-exited:
			exited <- err
			return nil // reported below
		default:
		}
		if strings.Contains(stdout.String(), "Press Ctrl-C to stop everything.") {
			return nil
		}
		return fmt.Errorf("not yet; stderr so far:\n%s", stderr.String())
	})
	select {
	case err := <-exited:
		harness.Fatalf(t, "the lab exited before Ctrl-C: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	default:
	}
	if err != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		harness.Fatal(t, err)
	}
	out := stdout.String()
	for _, want := range []string{"export CYCLER_ADDR=127.0.0.1:", " CYCLER_TOKEN=", "cyclerctl hosts", "cyclerctl rollback web", "cyclerctl breaker web"} {
		if !strings.Contains(out, want) {
			harness.Errorf(t, "the commands to try lack %q:\n%s", want, out)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		harness.Fatal(t, err)
	}
	if err := <-exited; err != nil {
		harness.Errorf(t, "lab after Ctrl-C: %v, want exit 0\nstderr:\n%s", err, stderr.String())
	}
	requireNothingLeft(t, dir)
}

// syncWriter is a buffer that a command's output goroutine writes while the
// test reads it.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

//go:build unix

package smoke_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/smoke"
)

func TestCommandCheck(t *testing.T) {
	target := smoke.Target{Host: "10.9.8.7", Port: 8080, Version: "2.0.1", InstanceID: "web-7", Scheme: "https"}
	tests := []struct {
		name       string
		argv       []string
		port       int
		wantPassed bool
		wantReason smoke.Reason
		wantErr    string
		wantOutput []string
	}{
		{name: "exit 0 passes", argv: []string{"/bin/true"}, wantPassed: true},
		{name: "exit 1 fails", argv: []string{"/bin/sh", "-c", "exit 1"},
			wantReason: smoke.ReasonExit, wantErr: `command ["/bin/sh" "-c" "exit 1"]: exit status 1`},
		{name: "exit status and last output", argv: []string{"/bin/sh", "-c", "echo starting; echo 'db unreachable' >&2; exit 3"},
			wantReason: smoke.ReasonExit, wantErr: `command ["/bin/sh" "-c" "echo starting; echo 'db unreachable' >&2; exit 3"]: exit status 3; last output "db unreachable"`,
			wantOutput: []string{"starting\ndb unreachable\n"}},
		{name: "argv is not a shell string", argv: []string{"/bin/echo", "$CYCLER_HOST; exit 1"}, wantPassed: true,
			wantOutput: []string{"$CYCLER_HOST; exit 1\n"}},
		{name: "program not found", argv: []string{"/nonexistent/check"},
			wantReason: smoke.ReasonError, wantErr: `command ["/nonexistent/check"]: fork/exec /nonexistent/check: no such file or directory`},
		{name: "environment describes the target", argv: []string{"env"}, wantPassed: true,
			wantOutput: []string{"CYCLER_HOST=10.9.8.7\n", "CYCLER_PORT=8080\n", "CYCLER_VERSION=2.0.1\n",
				"CYCLER_INSTANCE_ID=web-7\n", "CYCLER_SCHEME=https\n", "CYCLER_CHECK=cmd\n"}},
		{name: "port override in environment", argv: []string{"env"}, port: 9090, wantPassed: true,
			wantOutput: []string{"CYCLER_PORT=9090\n"}},
	}
	r := newRunner(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := smoke.Check{Name: "cmd", Kind: smoke.KindCommand, Port: tt.port, Command: smoke.CommandSpec{Argv: tt.argv}}
			got := only(t, r.Run(context.Background(), target, []smoke.Check{c}))
			if got.Passed != tt.wantPassed || got.Reason != tt.wantReason || got.Attempts != 1 || !strings.Contains(got.Error, tt.wantErr) {
				t.Errorf("got passed=%v reason=%q attempts=%d error=%q\nwant passed=%v reason=%q attempts=1 error containing %q",
					got.Passed, got.Reason, got.Attempts, got.Error, tt.wantPassed, tt.wantReason, tt.wantErr)
			}
			for _, w := range tt.wantOutput {
				if !strings.Contains(got.Output, w) {
					t.Errorf("output = %q\nwant it to contain %q", got.Output, w)
				}
			}
		})
	}
}

func TestCommandOutputTailBounded(t *testing.T) {
	// About 20 KiB of output on both streams, then a marker at the very end.
	script := `i=0; while [ $i -lt 2000 ]; do echo "out line $i"; echo "err line $i" >&2; i=$((i+1)); done; echo END`
	c := smoke.Check{Name: "noisy", Kind: smoke.KindCommand, Command: smoke.CommandSpec{Argv: []string{"/bin/sh", "-c", script}}}
	got := only(t, newRunner(t).Run(context.Background(), smoke.Target{Host: "127.0.0.1", Port: 80}, []smoke.Check{c}))
	if !got.Passed || len(got.Output) != smoke.OutputTailBytes || !strings.HasSuffix(got.Output, "err line 1999\nEND\n") {
		t.Errorf("passed=%v, output of %d bytes ending %q; want a pass, %d bytes ending with the last lines",
			got.Passed, len(got.Output), got.Output[max(0, len(got.Output)-40):], smoke.OutputTailBytes)
	}
	if strings.Contains(got.Output, "out line 0\n") {
		t.Error("output kept the start of the stream; want only the tail")
	}
}

func TestCommandTimeout(t *testing.T) {
	c := smoke.Check{Name: "hang", Kind: smoke.KindCommand, Timeout: 100 * time.Millisecond, Retries: 1, Backoff: fast,
		Command: smoke.CommandSpec{Argv: []string{"/bin/sh", "-c", "sleep 60; true"}}}
	got := only(t, newRunner(t).Run(context.Background(), smoke.Target{Host: "127.0.0.1", Port: 80}, []smoke.Check{c}))
	want := `command ["/bin/sh" "-c" "sleep 60; true"]: no result within the 100ms timeout`
	if got.Passed || got.Reason != smoke.ReasonTimeout || got.Attempts != 2 || got.Error != want {
		t.Errorf("got passed=%v reason=%q attempts=%d error=%q\nwant reason=%q attempts=2 error=%q",
			got.Passed, got.Reason, got.Attempts, got.Error, smoke.ReasonTimeout, want)
	}
}

func TestCommandCancelKillsProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to see whether the child survived")
	}
	// The shell forks a sleep and reports the sleep's pid through a FIFO,
	// so the test cancels only once the child surely exists. Cancelling must
	// kill the sleep too, not only the shell.
	fifo := filepath.Join(t.TempDir(), "pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// O_RDWR: the open does not block, and our own write end means reads
	// never see EOF; closing the file at cleanup ends the reader.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	pids := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(f).ReadString('\n')
		pids <- strings.TrimSpace(line)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := smoke.Check{Name: "hang", Kind: smoke.KindCommand, Timeout: time.Hour,
		Command: smoke.CommandSpec{Argv: []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$1"; wait`, "sh", fifo}}}
	r := newRunner(t)
	done := make(chan smoke.Result, 1)
	go func() { done <- r.Run(ctx, smoke.Target{Host: "127.0.0.1", Port: 80}, []smoke.Check{c}) }()

	var pid int
	select {
	case s := <-pids:
		if pid, err = strconv.Atoi(s); err != nil {
			cancel()
			<-done
			t.Fatalf("fifo gave %q, not a pid: %v", s, err)
		}
	case res := <-done:
		t.Fatalf("command ended before reporting its child: %+v", res)
	}
	cancel()
	got := only(t, <-done)
	if got.Passed || got.Reason != smoke.ReasonCanceled || got.Attempts != 1 {
		t.Errorf("got passed=%v reason=%q attempts=%d error=%q, want cancelled after 1 attempt",
			got.Passed, got.Reason, got.Attempts, got.Error)
	}
	// SIGKILL takes effect asynchronously; wait, with a deadline, until the
	// sleep is gone or a zombie.
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("sleep (pid %d) still running after the check was cancelled", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

package execdriver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/lbdrivers/execdriver"
)

// fakeBin is the fakelb test program, built once by TestMain.
var fakeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "execdriver-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeBin = filepath.Join(dir, "fakelb")
	build := exec.Command("go", "build", "-o", fakeBin, "./testdata/fakelb")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fakelb: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fake describes one fakelb setup: its state and call log in a temp dir.
type fake struct {
	dir, state, log string
}

func newFake(t *testing.T) fake {
	t.Helper()
	dir := t.TempDir()
	return fake{dir: dir, state: filepath.Join(dir, "state.json"), log: filepath.Join(dir, "calls.jsonl")}
}

// command returns the argv that runs fakelb on f with extra flags.
func (f fake) command(extra ...string) []string {
	return append([]string{fakeBin, "--state", f.state, "--log", f.log}, extra...)
}

// call is one logged fakelb invocation (testdata/fakelb).
type call struct {
	Verb  string   `json:"verb"`
	Args  []string `json:"args"`
	Env   []string `json:"env"`
	Dir   string   `json:"dir"`
	Stdin string   `json:"stdin"`
	Pid   int      `json:"pid"`
}

// calls reads f's call log.
func (f fake) calls(t *testing.T) []call {
	t.Helper()
	file, err := os.Open(f.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var out []call
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var c call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("call log line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

func (f fake) verbs(t *testing.T) []string {
	var vs []string
	for _, c := range f.calls(t) {
		vs = append(vs, c.Verb)
	}
	return vs
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newDriver(t *testing.T, argv []string, timeout time.Duration) *execdriver.Driver {
	t.Helper()
	d, err := execdriver.New(ctxT(t), execdriver.Options{Command: argv, Service: "web", Timeout: timeout})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

var (
	blue1 = lbdrivers.Backend{ID: "web-blue-1", Address: "10.0.0.2", Port: 8080}
	blue2 = lbdrivers.Backend{ID: "web-blue-2", Address: "10.0.0.1", Port: 8080}
)

func TestNew(t *testing.T) {
	f := newFake(t)
	tests := []struct {
		name     string
		give     execdriver.Options
		wantName string
		wantErr  error
		errMatch []string
	}{
		{name: "ok", give: execdriver.Options{Command: f.command(), Service: "web"}, wantName: "exec:fake"},
		{
			name:    "newer protocol refused",
			give:    execdriver.Options{Command: f.command("--info", `{"protocol":2,"name":"fake"}`), Service: "web"},
			wantErr: execdriver.ErrProtocolVersion, errMatch: []string{"protocol 2", "cyclerd speaks 1"},
		},
		{
			name:    "garbage info refused",
			give:    execdriver.Options{Command: f.command("--info", "fake 1.0"), Service: "web"},
			wantErr: execdriver.ErrBadOutput, errMatch: []string{`"fake 1.0`},
		},
		{
			name:     "info exits non-zero",
			give:     execdriver.Options{Command: f.command("--no-such-flag"), Service: "web"},
			errMatch: []string{"info: exit status 2", "flag provided but not defined"},
		},
		{
			name:     "missing program",
			give:     execdriver.Options{Command: []string{filepath.Join(f.dir, "nope")}, Service: "web"},
			errMatch: []string{"nope"},
		},
		{
			name:     "program not in PATH",
			give:     execdriver.Options{Command: []string{"cycler-no-such-driver"}, Service: "web"},
			errMatch: []string{`"cycler-no-such-driver" is not in PATH`},
		},
		{
			name:     "every option problem at once",
			give:     execdriver.Options{Service: "web; reboot", Timeout: -time.Second},
			errMatch: []string{"command is empty", `service "web; reboot"`, "timeout -1s is negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := execdriver.New(ctxT(t), tt.give)
			if tt.wantName != "" {
				if err != nil || d.Name() != tt.wantName {
					t.Fatalf("New = %v, %v; want name %q", d, err, tt.wantName)
				}
				return
			}
			if err == nil || !errors.Is(err, tt.wantErr) && tt.wantErr != nil {
				t.Fatalf("New error = %v, want %v", err, tt.wantErr)
			}
			for _, m := range tt.errMatch {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("New error %q does not contain %q", err, m)
				}
			}
		})
	}
}

func TestApplyRoundTrip(t *testing.T) {
	f := newFake(t)
	d := newDriver(t, f.command(), 0)
	ctx := ctxT(t)
	if gen, set, err := d.Applied(ctx); err != nil || gen != 0 || len(set) != 0 {
		t.Fatalf("Applied before apply = %d %v %v, want 0 [] nil", gen, set, err)
	}
	for range 2 { // the second apply of the same set is a no-op that succeeds
		if err := d.Apply(ctx, 12, []lbdrivers.Backend{blue1, blue2}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	gen, set, err := d.Applied(ctx)
	want := []lbdrivers.Backend{blue2, blue1} // canonical order: by host:port
	if err != nil || gen != 12 || !slices.Equal(set, want) {
		t.Fatalf("Applied = %d %v %v, want 12 %v", gen, set, err, want)
	}

	calls := f.calls(t)
	if got := f.verbs(t); !slices.Equal(got, []string{"info", "applied", "apply", "applied", "apply", "applied", "applied"}) {
		t.Fatalf("verbs run = %v", got)
	}
	apply := calls[2]
	wantStdin := `{"protocol":1,"service":"web","generation":12,"backends":[` +
		`{"id":"web-blue-2","address":"10.0.0.1","port":8080},{"id":"web-blue-1","address":"10.0.0.2","port":8080}]}`
	if apply.Stdin != wantStdin {
		t.Errorf("apply stdin = %s\nwant %s", apply.Stdin, wantStdin)
	}
	if got := calls[1].Stdin; got != `{"protocol":1,"service":"web"}` {
		t.Errorf("applied stdin = %s", got)
	}
	if calls[0].Stdin != "" {
		t.Errorf("info stdin = %q, want none", calls[0].Stdin)
	}
	wantEnv := []string{"CYCLER_LB_PROTOCOL=1", "CYCLER_LB_SERVICE=web", "LC_ALL=C",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, c := range calls {
		env := slices.Sorted(slices.Values(c.Env))
		if !slices.Equal(env, wantEnv) {
			t.Errorf("%s env = %q, want %q", c.Verb, env, wantEnv)
		}
		if c.Dir != "/" {
			t.Errorf("%s ran in %q, want /", c.Verb, c.Dir)
		}
		if wantArgs := append(f.command()[1:], c.Verb); !slices.Equal(c.Args, wantArgs) {
			t.Errorf("%s args = %q, want %q", c.Verb, c.Args, wantArgs)
		}
	}
}

func TestApplyStaleGeneration(t *testing.T) {
	f := newFake(t)
	d := newDriver(t, f.command(), 0)
	ctx := ctxT(t)
	if err := d.Apply(ctx, 7, []lbdrivers.Backend{blue1}); err != nil {
		t.Fatal(err)
	}
	err := d.Apply(ctx, 6, []lbdrivers.Backend{blue2})
	var ce *execdriver.CommandError
	if !errors.Is(err, execdriver.ErrStaleGeneration) || !errors.As(err, &ce) || ce.ExitCode != execdriver.ExitStale {
		t.Fatalf("Apply(6) after 7 = %v, want ErrStaleGeneration with exit status 3", err)
	}
	if !strings.Contains(err.Error(), "generation 6 is older than the stored 7") {
		t.Fatalf("error %q lacks the program's message", err)
	}
	if gen, set, err := d.Applied(ctx); err != nil || gen != 7 || !slices.Equal(set, []lbdrivers.Backend{blue1}) {
		t.Fatalf("Applied = %d %v %v, want 7 [blue1]", gen, set, err)
	}
}

func TestApplyFailureCarriesStderrTail(t *testing.T) {
	f := newFake(t)
	// 1,000 lines of about 24 bytes: far more than the 4 KiB tail.
	d := newDriver(t, f.command("--fail-apply", "1000"), 0)
	err := d.Apply(ctxT(t), 1, []lbdrivers.Backend{blue1})
	var ce *execdriver.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("Apply = %v, want a *CommandError", err)
	}
	if errors.Is(err, execdriver.ErrStaleGeneration) || ce.Verb != "apply" || ce.ExitCode != 1 {
		t.Fatalf("CommandError = %+v, want apply exit status 1", ce)
	}
	if !strings.HasSuffix(ce.Stderr, "fakelb: detail line 999\nfakelb: the LB refused the set") {
		t.Fatalf("stderr tail ends %q", ce.Stderr[max(0, len(ce.Stderr)-80):])
	}
	if len(ce.Stderr) > execdriver.StderrTail || strings.Contains(ce.Stderr, "detail line 0\n") {
		t.Fatalf("stderr tail is %d bytes and starts %q; want at most %d bytes of the end", len(ce.Stderr), ce.Stderr[:40], execdriver.StderrTail)
	}
	if !strings.Contains(err.Error(), "detail line 999; fakelb: the LB refused the set") {
		t.Fatalf("error %q does not end with the program's message", err)
	}
	if got := f.verbs(t); !slices.Equal(got, []string{"info", "apply"}) {
		t.Fatalf("verbs run = %v, want no read-back after a failed apply", got)
	}
}

func TestApplyRefusedBeforeAnyProcessRuns(t *testing.T) {
	tests := []struct {
		name     string
		give     []lbdrivers.Backend
		wantErr  error
		errMatch string
	}{
		{name: "empty set", give: nil, wantErr: execdriver.ErrEmptySet},
		{name: "shell metacharacters", give: []lbdrivers.Backend{blue1, {ID: "x", Address: "10.0.0.1; rm -rf /", Port: 80}}, errMatch: `"10.0.0.1; rm -rf /"`},
		{name: "command substitution", give: []lbdrivers.Backend{{ID: "x", Address: "$(reboot)", Port: 80}}, errMatch: "neither an IP address"},
		{name: "newline", give: []lbdrivers.Backend{{ID: "x", Address: "a\nb", Port: 80}}, errMatch: "neither an IP address"},
		{name: "empty address", give: []lbdrivers.Backend{{ID: "x", Address: "", Port: 80}}, errMatch: "neither an IP address"},
		{name: "port zero", give: []lbdrivers.Backend{{ID: "x", Address: "10.0.0.1", Port: 0}}, errMatch: "port 0 is out of range"},
		{name: "port too large", give: []lbdrivers.Backend{{ID: "x", Address: "10.0.0.1", Port: 70000}}, errMatch: "port 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			d := newDriver(t, f.command(), 0)
			err := d.Apply(ctxT(t), 1, tt.give)
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
				t.Fatalf("Apply = %v, want %v containing %q", err, tt.wantErr, tt.errMatch)
			}
			if got := f.verbs(t); !slices.Equal(got, []string{"info"}) {
				t.Fatalf("verbs run = %v, want only New's info", got)
			}
		})
	}
}

func TestAppliedBadOutput(t *testing.T) {
	tests := []struct {
		name     string
		give     string
		errMatch string
	}{
		{name: "not json", give: "generation 12", errMatch: "invalid character"},
		{name: "no generation", give: `{"backends":[]}`, errMatch: "no generation"},
		{name: "no backends", give: `{"generation":3}`, errMatch: "no backends"},
		{name: "hostile address", give: `{"generation":3,"backends":[{"id":"a","address":"a b","port":1}]}`, errMatch: `"a b"`},
		{name: "trailing garbage", give: `{"generation":3,"backends":[]} and more`, errMatch: "more than one JSON value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, newFake(t).command("--applied", tt.give), 0)
			_, _, err := d.Applied(ctxT(t))
			if !errors.Is(err, execdriver.ErrBadOutput) || !strings.Contains(err.Error(), tt.errMatch) {
				t.Fatalf("Applied = %v, want ErrBadOutput containing %q", err, tt.errMatch)
			}
		})
	}
}

func TestApplyReadBackMismatch(t *testing.T) {
	d := newDriver(t, newFake(t).command("--ignore-apply"), 0)
	err := d.Apply(ctxT(t), 4, []lbdrivers.Backend{blue1})
	if !errors.Is(err, execdriver.ErrReadBack) || !strings.Contains(err.Error(), "serves generation 0 [], not [10.0.0.2:8080]") {
		t.Fatalf("Apply = %v, want ErrReadBack naming both sets", err)
	}
}

func TestStdoutLimit(t *testing.T) {
	d := newDriver(t, newFake(t).command("--big-stdout", "applied"), 0)
	_, _, err := d.Applied(ctxT(t))
	if !errors.Is(err, execdriver.ErrBadOutput) || !strings.Contains(err.Error(), "stdout exceeds 1048576 bytes") {
		t.Fatalf("Applied = %v, want ErrBadOutput for a 2 MiB answer", err)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	f := newFake(t)
	childPidFile := filepath.Join(f.dir, "child.pid")
	d := newDriver(t, f.command("--hang", "apply", "--child-pid", childPidFile), 500*time.Millisecond)
	err := d.Apply(ctxT(t), 1, []lbdrivers.Backend{blue1})
	if !errors.Is(err, execdriver.ErrTimeout) || !strings.Contains(err.Error(), "after 500ms") {
		t.Fatalf("Apply = %v, want ErrTimeout after 500ms", err)
	}
	calls := f.calls(t)
	if len(calls) != 2 || calls[1].Verb != "apply" {
		t.Fatalf("calls = %+v, want info then apply", calls)
	}
	b, err := os.ReadFile(childPidFile)
	if err != nil {
		t.Fatalf("the hanging apply did not record its child: %v", err)
	}
	child, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{calls[1].Pid, child} {
		waitDead(t, pid)
	}
}

func TestParentContextEndsRun(t *testing.T) {
	f := newFake(t)
	d := newDriver(t, f.command("--hang", "applied", "--child-pid", filepath.Join(f.dir, "child.pid")), time.Minute)
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	_, _, err := d.Applied(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, execdriver.ErrTimeout) {
		t.Fatalf("Applied = %v, want the caller's context.DeadlineExceeded, not ErrTimeout", err)
	}
}

func TestChildHoldingStdoutFailsTheCall(t *testing.T) {
	f := newFake(t)
	childPidFile := filepath.Join(f.dir, "child.pid")
	d := newDriver(t, f.command("--leak-stdout", "applied", "--child-pid", childPidFile), 0)
	_, _, err := d.Applied(ctxT(t))
	// The child outlives the call by design; end it.
	if b, rerr := os.ReadFile(childPidFile); rerr == nil {
		if pid, aerr := strconv.Atoi(string(b)); aerr == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitDead(t, pid)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "kept its stdout or stderr open") {
		t.Fatalf("Applied = %v, want an error about the child holding stdout", err)
	}
}

// waitDead waits until pid is gone or a zombie: killed, not yet reaped by
// whoever inherited it.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs 10s after the timeout: %s", pid, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

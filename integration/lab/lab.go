package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// service is the Consul service name of the demo app.
const service = "web"

// The two releases the demo deploys, in order.
var versions = []string{"v1", "v2"}

// afterLast is how long the load goes on after the last deploy returned, so
// the timeline shows the LBs settled on the new version.
const afterLast = 3 * time.Second

// startFleet starts the whole product. It runs inside LabT.Run, so a harness
// failure ends it through Fatalf.
func startFleet(t *harness.LabT, progress func(string, ...any)) *harness.Fleet {
	progress("starting Consul, 3 cyclerd servers, 4 app hosts (cyclerd agent), nginx and varnish (each with cyclerd lb)")
	progress("(the first run builds cyclerd, cyclerctl and the demo app; on a busy 2-core machine this takes a minute)")
	f := harness.StartFleet(t, harness.FleetOptions{Service: service})
	for _, l := range f.LBs {
		mode := ""
		if l.Mode != "" {
			mode = ", " + l.Mode + " mode"
		}
		progress("%s (%s%s) listens on %s", l.ID, l.Kind, mode, l.Public)
	}
	return f
}

// buildPackages writes the demo app's package of each version into dir and
// returns their paths.
func buildPackages(f *harness.Fleet, dir string) ([]string, error) {
	bin, err := os.ReadFile(f.DemoBin)
	if err != nil {
		return nil, fmt.Errorf("read the demo app binary: %w", err)
	}
	var paths []string
	for _, v := range versions {
		var buf bytes.Buffer
		if err := pkgtest.WriteDemoPackage(&buf, v, bin); err != nil {
			return nil, err
		}
		p := filepath.Join(dir, service+"-"+v+".tar.gz")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("write package %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// startedRE finds the cycle id in cyclerctl deploy's "cycle web-1 started" line.
var startedRE = regexp.MustCompile(`cycle (\S+) started`)

// deploy runs `cyclerctl deploy --follow pkg` against server s, with its
// progress on stdout and stderr, and returns what happened.
func deploy(ctx context.Context, f *harness.Fleet, s *harness.FleetServer, version, pkg string, stdout, stderr io.Writer, l *load) deployRun {
	d := deployRun{Version: version, Server: s.ID}
	cmd := harness.Command(ctx, f.CtlBin, f.CtlArgs(s, "deploy", "--follow", pkg)...)
	// stdout is handed over as it is, so on a terminal cyclerctl draws its
	// live progress line; stderr is copied to find the cycle id.
	var errBuf syncBuffer
	cmd.Stdout, cmd.Stderr = stdout, io.MultiWriter(stderr, &errBuf)
	err := cmd.Run()
	d.Returned = l.since(time.Now())
	d.Exit = exitCode(err)
	if m := startedRE.FindStringSubmatch(errBuf.String()); m != nil {
		d.ID = m[1]
		d.Cycle, d.HistoryErr = history(ctx, f, s, d.ID)
	}
	return d
}

// history reads cycle id with `cyclerctl --json history --cycle ID`.
func history(ctx context.Context, f *harness.Fleet, s *harness.FleetServer, id string) (*cycle.Cycle, error) {
	var out, errOut bytes.Buffer
	cmd := harness.Command(ctx, f.CtlBin, f.CtlArgs(s, "--json", "history", "--cycle", id)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cyclerctl history --cycle %s: %w: %s", id, err, strings.TrimSpace(errOut.String()))
	}
	var c cycle.Cycle
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		return nil, fmt.Errorf("cyclerctl --json history --cycle %s: %w", id, err)
	}
	return &c, nil
}

// exitCode is a command's exit status: 0 for nil, -1 when it did not run.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// syncBuffer is a bytes.Buffer safe for the copying goroutine of exec and
// the reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ctlDir is the directory whose cyclerctl the printed commands use: the
// one `make build` puts in .bin, else the lab's own build (deleted on exit).
func ctlDir(f *harness.Fleet) string {
	if wd, err := os.Getwd(); err == nil {
		bin := filepath.Join(wd, ".bin", "cyclerctl")
		if st, err := os.Stat(bin); err == nil && st.Mode()&0o111 != 0 {
			return filepath.Dir(bin)
		}
	}
	return filepath.Dir(f.CtlBin)
}

// hasCommand reports whether cyclerctl knows the command args (for example
// "schedule list"), so the lab only suggests commands that exist.
func hasCommand(ctx context.Context, f *harness.Fleet, args ...string) bool {
	cmd := harness.Command(ctx, f.CtlBin, append(args, "--help")...)
	return cmd.Run() == nil
}

// printTry prints where everything is and the commands to try next.
func printTry(ctx context.Context, w io.Writer, f *harness.Fleet, dir string, removeOnExit bool) {
	s := f.Servers[0]
	fmt.Fprintln(w, "\nThe lab keeps running; everything listens on 127.0.0.1:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  consul\t%s (web UI at /ui/)\n", f.Consul.URL())
	for _, sv := range f.Servers {
		fmt.Fprintf(tw, "  %s\tcyclerd server, API %s\n", sv.ID, sv.APIAddr)
	}
	for _, a := range f.Agents {
		fmt.Fprintf(tw, "  %s\tcyclerd agent %s, app %s\n", a.Instance, a.APIAddr, a.AppURL())
	}
	for _, l := range f.LBs {
		fmt.Fprintf(tw, "  %s\t%s load balancer %s (cyclerd lb %s)\n", l.ID, l.Kind, l.Public, l.URL())
	}
	_ = tw.Flush()
	note := ""
	if removeOnExit {
		note = " (deleted on exit; run with --keep to keep it)"
	}
	fmt.Fprintf(w, "Logs and data are under %s%s.\n", dir, note)

	fmt.Fprintln(w, "\nTry, in another terminal:")
	fmt.Fprintf(w, "  export CYCLER_ADDR=%s CYCLER_TOKEN=%s PATH=%s:$PATH\n", s.APIAddr, f.OperatorToken, ctlDir(f))
	tries := [][2]string{
		{"cyclerctl hosts", "every app host: pool, version, visible or hidden, health"},
		{"cyclerctl status", "each service: generation, live pool, pool versions, freeze"},
		{"cyclerctl history " + service, "the cycles the demo ran"},
		{"cyclerctl history --cycle " + service + "-2", "one cycle in detail: phases, hosts, checks, LB acks"},
		{"cyclerctl lb status", "what each load balancer applied and acked"},
		{"cyclerctl rollback " + service + " --follow", "instant flip back to v1 on the warm standby pool"},
		{"cyclerctl breaker " + service, "the circuit breaker of the service"},
	}
	if hasCommand(ctx, f, "schedule", "list") {
		tries = append(tries, [2]string{"cyclerctl schedule list", "the cron schedules and deploy windows"})
	}
	for _, l := range f.LBs {
		tries = append(tries, [2]string{"curl -s " + l.Public + "/", "a request through " + l.ID})
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range tries {
		fmt.Fprintf(tw, "  %s\t# %s\n", t[0], t[1])
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nPress Ctrl-C to stop everything.")
}

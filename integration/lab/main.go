// Command lab is cycler's demo: the whole product on one machine, on loopback,
// with real components. It starts a Consul agent, 3 `cyclerd server`s, 4 app
// hosts (a `cyclerd agent` each, 2 in the blue pool and 2 in the green one), an
// nginx load balancer (dynamic mode where the Lua module is installed) and a
// varnish one, each driven by its `cyclerd lb`. It builds two packages of the
// demo app, v1 and v2, and deploys them one after the other with the real
// `cyclerctl deploy --follow`, while a load generator sends a steady stream of
// requests through both load balancers. It ends with a summary: requests and
// failures per load balancer, which version each served over time, and each
// cycle's phase timings.
//
// `make demo` runs it and leaves the lab running until Ctrl-C, printing the
// commands to try next; `make demo ARGS=--once` exits after the summary, with
// status 0 only when no request failed and both load balancers serve v2.
//
// Flags:
//
//	--once   exit after the summary (status 1, with the reason, unless the demo was clean)
//	--rate   requests per second through each load balancer (default 50)
//	--dir    where to keep files and logs (default: a new temp dir)
//	--keep   keep the temp dir on a clean exit (it is always kept after a failure)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// After the first signal, restore the default handling so that a second Ctrl-C
	// ends a slow shutdown at once (the children die with the lab: Pdeathsig).
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		// LabT's errors already start with "lab: ".
		fmt.Fprintln(os.Stderr, "lab:", strings.TrimPrefix(err.Error(), "lab: "))
		os.Exit(1)
	}
}

// run starts the lab, prints the summary to stdout and progress to stderr, and
// waits for ctx (or returns at once with --once). Everything started is stopped
// before it returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "exit after the summary: status 0 only when no request failed and both LBs serve v2")
	rate := fs.Int("rate", 50, "requests per second through each load balancer")
	dir := fs.String("dir", "", "directory for files and logs (default: a new temp dir)")
	keep := fs.Bool("keep", false, "keep the temp dir on a clean exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see --help", fs.Args())
	}
	if *rate < 1 || *rate > 1000 {
		return fmt.Errorf("--rate %d is out of range; use 1 to 1000 requests per second", *rate)
	}

	autoDir := *dir == ""
	if autoDir {
		d, err := os.MkdirTemp("", "cycler-lab-")
		if err != nil {
			return fmt.Errorf("make lab dir: %w", err)
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("make lab dir %s: %w", *dir, err)
	}

	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "lab: "+format+"\n", a...) }
	lt := harness.NewLabT(*dir, prefixWriter{w: stderr, prefix: "lab: "})
	defer func() {
		progress("stopping everything")
		lt.Close()
		if rerr := harness.RemoveBuiltBinaries(); rerr != nil {
			progress("remove built binaries: %v", rerr)
		}
		switch {
		case err != nil || lt.Failed():
			progress("logs kept in %s", *dir)
		case autoDir && !*keep:
			if rerr := os.RemoveAll(*dir); rerr != nil {
				progress("remove %s: %v", *dir, rerr)
			}
		default:
			progress("files and logs kept in %s", *dir)
		}
	}()

	var f *harness.Fleet
	if err := lt.Run(func() { f = startFleet(lt, progress) }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return nil // interrupted while starting; the deferred cleanup stops what runs
	}
	probs, err := demo(ctx, f, *dir, *rate, stdout, stderr, progress)
	if err != nil || ctx.Err() != nil {
		return err
	}
	if *once {
		if len(probs) > 0 {
			return fmt.Errorf("the demo did not show a clean deploy: %s", strings.Join(probs, "; "))
		}
		return nil
	}
	printTry(ctx, stdout, f, *dir, autoDir && !*keep)
	<-ctx.Done()
	fmt.Fprintln(stdout)
	return nil
}

// demo deploys every version in turn under load and prints the summary. It
// returns the summary's problems; err is for a demo that could not run.
func demo(ctx context.Context, f *harness.Fleet, dir string, rate int, stdout, stderr io.Writer, progress func(string, ...any)) ([]string, error) {
	pkgs, err := buildPackages(f, dir)
	if err != nil {
		return nil, err
	}
	var targets []target
	for _, l := range f.LBs {
		kind := l.Kind
		if l.Mode != "" {
			kind += " (" + l.Mode + " mode)"
		}
		targets = append(targets, target{name: l.ID, kind: kind, url: l.Public})
	}
	progress("load: %d requests/s through each of nginx-1 and varnish-1 from now until the end", rate)
	ld := startLoad(targets, rate)
	var deploys []deployRun
	for i, v := range versions {
		// Each deploy talks to another server: any server takes the
		// request, and a follower forwards it to the leader.
		s := f.Servers[i%len(f.Servers)]
		fmt.Fprintf(stdout, "\n$ cyclerctl --addr %s deploy --follow %s\n", s.APIAddr, filepath.Base(pkgs[i]))
		d := deploy(ctx, f, s, v, pkgs[i], stdout, stderr, ld)
		deploys = append(deploys, d)
		if ctx.Err() != nil {
			ld.stop()
			return nil, nil
		}
		if d.Exit != 0 {
			progress("cyclerctl deploy of %s exited %d; not deploying the next version", v, d.Exit)
			break
		}
	}
	progress("letting the load run %s more, then the summary", afterLast)
	select {
	case <-ctx.Done():
	case <-time.After(afterLast):
	}
	samples, skipped, ran := ld.stop()
	if ctx.Err() != nil {
		return nil, nil
	}
	return writeSummary(stdout, report{
		targets: targets, rate: rate, samples: samples, skipped: skipped, ran: ran,
		loadStart: ld.start, deploys: deploys, want: versions[len(versions)-1],
	}), nil
}

// prefixWriter prefixes every write (one log line from LabT) with prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}

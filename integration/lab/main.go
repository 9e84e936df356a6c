// Command lab starts cycler's demo lab on loopback: a Consul agent, four demo app
// instances (blue and green pools) registered in Consul under the Consul contract,
// and nginx and varnish fronting the blue pool. It prints where everything is and
// how to poke at it, then runs until Ctrl-C (SIGINT) or SIGTERM and stops it all.
//
// `make demo` runs it; `make demo ARGS=--once` prints the summary, including real
// requests through each load balancer, and exits.
//
// Flags:
//
//	--once   print the summary and exit
//	--dir    where to keep files and logs (default: a new temp dir)
//	--keep   keep the temp dir on a clean exit (it is always kept after a failure)
//
// Until `cyclerd lb` takes over, nginx and varnish use a static config that lists
// the blue pool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

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
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

// run starts the lab, prints the summary to stdout and progress to stderr, and
// waits for ctx (or returns at once with --once). Everything started is stopped
// before it returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "print the summary and exit")
	dir := fs.String("dir", "", "directory for files and logs (default: a new temp dir)")
	keep := fs.Bool("keep", false, "keep the temp dir on a clean exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see --help", fs.Args())
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

	var l *lab
	if err := lt.Run(func() { l = startLab(lt, progress) }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return nil // interrupted while starting; the deferred cleanup stops what runs
	}
	probes := probeLBs(ctx, l, 4)
	printSummary(stdout, l, probes, *dir, autoDir && !*keep)
	if *once {
		return nil
	}
	fmt.Fprintln(stdout, "\nThe lab runs until you press Ctrl-C.")
	<-ctx.Done()
	fmt.Fprintln(stdout)
	return nil
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

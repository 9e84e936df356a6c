// Command cyclerd is cycler's daemon. One binary plays three roles:
//
//	cyclerd server -config server.hcl   replicated controller (Raft), 1, 3 or 5 per fleet
//	cyclerd agent  -config agent.hcl    one per app server
//	cyclerd lb     -config lb.hcl       one per load balancer host
//
// plus `cyclerd version` and `cyclerd config check -role R FILE`.
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

	"github.com/cyclerhq/cycler/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "cyclerd:", err)
		}
		os.Exit(exitCode(err)) // the only exit in the program
	}
}

// errReported marks an error whose details were already printed.
var errReported = errors.New("reported")

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

const usage = `Usage: cyclerd <command> [flags]

Commands:
  server   run a controller server (Raft); -config server.hcl
  agent    run the agent on an app server; -config agent.hcl
  lb       run the load-balancer role; -config lb.hcl
  version  print the version
  config   check a config file: cyclerd config check -role server|agent|lb FILE

Run 'cyclerd <command> -h' for a command's flags.
`

// run dispatches one command. It returns instead of exiting so that main
// exits in exactly one place and tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "server":
		return runServer(ctx, args[1:], stderr)
	case "agent":
		return runAgent(ctx, args[1:], stderr)
	case "lb":
		return runLB(ctx, args[1:], stderr)
	case "version", "-v", "--version":
		fmt.Fprintln(stdout, "cyclerd", version.Get())
		return nil
	case "config":
		return runConfig(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

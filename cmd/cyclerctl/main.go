// Command cyclerctl is the operator's CLI for cycler. It talks to any cyclerd
// server over the HTTP API; writes sent to a follower are forwarded to the leader.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code) // the only exit in the program
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "Error:", err)
	return exitCode(err)
}

// exitCode maps a command's error to the process exit code (docs/cli.md
// lists them): an error that carries its own code keeps it, a refused cycle
// start is cycle.ExitRefused, and anything else is cycle.ExitError.
func exitCode(err error) int {
	var ec exitCoder
	switch {
	case err == nil:
		return cycle.ExitLive
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.Is(err, api.ErrRefused):
		return cycle.ExitRefused
	}
	return cycle.ExitError
}

// exitCoder is an error that carries a specific exit code (see docs/cli.md: exit codes).
type exitCoder interface{ ExitCode() int }

// exitError is an error with the exit code it should end the process with,
// such as the outcome of a cycle that `deploy` waited for.
type exitError struct {
	code int
	err  error
}

// Error implements error.
func (e *exitError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *exitError) Unwrap() error { return e.err }

// ExitCode implements exitCoder.
func (e *exitError) ExitCode() int { return e.code }

var _ exitCoder = (*exitError)(nil)

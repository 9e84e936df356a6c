package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/cyclerhq/cycler/config"
)

// runConfig implements `cyclerd config check -role R FILE`.
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: cyclerd config check -role server|agent|lb FILE")
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "the role the file configures: server, agent or lb")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: cyclerd config check -role server|agent|lb FILE")
		return flag.ErrHelp
	}
	path := fs.Arg(0)
	err := config.Check(*role, path)
	var ps config.Problems
	if errors.As(err, &ps) {
		fmt.Fprintf(stderr, "%s: %d problem(s):\n%s\n", path, len(ps), ps.Error())
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%s)\n", path, *role)
	return nil
}

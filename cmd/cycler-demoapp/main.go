// Command cycler-demoapp is the tiny web app that cycler's demo lab and integration
// tests deploy, smoke-test and switch between. It tells every caller which release
// and which instance answered, so a test can prove where a load balancer sent it.
//
// Routes:
//
//	GET /        200, JSON {"version": ..., "instance": ..., "pool": ...} with the
//	             headers X-App-Version, X-App-Instance and X-App-Pool. Every path
//	             not listed below answers the same way.
//	GET /health  200 "ok" (500 with -fail-health).
//
// Flags, each with an environment fallback so that an agent can start the app from a
// package manifest without building a command line (a flag beats its variable):
//
//	-listen       CYCLER_DEMO_LISTEN       host:port to listen on (default 127.0.0.1:8080)
//	-version      CYCLER_DEMO_VERSION      release version to report (default "dev")
//	-instance     CYCLER_DEMO_INSTANCE     instance id to report (default: the host name)
//	-pool         CYCLER_DEMO_POOL         pool to report, blue or green (default empty)
//	-fail-health  CYCLER_DEMO_FAIL_HEALTH  "true": /health answers 500, a release that never gets healthy
//	-fail-instance CYCLER_DEMO_FAIL_INSTANCE limit the two failures above to this instance id
//	-fail-path    CYCLER_DEMO_FAIL_PATH    a path (exact match, e.g. /checkout) that answers 500,
//	                                       a release that is healthy but broken for users
//
// The app logs JSON lines to stderr and shuts down gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/cyclerhq/cycler/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		// -h printed the usage; that is a success.
	default:
		fmt.Fprintln(os.Stderr, "cycler-demoapp:", err)
		os.Exit(1)
	}
}

// run parses the command line (with environment fallbacks read through getenv) and
// serves until ctx is cancelled.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := logging.New(logging.FormatJSON, "info", stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	return serve(ctx, cfg, log.Named("demoapp"))
}

// parseConfig reads the flags; each flag's default comes from its environment
// variable so that flags win over the environment.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	host, _ := os.Hostname()
	failHealthDefault := false
	if v := getenv("CYCLER_DEMO_FAIL_HEALTH"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return config{}, fmt.Errorf("CYCLER_DEMO_FAIL_HEALTH=%q is not a boolean; use true or false", v)
		}
		failHealthDefault = b
	}

	var cfg config
	fs := flag.NewFlagSet("cycler-demoapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", env("CYCLER_DEMO_LISTEN", "127.0.0.1:8080"), "host:port to listen on (env CYCLER_DEMO_LISTEN)")
	fs.StringVar(&cfg.Version, "version", env("CYCLER_DEMO_VERSION", "dev"), "release version to report (env CYCLER_DEMO_VERSION)")
	fs.StringVar(&cfg.Instance, "instance", env("CYCLER_DEMO_INSTANCE", host), "instance id to report (env CYCLER_DEMO_INSTANCE)")
	fs.StringVar(&cfg.Pool, "pool", env("CYCLER_DEMO_POOL", ""), "pool to report, blue or green (env CYCLER_DEMO_POOL)")
	fs.BoolVar(&cfg.FailHealth, "fail-health", failHealthDefault, "answer 500 on /health (env CYCLER_DEMO_FAIL_HEALTH)")
	fs.StringVar(&cfg.FailPath, "fail-path", env("CYCLER_DEMO_FAIL_PATH", ""), "a path (exact match) that answers 500 (env CYCLER_DEMO_FAIL_PATH)")
	fs.StringVar(&cfg.FailInstance, "fail-instance", env("CYCLER_DEMO_FAIL_INSTANCE", ""), "limit -fail-health and -fail-path to this instance id (env CYCLER_DEMO_FAIL_INSTANCE)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q; this command takes flags only", fs.Args())
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

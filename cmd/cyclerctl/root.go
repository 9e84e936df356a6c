package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/client"
)

// globals are the flags every command shares.
type globals struct {
	addr    string
	token   string
	caCert  string
	cert    string
	key     string
	json    bool
	timeout string
	stdout  io.Writer
	stderr  io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "cyclerctl",
		Short:         "Operate cycler: blue/green deploys behind verified load-balancer switches",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", envOr("CYCLER_ADDR", "127.0.0.1:7400"), "cyclerd server API address, host:port or URL (env CYCLER_ADDR)")
	pf.StringVar(&g.token, "token", os.Getenv("CYCLER_TOKEN"), "API token with the operator scope (env CYCLER_TOKEN)")
	pf.StringVar(&g.caCert, "ca-cert", os.Getenv("CYCLER_CA_CERT"), "PEM CA certificate to verify the server's TLS certificate; implies https (env CYCLER_CA_CERT)")
	pf.StringVar(&g.cert, "client-cert", os.Getenv("CYCLER_CLIENT_CERT"), "PEM client certificate, for servers that verify clients (env CYCLER_CLIENT_CERT)")
	pf.StringVar(&g.key, "client-key", os.Getenv("CYCLER_CLIENT_KEY"), "PEM key of --client-cert (env CYCLER_CLIENT_KEY)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON instead of tables")
	pf.StringVar(&g.timeout, "timeout", "30s", "time limit for each API request")

	root.AddCommand(
		newVersionCmd(g),
		newClusterCmd(g),
		newSnapshotCmd(g),
		newStatusCmd(g),
		newAuditCmd(g),
		newLBCmd(g),
	)
	root.AddCommand(newPackageCmd(g))
	root.AddCommand(newHostsCmd(g), newHostCmd(g))
	root.AddCommand(newFreezeCmds(g)...)
	root.AddCommand(newDeployCmd(g), newRollbackCmd(g), newHistoryCmd(g), newBreakerCmd(g), newScheduleCmd(g))
	root.AddCommand(newCycleActionCmds(g)...)
	return root
}

// client builds an API client from the global flags.
func (g *globals) client() (*client.Client, error) {
	d, err := parseDuration("--timeout", g.timeout)
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{
		Addr: g.addr, Token: g.token, CACertFile: g.caCert,
		ClientCertFile: g.cert, ClientKeyFile: g.key, Timeout: d,
	})
}

// printJSON writes v as indented JSON.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a tabwriter for human output; call Flush when done.
func (g *globals) table() *tabwriter.Writer {
	return tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parseDuration(flag, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive duration; use a value like 30s or 2m", flag, s)
	}
	return d, nil
}

package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/pkgstore"
)

// defaultInstallWait outlasts the agents' default install_timeout (10m).
const defaultInstallWait = "15m"

func newHostsCmd(g *globals) *cobra.Command {
	var service string
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "Show every app instance: pool, version, digest, visible or hidden, health, agent reachable, last install",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/hosts"
			if service != "" {
				path += "?service=" + url.QueryEscape(service)
			}
			var rows []controller.Host
			if err := g.call(cmd, http.MethodGet, path, nil, &rows); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(g.stdout, "no hosts: no cyclerd agent or app instance is registered in Consul")
				return nil
			}
			tw := g.table()
			fmt.Fprintln(tw, "INSTANCE\tSERVICE\tPOOL\tVERSION\tDIGEST\tSTATE\tHEALTH\tAGENT\tLAST INSTALL")
			for _, h := range rows {
				agentCol := "reachable"
				if !h.AgentReachable {
					agentCol = "unreachable"
					if h.AgentAddr == "" {
						agentCol = "none"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Instance, h.Service, orDash(h.Pool), orDash(h.Version),
					orDash(pkgstore.ShortDigest(h.Digest)), h.State, h.Health, agentCol, lastInstall(h))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "show only this service")
	return cmd
}

func newHostCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Act on one host through its agent (relayed by the leader, recorded in the audit trail)",
	}
	wait := defaultInstallWait
	install := &cobra.Command{
		Use:   "install INSTANCE DIGEST",
		Short: "Install a pushed package on one host and wait for the result (the app restarts; a failure rolls back)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDuration("--wait", wait)
			if err != nil {
				return err
			}
			// The request lasts as long as the install, so the per-request
			// timeout becomes --wait.
			g.timeout = d.String()
			var res agent.InstallResult
			if err := g.call(cmd, http.MethodPost, "/v1/hosts/"+url.PathEscape(args[0])+"/install", agent.InstallRequest{Digest: args[1]}, &res); err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(g.stdout, describeInstall(args[0], res))
			}
			if res.Outcome == agent.OutcomeFailed {
				return fmt.Errorf("install of %s on %s failed", args[1], args[0])
			}
			return nil
		},
	}
	install.Flags().StringVar(&wait, "wait", defaultInstallWait, "how long to wait for the install to finish")
	cmd.AddCommand(install, hostMaintenanceCmd(g, true), hostMaintenanceCmd(g, false))
	return cmd
}

// hostMaintenanceCmd is `host hide` or `host unhide`.
func hostMaintenanceCmd(g *globals, hide bool) *cobra.Command {
	verb, short := "unhide", "Take a host out of Consul maintenance, so it gets traffic again"
	if hide {
		verb, short = "hide", "Put a host in Consul maintenance, so Consul DNS, LBs and health?passing drop it"
	}
	var gen uint64
	cmd := &cobra.Command{
		Use:   verb + " INSTANCE --generation N",
		Short: short,
		Long: short + ".\n\nThe generation orders hides and unhides: the agent refuses one older than the newest it has seen, " +
			"so a stale caller cannot undo a newer decision. Use the service's current generation (cyclerctl status) or a newer one.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if gen == 0 {
				return errors.New("--generation is required and must be at least 1; see `cyclerctl status` for the service's generation")
			}
			var m agent.Maintenance
			if err := g.call(cmd, http.MethodPost, "/v1/hosts/"+url.PathEscape(args[0])+"/"+verb, agent.GenerationRequest{Generation: gen}, &m); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(m)
			}
			state := "visible"
			if m.Hidden {
				state = "hidden (" + m.Reason + ")"
			}
			fmt.Fprintf(g.stdout, "%s is %s at generation %d\n", args[0], state, m.Generation)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&gen, "generation", 0, "the service generation this is for (required)")
	return cmd
}

// describeInstall is the one-line human answer to `host install`.
func describeInstall(instance string, res agent.InstallResult) string {
	cur := "nothing"
	if res.Current != nil {
		cur = res.Current.Version + " (" + res.Current.Dir + ")"
	}
	switch res.Outcome {
	case agent.OutcomeInstalled:
		return fmt.Sprintf("%s: installed %s in %s", instance, res.Version, res.FinishedAt.Sub(res.StartedAt).Round(time.Millisecond))
	case agent.OutcomeUnchanged:
		return fmt.Sprintf("%s: %s is already current; nothing changed", instance, res.Version)
	}
	rolled := ""
	if res.RolledBack {
		rolled = "; rolled back"
	}
	return fmt.Sprintf("%s: install failed at step %s: %s%s; current is %s", instance, res.Step, res.Error, rolled, cur)
}

// lastInstall summarizes a host's last install for the table.
func lastInstall(h controller.Host) string {
	li := h.LastInstall
	if h.Installing != nil {
		return fmt.Sprintf("%s of %s: %s", h.Installing.Action, orDash(pkgstore.ShortDigest(h.Installing.Digest)+h.Installing.Release), h.Installing.Step)
	}
	if li == nil {
		return "-"
	}
	s := string(li.Outcome) + " " + orDash(li.Version)
	if li.Outcome == agent.OutcomeFailed {
		s += " at " + li.Step
		if li.RolledBack {
			s += ", rolled back"
		}
	}
	return s + " " + li.FinishedAt.Local().Format(time.RFC3339)
}

package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/controller"
)

// maxErrorWidth keeps a long LAST ERROR from wrapping the table; --json
// has the whole text.
const maxErrorWidth = 80

func newLBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lb",
		Short: "Inspect the load balancers (cyclerd lb) and what they acknowledged",
	}
	var service string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every LB's acknowledged generation and backends per service, from Consul",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/lbs"
			if service != "" {
				path += "?service=" + url.QueryEscape(service)
			}
			var rows []controller.LBAck
			if err := g.call(cmd, http.MethodGet, path, nil, &rows); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(g.stdout, "no LB has acknowledged anything yet")
				return nil
			}
			tw := g.table()
			fmt.Fprintln(tw, "LB\tSERVICE\tDRIVER\tGENERATION\tBACKENDS\tACKED\tSTALENESS\tLAST ERROR")
			for _, r := range rows {
				acked, stale := "-", "-"
				if !r.AppliedAt.IsZero() {
					acked = r.AppliedAt.Local().Format(time.RFC3339)
				}
				if r.StalenessSeconds != nil {
					stale = (time.Duration(*r.StalenessSeconds * float64(time.Second))).Round(time.Second).String()
				}
				lastErr := r.LastError
				if r.Error != "" {
					lastErr = "unreadable ack: " + r.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.LBID, r.Service, orDash(r.Driver),
					strconv.FormatUint(r.Generation, 10), len(r.Backends), acked, stale, orDash(truncate(lastErr, maxErrorWidth)))
			}
			return tw.Flush()
		},
	}
	status.Flags().StringVar(&service, "service", "", "show only this service")
	cmd.AddCommand(status)
	return cmd
}

// truncate shortens s to n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

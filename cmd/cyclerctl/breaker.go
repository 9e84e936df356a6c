package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/cycle"
)

func newBreakerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "breaker [SERVICE]",
		Short: "Show the circuit breakers that stop cycles of a service after repeated failures",
		Long: `Breaker shows each service's circuit breaker, or SERVICE's. A breaker opens
when a service's consecutive failures (failed hosts and aborted cycles) reach
its threshold; while it is open every cycle of the service is refused, until
the cooldown ends and one cycle may try (half-open). Close it at once with
cyclerctl breaker reset SERVICE.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var list []cycle.BreakerStatus
			if len(args) == 1 {
				var b cycle.BreakerStatus
				if err := g.call(cmd, http.MethodGet, "/v1/breakers/"+url.PathEscape(args[0]), nil, &b); err != nil {
					return fmt.Errorf("breaker of %s: %w", args[0], err)
				}
				list = append(list, b)
			} else if err := g.call(cmd, http.MethodGet, "/v1/breakers", nil, &list); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(g.stdout, "no breakers: no service has had a cycle yet")
				return nil
			}
			return renderBreakers(g.stdout, list, time.Local)
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "reset SERVICE",
		Short: "Close SERVICE's breaker and clear its failure count, so cycles may start again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b cycle.BreakerStatus
			if err := g.call(cmd, http.MethodPost, "/v1/breakers/"+url.PathEscape(args[0])+"/reset", struct{}{}, &b); err != nil {
				return fmt.Errorf("breaker reset %s: %w", args[0], err)
			}
			if g.json {
				return g.printJSON(b)
			}
			fmt.Fprintf(g.stdout, "breaker of %s is %s (failures %d/%d)\n", b.Service, b.State, b.ConsecutiveFailures, b.Threshold)
			return nil
		},
	})
	return cmd
}

// renderBreakers writes the breaker table.
func renderBreakers(w io.Writer, list []cycle.BreakerStatus, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tFAILURES\tCOOLDOWN\tREOPENS AT")
	for _, b := range list {
		reopens := "-"
		if b.State == cycle.BreakerOpen {
			reopens = formatTime(b.ReopensAt, loc)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", b.Service, b.State, b.ConsecutiveFailures, b.Threshold, orDash(b.Cooldown), reopens)
	}
	return tw.Flush()
}

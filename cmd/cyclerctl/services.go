package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/raftstore"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Show each service's generation, live pool, pool versions and freeze",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var list []controller.Service
			if len(args) == 1 {
				var s controller.Service
				if err := g.call(cmd, http.MethodGet, "/v1/services/"+url.PathEscape(args[0]), nil, &s); err != nil {
					return err
				}
				list = append(list, s)
			} else if err := g.call(cmd, http.MethodGet, "/v1/services", nil, &list); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(g.stdout, "no services have state yet")
				return nil
			}
			tw := g.table()
			fmt.Fprintln(tw, "SERVICE\tGENERATION\tLIVE\tBLUE\tGREEN\tFROZEN")
			for _, s := range list {
				gen, live, blue, green := "-", "-", "-", "-"
				if st := s.State; st != nil {
					gen, live = strconv.FormatUint(st.Generation, 10), st.Live
					blue, green = orDash(st.Pools.Blue.Version), orDash(st.Pools.Green.Version)
				}
				frozen := "no"
				if f := s.Frozen; f != nil {
					frozen = fmt.Sprintf("yes: %q by %s at %s", f.Reason, f.By, f.At.Format(time.RFC3339))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, gen, live, blue, green, frozen)
			}
			return tw.Flush()
		},
	}
}

func newFreezeCmds(g *globals) []*cobra.Command {
	var reason string
	freeze := &cobra.Command{
		Use:   "freeze SERVICE --reason TEXT",
		Short: "Block every cycle of SERVICE, manual or scheduled, until unfreeze",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s controller.Service
			if err := g.call(cmd, http.MethodPut, "/v1/services/"+url.PathEscape(args[0])+"/freeze", api.FreezeRequest{Reason: reason}, &s); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(s)
			}
			fmt.Fprintf(g.stdout, "%s is frozen: %s\n", args[0], reason)
			return nil
		},
	}
	freeze.Flags().StringVar(&reason, "reason", "", "why the service is frozen (required)")
	unfreeze := &cobra.Command{
		Use:   "unfreeze SERVICE",
		Short: "Lift the freeze of SERVICE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.call(cmd, http.MethodDelete, "/v1/services/"+url.PathEscape(args[0])+"/freeze", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s is no longer frozen\n", args[0])
			return nil
		},
	}
	return []*cobra.Command{freeze, unfreeze}
}

func newAuditCmd(g *globals) *cobra.Command {
	var after, limit uint64
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail: who changed what, and when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var entries []raftstore.AuditEntry
			path := fmt.Sprintf("/v1/audit?after=%d&limit=%d", after, limit)
			if err := g.call(cmd, http.MethodGet, path, nil, &entries); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(entries)
			}
			tw := g.table()
			fmt.Fprintln(tw, "SEQ\tAT\tTOKEN\tACTION\tTARGET\tDETAIL")
			for _, e := range entries {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format(time.RFC3339), e.TokenName, e.Action, e.Target, e.Detail)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "show entries after this sequence number")
	cmd.Flags().Uint64Var(&limit, "limit", 100, "show at most this many entries")
	return cmd
}

// decodeBody decodes a JSON response body.
func decodeBody(r io.Reader, v any) error {
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("decoding the server's answer: %w", err)
	}
	return nil
}

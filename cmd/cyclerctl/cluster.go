package main

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect and change the set of cyclerd servers"}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "members",
			Short: "List the servers: id, Raft and API address, voter, leader, last contact, Raft index",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var out api.Members
				if err := g.call(cmd, http.MethodGet, "/v1/cluster/members", nil, &out); err != nil {
					return err
				}
				if g.json {
					return g.printJSON(out)
				}
				tw := g.table()
				fmt.Fprintln(tw, "ID\tRAFT ADDR\tAPI ADDR\tVOTER\tLEADER\tLAST CONTACT\tINDEX\tSTATE")
				for _, m := range out.Members {
					contact := "-"
					if m.LastContactMS >= 0 {
						contact = (time.Duration(m.LastContactMS) * time.Millisecond).String()
					}
					index, state := fmt.Sprint(m.AppliedIndex), m.State
					if m.Error != "" {
						index, state = "?", "unreachable"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\t%s\n", m.ID, m.RaftAddr, orDash(m.APIAddr), m.Voter, m.Leader, contact, index, state)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "(as seen by %s)\n", out.AnsweredBy)
				return nil
			},
		},
		&cobra.Command{
			Use:   "join SERVER_API_ADDR",
			Short: "Add the server listening at SERVER_API_ADDR to the cluster of --addr",
			Long: `Add a server to the cluster. cyclerctl asks the new server for its id and
addresses, then asks the cluster (any server at --addr) to add it. A server
that already leads a cluster of its own (it bootstrapped because it was started
without raft.join) is refused: adding it could overwrite one cluster's state
with the other's. Restart such a server with an empty data_dir and raft.join set.`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				newcomer, err := g.clientAt(args[0])
				if err != nil {
					return err
				}
				var st api.NodeStats
				if err := newcomer.Do(cmd.Context(), http.MethodGet, "/v1/cluster/self", nil, &st); err != nil {
					return fmt.Errorf("asking the new server at %s who it is: %w", args[0], err)
				}
				var members api.Members
				if err := g.call(cmd, http.MethodGet, "/v1/cluster/members", nil, &members); err != nil {
					return err
				}
				if st.Members > 0 && !slices.ContainsFunc(members.Members, func(m api.Member) bool { return m.ID == st.NodeID }) {
					return fmt.Errorf("server %q at %s already belongs to another cluster (members %v); "+
						"stop it, empty its data_dir and start it with raft.join pointing at this cluster", st.NodeID, args[0], st.MemberIDs)
				}
				req := api.JoinRequest{NodeID: st.NodeID, RaftAddr: st.RaftAddr, APIAddr: st.APIAddr}
				if err := g.call(cmd, http.MethodPost, "/v1/cluster/join", req, nil); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "server %s (raft %s) joined\n", st.NodeID, st.RaftAddr)
				return nil
			},
		},
		&cobra.Command{
			Use:   "leave",
			Short: "Make the server at --addr leave the cluster and stop",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var out map[string]string
				if err := g.call(cmd, http.MethodPost, "/v1/cluster/leave", struct{}{}, &out); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "server %s left the cluster and is stopping\n", out["left"])
				return nil
			},
		},
		&cobra.Command{
			Use:   "remove NODE_ID",
			Short: "Remove a server (for example a dead one) from the cluster",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := g.call(cmd, http.MethodPost, "/v1/cluster/remove", api.RemoveRequest{NodeID: args[0]}, nil); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "server %s removed\n", args[0])
				return nil
			},
		},
	)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

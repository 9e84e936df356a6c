package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/version"
)

// serverVersion is the body of GET /v1/version.
type serverVersion struct {
	version.Info
	Node string `json:"node"`
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client's version and the version of the server at --addr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := struct {
				Client      version.Info   `json:"client"`
				Server      *serverVersion `json:"server,omitempty"`
				ServerError string         `json:"server_error,omitempty"`
			}{Client: version.Get()}
			c, err := g.client()
			if err != nil {
				return err
			}
			var sv serverVersion
			if err := c.Do(cmd.Context(), "GET", "/v1/version", nil, &sv); err != nil {
				out.ServerError = err.Error()
			} else {
				out.Server = &sv
			}
			if g.json {
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "client  %s\n", out.Client)
				if out.Server != nil {
					fmt.Fprintf(g.stdout, "server  %s (node %s at %s)\n", out.Server.Info, out.Server.Node, c.Addr())
				}
			}
			if out.ServerError != "" {
				// The client half is still useful, but a script must see the failure.
				return fmt.Errorf("server version: %s", out.ServerError)
			}
			return nil
		},
	}
}

package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
)

// retryFor bounds how long call keeps retrying while the cluster has no
// leader (an election after a server died takes about a second).
const retryFor = 15 * time.Second

// call sends one request to the server at --addr. While the cluster is
// electing a leader the server answers not_leader or unavailable; call
// retries those with backoff, because every cycler write is idempotent.
func (g *globals) call(cmd *cobra.Command, method, path string, in, out any) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	deadline := time.Now().Add(retryFor)
	wait := 200 * time.Millisecond
	for {
		err := c.Do(ctx, method, path, in, out)
		if err == nil || !retryable(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

func retryable(err error) bool {
	return errors.Is(err, api.ErrNotLeader) || errors.Is(err, api.ErrUnavailable)
}

// clientAt returns a client for another server, with the global token and TLS.
func (g *globals) clientAt(addr string) (*client.Client, error) {
	d, err := parseDuration("--timeout", g.timeout)
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{Addr: addr, Token: g.token, CACertFile: g.caCert,
		ClientCertFile: g.cert, ClientKeyFile: g.key, Timeout: d})
}

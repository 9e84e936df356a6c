package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// ConsulOptions tunes StartConsulWith. The zero value is what StartConsul uses.
type ConsulOptions struct {
	// NodeName is the Consul node name. Default "harness-<http port>".
	NodeName string
	// Persistent runs a single-node server with an on-disk Raft store instead of
	// dev mode. It takes about two seconds to elect itself (dev mode: 0.2s), but Restart then
	// keeps everything: KV, the catalog, registrations. In dev mode a Restart keeps
	// the ports and the agent's own service registrations and checks (they live in
	// the data dir) but loses the KV store and any catalog-only data.
	Persistent bool
	// Join, if set, starts a client agent (no server, no Raft) that joins the
	// LAN gossip of the agent at this serf address (another Consul's
	// SerfLANAddr), as every app host's local agent joins the servers in a
	// real datacenter. Persistent is ignored then.
	Join string
}

// Consul is a real Consul agent on loopback, started by StartConsul.
type Consul struct {
	*Process
	// HTTPAddr is the HTTP API address, 127.0.0.1:port.
	HTTPAddr string
	// DNSAddr is the DNS address, 127.0.0.1:port (UDP and TCP).
	DNSAddr string
	// ServerAddr is the server RPC address.
	ServerAddr string
	// SerfLANAddr is the LAN gossip address.
	SerfLANAddr string
	// NodeName is the agent's node name.
	NodeName string
	// DataDir is the agent's data directory.
	DataDir string

	client *consulapi.Client
}

// ConsulBinary returns the Consul binary: $CYCLER_CONSUL_BIN, else
// <module root>/.bin/consul. It calls t.Fatalf, telling the user to run
// `make deps`, when the binary is missing.
func ConsulBinary(t T) string {
	t.Helper()
	path := os.Getenv("CYCLER_CONSUL_BIN")
	if path == "" {
		path = filepath.Join(ModuleRoot(t), ".bin", "consul")
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		fatalf(t, "harness: no Consul binary at %s (from $CYCLER_CONSUL_BIN or <repo>/.bin/consul); "+
			"run `make deps` to build it, or point CYCLER_CONSUL_BIN at a consul binary", path)
	}
	return path
}

// StartConsul starts a dev-mode Consul agent (see ConsulOptions) on free loopback
// ports and waits until it has a leader and has registered its own node.
func StartConsul(t T) *Consul {
	t.Helper()
	return StartConsulWith(t, ConsulOptions{})
}

// StartConsulWith starts a Consul agent with opts; see StartConsul.
func StartConsulWith(t T, opts ConsulOptions) *Consul {
	t.Helper()
	bin := ConsulBinary(t)
	dir := filepath.Join(t.TempDir(), "consul")
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		fatalf(t, "harness: consul: make data dir: %v", err)
	}
	http, dns, server, serf := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	node := opts.NodeName
	if node == "" {
		node = "harness-" + strconv.Itoa(http)
	}
	c := &Consul{
		HTTPAddr:    loopback(http),
		DNSAddr:     loopback(dns),
		ServerAddr:  loopback(server),
		SerfLANAddr: loopback(serf),
		NodeName:    node,
		DataDir:     dataDir,
	}
	client, err := consulapi.NewClient(&consulapi.Config{Address: c.HTTPAddr, Scheme: "http"})
	if err != nil {
		fatalf(t, "harness: consul: api client for %s: %v", c.HTTPAddr, err)
	}
	c.client = client

	// The ports stanza fixes every listener so that Restart comes back on the same
	// addresses; WAN gossip and gRPC are off because nothing here uses them.
	// raft_multiplier 1 (production timings, not the default 5) lets a persistent
	// server elect itself in about 2s instead of 8s.
	hcl := fmt.Sprintf(`ports { http = %d dns = %d server = %d serf_lan = %d serf_wan = -1 grpc = -1 grpc_tls = -1 }
performance { raft_multiplier = 1 }
disable_host_node_id = true
disable_update_check = true`, http, dns, server, serf)
	args := []string{"agent"}
	switch {
	case opts.Join != "":
		args = append(args, "-retry-join", opts.Join, "-retry-interval", "1s")
	case opts.Persistent:
		args = append(args, "-server", "-bootstrap-expect=1")
	default:
		args = append(args, "-dev")
	}
	args = append(args,
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-node", node,
		"-data-dir", dataDir,
		"-log-level", "info",
		"-hcl", hcl,
	)
	name := "consul"
	if opts.Join != "" {
		name = "consul-" + node
	}
	c.Process = StartProcess(t, ProcessConfig{
		Name:  name,
		Path:  bin,
		Args:  args,
		Dir:   dir,
		Ready: c.ready,
	})
	return c
}

// Client returns an API client for this agent.
func (c *Consul) Client() *consulapi.Client { return c.client }

// URL returns the agent's HTTP base URL, http://127.0.0.1:port.
func (c *Consul) URL() string { return "http://" + c.HTTPAddr }

// ready passes once the agent reports a leader and its own node is in the catalog,
// so that registrations and health queries work from the first call.
func (c *Consul) ready(ctx context.Context) error {
	code, body, err := httpGet(ctx, c.URL()+"/v1/status/leader")
	if err != nil {
		return err
	}
	if code != 200 || strings.Trim(strings.TrimSpace(body), `"`) == "" {
		return fmt.Errorf("no leader yet (status %d, body %q)", code, body)
	}
	node, _, err := c.client.Catalog().Node(c.NodeName, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	if node == nil || node.Node == nil {
		return errors.New("node " + c.NodeName + " not in the catalog yet")
	}
	return nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/integration/harness"
)

// Secrets of the host tests. Each direction has its own token, as in a
// real fleet.
const (
	// fleetSecret is what agents present to servers (an agent-scope api
	// token on the servers): blob downloads.
	fleetSecret = "fleet-agent-scope-secret-0123456789"
	// agentAPISecret is what servers present to agents (the servers'
	// agent_token, an agent-scope api token on the agents).
	agentAPISecret = "servers-to-agents-secret-0123456789"
	// agentOpsSecret is an operator-only token on the agents, which the
	// agent API must refuse.
	agentOpsSecret = "agent-operator-only-secret-0123456789"
)

// hostsEnv is a real Consul, one real `cyclerd server` that stores
// packages and relays host actions, and the real cyclerctl.
type hostsEnv struct {
	t      *testing.T
	consul *harness.Consul
	c      *cluster
	server *clusterNode
	// demoBin is the demo app binary that packages carry.
	demoBin string
}

func startHostsEnv(t *testing.T) *hostsEnv {
	t.Helper()
	return startHostsEnvWith(t, "")
}

// startHostsEnvWith is startHostsEnv with extra server config appended.
func startHostsEnvWith(t *testing.T, extraServerConfig string) *hostsEnv {
	t.Helper()
	e := &hostsEnv{t: t, consul: harness.StartConsul(t), demoBin: harness.BuildBinary(t, "./cmd/cycler-demoapp")}
	e.c = &cluster{t: t, ctlBin: harness.BuildBinary(t, "./cmd/cyclerctl")}
	ports := freePorts(t, 2)
	n := &clusterNode{ID: "cyc-1", APIAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]), RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	api, err := client.New(client.Config{Addr: "http://" + n.APIAddr, Token: clusterToken, Timeout: 15 * time.Second})
	if err != nil {
		harness.Fatal(t, err)
	}
	n.API = api
	dir := filepath.Join(t.TempDir(), n.ID)
	n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{
		Role: "server", Name: n.ID, Dir: dir, APIAddr: n.APIAddr,
		Config: hostsServerConfig(n, filepath.Join(dir, "data"), e.consul.HTTPAddr) + extraServerConfig,
	})
	e.server = n
	e.c.nodes = []*clusterNode{n}
	e.c.waitLeader(testContext(t, time.Minute), n)
	return e
}

// hostsServerConfig is a single server's config: the operator token of the
// cluster tests, the fleet's agent-scope token, and the agent token.
func hostsServerConfig(n *clusterNode, dataDir, consulAddr string) string {
	return harness.ServerConfig{NodeID: n.ID, DataDir: dataDir, LogLevel: "debug", APIAddr: n.APIAddr, OperatorSecret: clusterToken,
		FleetSecret: fleetSecret, ConsulAddr: consulAddr, RaftAddr: n.RaftAddr, Timing: "fast", AgentToken: agentAPISecret}.Render()
}

// testAgent is one `cyclerd agent` supervising the app of one instance.
type testAgent struct {
	*harness.Cyclerd
	Instance string
	Pool     string
	APIAddr  string
	AppPort  int
	DataDir  string
}

// AppURL is the app's base URL.
func (a *testAgent) AppURL() string { return fmt.Sprintf("http://127.0.0.1:%d", a.AppPort) }

// startAgent starts an agent for instance web-<pool>-<n> on free ports.
func (e *hostsEnv) startAgent(pool, instance string) *testAgent {
	e.t.Helper()
	return startAgentWith(e.t, []string{e.server.APIAddr}, e.consul.HTTPAddr, pool, instance)
}

// agentConfig renders an agent's config (harness.AgentConfig) for service
// web, with an operator-only token the agent API must refuse.
func agentConfig(a *testAgent, servers []string, consulAddr string) string {
	return harness.AgentConfig{NodeID: "host-" + a.Instance, DataDir: a.DataDir, LogLevel: "debug", APIAddr: a.APIAddr,
		ServersSecret: agentAPISecret, OperatorSecret: agentOpsSecret, ConsulAddr: consulAddr, Servers: servers,
		ServerToken: fleetSecret, Service: "web", Pool: a.Pool, Instance: a.Instance, AppPort: a.AppPort}.Render()
}

// agentCall calls a's API with token.
func (a *testAgent) agentCall(ctx context.Context, token, method, path string, in, out any) error {
	c, err := client.New(client.Config{Addr: "http://" + a.APIAddr, Token: token, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	return c.Do(ctx, method, path, in, out)
}

// inventory reads a's inventory the way servers do.
func (a *testAgent) inventory(t *testing.T) agent.Inventory {
	t.Helper()
	var inv agent.Inventory
	if err := a.agentCall(context.Background(), agentAPISecret, http.MethodGet, "/v1/agent/inventory", nil, &inv); err != nil {
		harness.Fatalf(t, "inventory of %s: %v", a.Instance, err)
	}
	return inv
}

// writePackage writes a package to a file for `cyclerctl package push`.
func writePackage(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		harness.Fatal(t, err)
	}
	return path
}

// push pushes the package file at path with cyclerctl and returns its digest.
func (e *hostsEnv) push(ctx context.Context, path string) string {
	e.t.Helper()
	out := e.c.mustCtl(ctx, e.server.APIAddr, "--json", "package", "push", path)
	var p controller.PackagePushed
	if err := json.Unmarshal([]byte(out), &p); err != nil || !strings.HasPrefix(p.Digest, "sha256:") {
		harness.Fatalf(e.t, "package push --json: %v\n%s", err, out)
	}
	return p.Digest
}

// install runs `cyclerctl host install` and requires outcome want.
func (e *hostsEnv) install(ctx context.Context, instance, digest string, want agent.Outcome) agent.InstallResult {
	e.t.Helper()
	out, errOut, err := e.c.ctl(ctx, e.server.APIAddr, "--json", "host", "install", instance, digest)
	var res agent.InstallResult
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		harness.Fatalf(e.t, "host install %s %s: %v (%v)\nstdout: %s\nstderr: %s", instance, digest, err, jerr, out, errOut)
	}
	if res.Outcome != want || (err == nil) != (want != agent.OutcomeFailed) {
		harness.Fatalf(e.t, "host install %s %s: outcome %s (exit %v), want %s: step %s: %s\nstderr: %s", instance, digest, res.Outcome, err, want, res.Step, res.Error, errOut)
	}
	return res
}

// hosts runs `cyclerctl hosts --json`.
func (e *hostsEnv) hosts(ctx context.Context) []controller.Host {
	e.t.Helper()
	out := e.c.mustCtl(ctx, e.server.APIAddr, "--json", "hosts", "--service", "web")
	var rows []controller.Host
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		harness.Fatalf(e.t, "hosts --json: %v\n%s", err, out)
	}
	return rows
}

// appVersion is the version the app at url answers with, or an error.
func appVersion(ctx context.Context, url string) (string, error) {
	return versionVia(ctx, freshHTTP, url)
}

// wantVersion fails unless the app of a answers version.
func wantVersion(t *testing.T, a *testAgent, version string) {
	t.Helper()
	got, err := appVersion(context.Background(), a.AppURL())
	if err != nil || got != version {
		harness.Fatalf(t, "%s serves %q (%v), want %q", a.Instance, got, err, version)
	}
}

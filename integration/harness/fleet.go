package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
)

// fleetStartTimeout bounds the wait for the servers to form one cluster and for
// every daemon to register in Consul.
const fleetStartTimeout = 2 * time.Minute

// FleetOptions describes the whole product on loopback: see StartFleet.
type FleetOptions struct {
	// Service is the service the agents run and the LBs front. Default "web".
	Service string
	// ServiceBlock is the body of the servers' `service "<Service>" { ... }`
	// block (timings, smoke and bake checks). Default: DemoServiceBlock.
	ServiceBlock string
	// NginxMode is the nginx driver's mode, "dynamic" or "reload". Default:
	// dynamic where Debian's Lua module is installed, else reload.
	NginxMode string
	// LogLevel is every cyclerd's log level. Default "info".
	LogLevel string
}

// DemoServiceBlock is a service block with short but realistic timings (a 1s
// drain, a 3s bake checked every 500ms through every LB), a smoke check of /
// and a breaker that opens after 4 consecutive failures.
const DemoServiceBlock = `  min_live      = 1
  max_parallel  = 2
  drain         = "1s"
  bake_time     = "3s"
  bake_interval = "500ms"
  breaker {
    consecutive_failures = 4
    cooldown             = "10m"
  }
  smoke "root" {
    path            = "/"
    retries         = 2
    backoff_initial = "200ms"
  }
  bake "through-lb" {
    path = "/bake"
  }
`

// Fleet is a real Consul, 3 `cyclerd server`s, 4 app hosts (a `cyclerd agent`
// supervising the app it installs: <svc>-blue-1/2, <svc>-green-1/2) and two
// load balancers (nginx and varnish), each driven by its `cyclerd lb`.
type Fleet struct {
	// Service is the service name.
	Service string
	// Consul is the Consul agent every daemon uses.
	Consul *Consul
	// Servers are the cyclerd servers; Servers[0] bootstrapped the cluster.
	Servers []*FleetServer
	// Agents are the app hosts, blue ones first.
	Agents []*FleetAgent
	// LBs are the load balancers: nginx first, then varnish.
	LBs []*FleetLB
	// OperatorToken is the operator-scope secret every server accepts
	// (cyclerctl's --token or CYCLER_TOKEN).
	OperatorToken string
	// CtlBin is the cyclerctl binary.
	CtlBin string
	// DemoBin is the demo app binary that packages carry.
	DemoBin string
}

// FleetServer is one `cyclerd server`.
type FleetServer struct {
	*Cyclerd
	// ID is the node id ("cyc-1").
	ID string
	// APIAddr and RaftAddr are its listen addresses.
	APIAddr, RaftAddr string
	// API is an operator client for it.
	API *client.Client
}

// FleetAgent is one app host: a `cyclerd agent` and the app it supervises.
type FleetAgent struct {
	*Cyclerd
	// Instance is the Consul service id ("web-blue-1"); Pool is "blue" or "green".
	Instance, Pool string
	// APIAddr is the agent's API; AppPort the app's port on 127.0.0.1.
	APIAddr string
	AppPort int
	// DataDir is the agent's data directory.
	DataDir string
}

// AppURL is the app's base URL, bypassing every LB.
func (a *FleetAgent) AppURL() string { return fmt.Sprintf("http://127.0.0.1:%d", a.AppPort) }

// FleetLB is one load balancer and the `cyclerd lb` that drives it.
type FleetLB struct {
	*Cyclerd
	// ID is the lb_id ("nginx-1", "varnish-1"); Kind is "nginx" or "varnish".
	ID, Kind string
	// Mode is the nginx driver's mode; empty for varnish.
	Mode string
	// Public is the URL users reach the service at.
	Public string
	// LB is the nginx or varnishd process.
	LB *Process
	// Varnish is set for the varnish LB.
	Varnish *Varnish
}

// StartFleet starts everything in dependency order (Consul, the servers, the
// agents, the LBs) and waits until the servers form one cluster with a leader
// and every agent and LB has registered in Consul. Fresh random tokens secure
// every API. Nothing is deployed: the apps start with the first cycle.
func StartFleet(t T, opts FleetOptions) *Fleet {
	t.Helper()
	if opts.Service == "" {
		opts.Service = "web"
	}
	if opts.ServiceBlock == "" {
		opts.ServiceBlock = DemoServiceBlock
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.NginxMode == "" {
		opts.NginxMode = string(nginx.DetectMode(""))
	}
	f := &Fleet{
		Service:       opts.Service,
		Consul:        StartConsul(t),
		OperatorToken: randomSecret(t),
		CtlBin:        BuildBinary(t, "./cmd/cyclerctl"),
		DemoBin:       BuildBinary(t, "./cmd/cycler-demoapp"),
	}
	tok := fleetTokens{operator: f.OperatorToken, fleet: randomSecret(t), agent: randomSecret(t)}
	ctx, cancel := context.WithTimeout(context.Background(), fleetStartTimeout)
	defer cancel()

	f.startServers(ctx, t, opts, tok)
	var servers []string
	for _, s := range f.Servers {
		servers = append(servers, s.APIAddr)
	}
	for _, p := range []string{"blue", "green"} {
		for i := 1; i <= 2; i++ {
			f.Agents = append(f.Agents, startFleetAgent(t, opts, tok, servers, f.Consul.HTTPAddr, p, fmt.Sprintf("%s-%s-%d", opts.Service, p, i)))
		}
	}
	f.LBs = append(f.LBs, startFleetNginx(t, opts, tok, f.Consul.HTTPAddr, "nginx-1"), startFleetVarnish(t, opts, tok, f.Consul.HTTPAddr, "varnish-1"))
	f.waitRegistered(ctx, t)
	return f
}

// fleetTokens are the fleet's secrets: the operator's, the agents' toward the
// servers (blob downloads) and the servers' toward the agents.
type fleetTokens struct{ operator, fleet, agent string }

// startServers starts 3 servers: the first bootstraps, the others find it
// through Consul (raft.discover), and all of them must then agree on the
// members and the leader.
func (f *Fleet) startServers(ctx context.Context, t T, opts FleetOptions, tok fleetTokens) {
	t.Helper()
	for i := range 3 {
		s := &FleetServer{ID: fmt.Sprintf("cyc-%d", i+1), APIAddr: loopback(StablePort(t)), RaftAddr: loopback(StablePort(t))}
		c, err := client.New(client.Config{Addr: "http://" + s.APIAddr, Token: tok.operator, Timeout: 15 * time.Second})
		if err != nil {
			fatalf(t, "harness: client for %s: %v", s.ID, err)
		}
		s.API = c
		dir := filepath.Join(t.TempDir(), s.ID)
		s.Cyclerd = StartCyclerd(t, CyclerdOptions{Role: "server", Name: s.ID, Dir: dir, APIAddr: s.APIAddr,
			Config: fleetServerConfig(s, filepath.Join(dir, "data"), f.Consul.HTTPAddr, i > 0, opts, tok)})
		f.Servers = append(f.Servers, s)
		if i == 0 {
			// The others discover the cluster through the first, which must lead by then.
			if err := waitCluster(ctx, f.Servers); err != nil {
				fatalf(t, "harness: %v", err)
			}
		}
	}
	if err := waitCluster(ctx, f.Servers); err != nil {
		fatalf(t, "harness: %v", err)
	}
}

// Leader returns the server that leads now, asking each in turn.
func (f *Fleet) Leader(ctx context.Context) (*FleetServer, error) {
	for _, s := range f.Servers {
		st, err := serverSelf(ctx, s)
		if err != nil {
			continue
		}
		for _, l := range f.Servers {
			if l.ID == st.LeaderID {
				return l, nil
			}
		}
	}
	return nil, fmt.Errorf("no server of %d names a leader", len(f.Servers))
}

// waitCluster waits until every one of servers lists exactly servers as the
// members and names the same leader, which reports itself as leader.
func waitCluster(ctx context.Context, servers []*FleetServer) error {
	var want []string
	for _, s := range servers {
		want = append(want, s.ID)
	}
	slices.Sort(want)
	return WaitFor(ctx, fmt.Sprintf("servers %v to form one cluster with a leader", want), func() error {
		leader := ""
		for _, s := range servers {
			st, err := serverSelf(ctx, s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.ID, err)
			}
			if got := slices.Sorted(slices.Values(st.MemberIDs)); !slices.Equal(got, want) {
				return fmt.Errorf("%s lists members %v", s.ID, got)
			}
			if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
				return fmt.Errorf("%s follows %q, another server follows %q", s.ID, st.LeaderID, leader)
			}
			leader = st.LeaderID
		}
		for _, s := range servers {
			if s.ID != leader {
				continue
			}
			if st, err := serverSelf(ctx, s); err != nil || st.State != "Leader" {
				return fmt.Errorf("%s is named leader but reports state %q (%v)", s.ID, st.State, err)
			}
		}
		return nil
	})
}

func serverSelf(ctx context.Context, s *FleetServer) (api.NodeStats, error) {
	var st api.NodeStats
	err := s.API.Do(ctx, http.MethodGet, "/v1/cluster/self", nil, &st)
	return st, err
}

// waitRegistered waits until Consul lists every agent as cyclerd-agent and
// every LB as cyclerd-lb: the leader finds them there, and a cycle started
// before would not wait for an LB it does not know.
func (f *Fleet) waitRegistered(ctx context.Context, t T) {
	t.Helper()
	cc := f.Consul.Client()
	err := WaitFor(ctx, fmt.Sprintf("%d agents and %d LBs registered in Consul", len(f.Agents), len(f.LBs)), func() error {
		for svc, n := range map[string]int{"cyclerd-agent": len(f.Agents), "cyclerd-lb": len(f.LBs), "cyclerd": len(f.Servers)} {
			entries, _, err := cc.Catalog().Service(svc, "", nil)
			if err != nil {
				return err
			}
			if len(entries) < n {
				return fmt.Errorf("%d instances of %s registered, want %d", len(entries), svc, n)
			}
		}
		return nil
	})
	if err != nil {
		fatalf(t, "harness: %v", err)
	}
}

// fleetServerConfig renders a server's config; discover finds the cluster
// through Consul instead of bootstrapping.
func fleetServerConfig(s *FleetServer, dataDir, consulAddr string, discover bool, opts FleetOptions, tok fleetTokens) string {
	return ServerConfig{NodeID: s.ID, DataDir: dataDir, LogLevel: opts.LogLevel, APIAddr: s.APIAddr, OperatorSecret: tok.operator,
		FleetSecret: tok.fleet, ConsulAddr: consulAddr, RaftAddr: s.RaftAddr, Discover: discover, AgentToken: tok.agent,
		Service: opts.Service, ServiceBlock: opts.ServiceBlock}.Render()
}

// startFleetAgent starts the agent of instance in pool; it fetches blobs from
// any of servers and stops its app when it stops.
func startFleetAgent(t T, opts FleetOptions, tok fleetTokens, servers []string, consulAddr, pool, instance string) *FleetAgent {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "agent-"+instance)
	a := &FleetAgent{Instance: instance, Pool: pool, APIAddr: loopback(StablePort(t)), AppPort: StablePort(t), DataDir: filepath.Join(dir, "data")}
	// Registered before the agent, so it runs after the agent's own Cleanup:
	// an agent that did not stop cleanly may leave its app running.
	t.Cleanup(func() { KillLeftoverApp(t, a.DataDir) })
	cfg := AgentConfig{NodeID: "host-" + instance, DataDir: a.DataDir, LogLevel: opts.LogLevel, APIAddr: a.APIAddr,
		ServersSecret: tok.agent, ConsulAddr: consulAddr, Servers: servers, ServerToken: tok.fleet,
		Service: opts.Service, Pool: pool, Instance: instance, AppPort: a.AppPort}.Render()
	a.Cyclerd = StartCyclerd(t, CyclerdOptions{Role: "agent", Name: "agent-" + instance, Dir: dir, APIAddr: a.APIAddr, Config: cfg})
	return a
}

// KillLeftoverApp kills the app recorded in the state file of the agent
// with data directory dataDir if it still runs. Register it with t.Cleanup
// before starting the agent, so it runs after the agent's own Cleanup: an
// agent that did not stop cleanly may leave its app running.
func KillLeftoverApp(t T, dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "agent-state.json"))
	if err != nil {
		return
	}
	var st struct {
		App *struct {
			PID int `json:"pid"`
		} `json:"app"`
	}
	if json.Unmarshal(b, &st) != nil || st.App == nil || st.App.PID <= 0 || !Alive(st.App.PID) {
		return
	}
	t.Logf("harness: killing the app left running by the agent in %s (pid %d)", dataDir, st.App.PID)
	_ = syscall.Kill(-st.App.PID, syscall.SIGKILL)
}

// startFleetNginx starts `cyclerd lb` with a standalone nginx config, then runs
// nginx from the files it wrote, as an operator or systemd would: cyclerd
// writes the config, something else runs nginx.
func startFleetNginx(t T, opts FleetOptions, tok fleetTokens, consulAddr, id string) *FleetLB {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "nginx-"+id)
	listen, admin, apiAddr := loopback(StablePort(t)), loopback(StablePort(t)), loopback(StablePort(t))
	bin := NginxBinary(t)
	driver := NginxDriver{Mode: opts.NginxMode, Binary: bin, Prefix: prefix, AdminAddr: admin, AdminSecret: randomSecret(t),
		Services: []NginxService{{Name: opts.Service, Listen: listen}}}.Render()
	n := &FleetLB{ID: id, Kind: "nginx", Mode: opts.NginxMode, Public: "http://" + listen}
	n.Cyclerd = StartCyclerd(t, CyclerdOptions{Role: "lb", Config: fleetLBConfig(id, apiAddr, consulAddr, driver, opts, tok),
		APIAddr: apiAddr, Name: "cyclerd-lb-" + id})
	o := nginx.Options{Prefix: prefix, MainConfig: filepath.Join(prefix, "nginx.conf"), Standalone: true}
	n.LB = StartProcess(t, ProcessConfig{
		Name:      "nginx-" + id,
		Path:      bin,
		Args:      nginx.ForegroundArgs(o),
		Dir:       prefix,
		ExtraLogs: []string{filepath.Join(prefix, "logs", "error.log")},
		// The admin server answers (404 on /) once nginx serves.
		Ready: wantStatus("http://"+admin+"/", 0),
	})
	return n
}

// startFleetVarnish starts varnishd (booted with the harness's VCL) and a
// `cyclerd lb` driving it. Every request is passed to a backend, so each
// answer shows which instance served it.
func startFleetVarnish(t T, opts FleetOptions, tok fleetTokens, consulAddr, id string) *FleetLB {
	t.Helper()
	v := StartVarnish(t, VarnishOptions{})
	dir := t.TempDir()
	site := filepath.Join(dir, "site.vcl")
	if err := os.WriteFile(site, []byte("sub vcl_recv {\n    return (pass);\n}\n"), 0o644); err != nil {
		fatalf(t, "harness: varnish site VCL: %v", err)
	}
	apiAddr := loopback(StablePort(t))
	driver := VarnishDriver{V: v, VCLDir: filepath.Join(dir, "vcl"), Include: site, Service: opts.Service}.Render()
	n := &FleetLB{ID: id, Kind: "varnish", Public: v.URL(), LB: v.Process, Varnish: v}
	n.Cyclerd = StartCyclerd(t, CyclerdOptions{Role: "lb", Config: fleetLBConfig(id, apiAddr, consulAddr, driver, opts, tok),
		APIAddr: apiAddr, Name: "cyclerd-lb-" + id})
	return n
}

// fleetLBConfig renders a `cyclerd lb` config around a driver block.
func fleetLBConfig(id, apiAddr, consulAddr, driver string, opts FleetOptions, tok fleetTokens) string {
	return LBConfig{ID: id, Services: []string{opts.Service}, VerifyInterval: "1s", LogLevel: opts.LogLevel,
		APIAddr: apiAddr, OperatorSecret: tok.operator, ConsulAddr: consulAddr, Driver: driver}.Render()
}

// fleetPortBase is the lowest port StablePort hands out.
const fleetPortBase = 20000

// StablePort returns a free loopback port below the kernel's ephemeral port
// range, which FreePort (here and in every other test process) and outgoing
// connections draw from. An agent binds its app's port only at the first
// deploy, long after the port was chosen; a port from the ephemeral range
// may be taken by then by anything else on the machine. It falls back to
// FreePort when the range starts too low to leave room below it.
func StablePort(t T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low-fleetPortBase < 1000 {
		return FreePort(t)
	}
	for range 1000 {
		port := fleetPortBase + mrand.IntN(low-fleetPortBase)
		portsMu.Lock()
		fresh := !portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !fresh {
			continue
		}
		ln, err := net.Listen("tcp", loopback(port))
		if err != nil {
			continue // in use
		}
		if err := ln.Close(); err != nil {
			fatalf(t, "harness: release port %d: %v", port, err)
		}
		return port
	}
	return FreePort(t)
}

// randomSecret returns 32 random hex digits.
func randomSecret(t T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		fatalf(t, "harness: random secret: %v", err)
	}
	return hex.EncodeToString(b)
}

// CtlArgs returns the arguments that point cyclerctl at server s with the
// operator token, followed by args.
func (f *Fleet) CtlArgs(s *FleetServer, args ...string) []string {
	return append([]string{"--addr", s.APIAddr, "--token", f.OperatorToken}, args...)
}

// Env returns CYCLER_ADDR and CYCLER_TOKEN for server s, as cyclerctl reads them.
func (f *Fleet) Env(s *FleetServer) []string {
	return []string{"CYCLER_ADDR=" + s.APIAddr, "CYCLER_TOKEN=" + f.OperatorToken}
}

// String lists the fleet's components, one per line, for logs.
func (f *Fleet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "consul %s\n", f.Consul.URL())
	for _, s := range f.Servers {
		fmt.Fprintf(&b, "server %s api %s\n", s.ID, s.APIAddr)
	}
	for _, a := range f.Agents {
		fmt.Fprintf(&b, "agent %s (%s) api %s app %s\n", a.Instance, a.Pool, a.APIAddr, a.AppURL())
	}
	for _, l := range f.LBs {
		fmt.Fprintf(&b, "lb %s (%s) %s\n", l.ID, l.Kind, l.Public)
	}
	return b.String()
}

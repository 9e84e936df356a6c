//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// The configured waits of every service of the scale benchmark, and the
// other knobs a cycle's time depends on.
const (
	scaleDrain         = 2 * time.Second
	scaleBakeTime      = 3 * time.Second
	scaleBakeInterval  = time.Second
	scaleCheckInterval = 5 * time.Second // Consul checks of the simulated apps
	scaleRealService   = "web"           // the service of the real agent processes
	// scaleHostsPerConsul is how many simulated hosts share one Consul
	// client agent (a real fleet has one agent per host).
	scaleHostsPerConsul = 50
)

// scaleMaxParallel is max_parallel of a service with hosts hosts: a tenth
// of a pool, at least 2, as an operator of a large fleet might set it.
func scaleMaxParallel(hosts int) int { return max(2, hosts/2/10) }

// scaleService names the service of a scale: the 4-host scale runs real
// agent processes as service web, the others fleetsim as sim<hosts>.
func scaleService(hosts int, real bool) string {
	if real {
		return scaleRealService
	}
	return "sim" + strconv.Itoa(hosts)
}

// scaleEnv is the product on loopback for the scale benchmark: a real
// Consul, three cyclerd servers with production Raft timing, one nginx LB
// (dynamic mode) serving every service, and the agents of each scale.
type scaleEnv struct {
	t       *testing.T
	consul  *harness.Consul
	cc      *consulapi.Client
	c       *cluster
	lb      *lbNode
	demoBin string
	simBin  string
	fleet   *fleet.Client
	// versions counts the packages built, so each version is new.
	versions int
	// sims are the fleetsim processes.
	sims []*harness.Process
}

// consulTrouble counts the lines of the fleetsim logs that show the one
// Consul agent all simulated hosts share falling behind: calls that ran
// out of time, and connections Consul refused (429, its per-client
// connection limit).
func (e *scaleEnv) consulTrouble() (timeouts, refused int) {
	for _, p := range e.sims {
		b, err := os.ReadFile(p.LogPath())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.Contains(line, "context deadline exceeded"):
				timeouts++
			case strings.Contains(line, "429 Too Many Requests"):
				refused++
			}
		}
	}
	return timeouts, refused
}

// startScaleEnv starts Consul, the servers (one service block per scale)
// and the LB. The agents start per scale (startScaleAgents).
func startScaleEnv(t *testing.T, scales []scaleSpec) *scaleEnv {
	t.Helper()
	e := &scaleEnv{t: t, consul: harness.StartConsul(t), demoBin: harness.BuildBinary(t, "./cmd/cycler-demoapp"),
		simBin: harness.BuildBinary(t, "./integration/fleetsim")}
	e.cc = e.consul.Client()
	e.fleet = &fleet.Client{Consul: e.cc, Token: agentAPISecret}
	var blocks strings.Builder
	var services []string
	for _, s := range scales {
		services = append(services, s.Service)
		fmt.Fprintf(&blocks, `service %q {
  min_live      = 1
  max_parallel  = %d
  drain         = %q
  bake_time     = %q
  bake_interval = %q
  smoke "root" {
    path    = "/"
    retries = 2
  }
  bake "through-lb" {
    path = "/"
  }
}
`, s.Service, s.MaxParallel, scaleDrain.String(), scaleBakeTime.String(), scaleBakeInterval.String())
	}
	e.c = startCluster(t, clusterOptions{Size: 3, ConsulAddr: e.consul.HTTPAddr,
		Extra:    fmt.Sprintf("agent_token = %q\n%s", agentAPISecret, blocks.String()),
		ExtraAPI: fmt.Sprintf("  token \"fleet\" {\n    secret = %q\n    scopes = [\"agent\"]\n  }\n", fleetSecret)})
	e.lb = startScaleLB(t, e.consul.HTTPAddr, services)
	return e
}

// startScaleLB starts `cyclerd lb` with a standalone nginx in dynamic mode
// serving every one of services on its own port, and the nginx it writes
// the config for (as startNginxLB does for service web alone).
func startScaleLB(t *testing.T, consulAddr string, services []string) *lbNode {
	t.Helper()
	if nginx.DetectMode("") != nginx.ModeDynamic {
		t.Skip("libnginx-mod-http-lua or lua-resty-core is not installed; the nginx dynamic LB cannot run")
	}
	prefix := filepath.Join(t.TempDir(), "nginx")
	admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	var listen []harness.NginxService
	for _, s := range services {
		listen = append(listen, harness.NginxService{Name: s, Listen: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))})
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := harness.LBConfig{ID: "nginx-1", Services: services, VerifyInterval: "5s", LogLevel: "info",
		APIAddr: apiAddr, OperatorSecret: lbToken, ConsulAddr: consulAddr,
		Driver: harness.NginxDriver{Mode: "dynamic", Binary: harness.NginxBinary(t), Prefix: prefix, AdminAddr: admin,
			AdminSecret: randomHex(t), Services: listen}.Render()}.Render()
	n := &lbNode{ID: "nginx-1"}
	n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{Role: "lb", Config: cfg, APIAddr: apiAddr, Name: "cyclerd-lb-nginx-1"})
	o := nginx.Options{Prefix: prefix, MainConfig: filepath.Join(prefix, "nginx.conf"), Standalone: true}
	n.Nginx = harness.StartProcess(t, harness.ProcessConfig{
		Name: "nginx-1", Path: harness.NginxBinary(t), Args: nginx.ForegroundArgs(o), Dir: prefix,
		ExtraLogs: []string{filepath.Join(prefix, "logs", "error.log")},
		Ready:     nginxAdminUp(admin),
	})
	return n
}

// startScaleAgents starts the agents of scale s and waits until Consul
// lists every one of them as a cyclerd-agent of its service.
func (e *scaleEnv) startScaleAgents(ctx context.Context, s scaleSpec) {
	e.t.Helper()
	var servers []string
	for _, n := range e.c.nodes {
		servers = append(servers, n.APIAddr)
	}
	if s.Real {
		for i := range s.Hosts {
			p := []string{"blue", "green"}[i%2]
			startAgentWith(e.t, servers, e.consul.HTTPAddr, p, fmt.Sprintf("web-%s-%d", p, i/2+1))
		}
	} else {
		// The simulated hosts share Consul client agents, scaleHostsPerConsul
		// each, joined to the lab's Consul server, as app hosts' local agents
		// join the servers of a real datacenter.
		var consuls []string
		for k := range (s.Hosts + scaleHostsPerConsul - 1) / scaleHostsPerConsul {
			c := harness.StartConsulWith(e.t, harness.ConsulOptions{Join: e.consul.SerfLANAddr, NodeName: fmt.Sprintf("%s-consul-%d", s.Service, k+1)})
			consuls = append(consuls, c.HTTPAddr)
		}
		dir := e.t.TempDir()
		e.sims = append(e.sims, harness.StartProcess(e.t, harness.ProcessConfig{
			Name: "fleetsim-" + s.Service, Path: e.simBin, Dir: dir, StopTimeout: 30 * time.Second,
			Args: []string{"run", "-n", strconv.Itoa(s.Hosts), "-service", s.Service, "-consul", strings.Join(consuls, ","),
				"-servers", strings.Join(servers, ","), "-server-token", fleetSecret, "-agent-token", agentAPISecret,
				"-dir", filepath.Join(dir, "hosts"), "-check-interval", scaleCheckInterval.String()},
		}))
	}
	err := harness.WaitFor(ctx, fmt.Sprintf("%d cyclerd-agents of %s in Consul", s.Hosts, s.Service), func() error {
		list, err := e.fleet.Agents(ctx, s.Service)
		if err != nil {
			return err
		}
		if len(list) != s.Hosts {
			return fmt.Errorf("%d registered", len(list))
		}
		return nil
	})
	if err != nil {
		harness.Fatal(e.t, err)
	}
}

// pushVersion builds a new package of service svc and pushes it; it returns
// the version and the digest. The real agents get the demo app; the
// simulated ones a manifest (health check GET /health, no start command:
// their agents restart the app with a restart command) and a small file.
func (e *scaleEnv) pushVersion(ctx context.Context, svc string, real bool, label string) (string, string) {
	e.t.Helper()
	e.versions++
	version := fmt.Sprintf("%s-%d", label, e.versions)
	var pkg []byte
	if real {
		pkg = pkgtest.DemoPackage(e.t, version, e.demoBin)
	} else {
		m := pkgfile.Manifest{Name: svc, Version: version, Health: &pkgfile.Health{HTTPPath: "/health", Timeout: 20 * time.Second}}
		pkg = pkgtest.Package(e.t, pkgtest.Manifest(m), pkgtest.Entry{Name: "app/index.html", Body: []byte("<p>" + version + "</p>\n")})
	}
	path := writePackage(e.t, svc+"-"+version+".tar.gz", pkg)
	out := e.c.mustCtl(ctx, e.c.nodes[0].APIAddr, "--json", "package", "push", path)
	var p struct {
		Digest string `json:"digest"`
	}
	mustJSON(e.t, out, &p)
	return version, p.Digest
}

// startCycle starts a cycle of digest on svc through any server.
func (e *scaleEnv) startCycle(ctx context.Context, svc, digest string) cycle.Cycle {
	e.t.Helper()
	var c cycle.Cycle
	err := harness.WaitFor(ctx, "a cycle of "+svc+" started", func() error {
		var last error
		for _, n := range e.c.nodes {
			last = n.API.Do(ctx, http.MethodPost, "/v1/cycles", cycle.StartRequest{Service: svc, Digest: digest, RequestID: digest}, &c)
			if last == nil {
				return nil
			}
			if !retryable(last) {
				harness.Fatalf(e.t, "start a cycle of %s through %s: %v", svc, n.ID, last)
			}
		}
		return last
	})
	if err != nil {
		harness.Fatal(e.t, err)
	}
	return c
}

// cycleNow reads cycle id from the first of nodes that answers.
func scaleCycleNow(ctx context.Context, nodes []*clusterNode, id string) (cycle.Cycle, error) {
	var c cycle.Cycle
	var errs []error
	for _, n := range nodes {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.API.Do(cctx, http.MethodGet, "/v1/cycles/"+id, nil, &c)
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
	}
	return c, errors.Join(errs...)
}

// waitCycle polls cycle id every interval until cond holds for it.
func (e *scaleEnv) waitCycle(ctx context.Context, nodes []*clusterNode, id, what string, interval time.Duration, cond func(cycle.Cycle) bool) cycle.Cycle {
	e.t.Helper()
	for {
		c, err := scaleCycleNow(ctx, nodes, id)
		if err == nil && cond(c) {
			return c
		}
		if err == nil && c.Phase.Terminal() {
			harness.Fatalf(e.t, "cycle %s ended in %s before %s: %s", id, c.Phase, what, c.Message)
		}
		select {
		case <-ctx.Done():
			harness.Fatalf(e.t, "cycle %s: waiting for %s: %v (last error %v)", id, what, ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// runCycle runs one cycle of a new package on s to the end and returns it
// with the client's time just before the start request.
func (e *scaleEnv) runCycle(ctx context.Context, s scaleSpec, label string) (cycle.Cycle, time.Time) {
	e.t.Helper()
	_, digest := e.pushVersion(ctx, s.Service, s.Real, label)
	sent := time.Now()
	c := e.startCycle(ctx, s.Service, digest)
	done := e.waitCycle(ctx, e.c.nodes, c.ID, "its end", 200*time.Millisecond, func(c cycle.Cycle) bool { return c.Phase.Terminal() })
	if done.Phase != cycle.Done {
		harness.Fatalf(e.t, "cycle %s of %s ended %s: %s", done.ID, s.Service, done.Phase, done.Message)
	}
	return done, sent
}

// peerInstall installs a new package on the hosts of pool p of s with no
// hiding, smoke test or switch: POST /v1/agent/install straight to each
// agent, s.MaxParallel at a time, the least any tool must do to put a
// version on those hosts. It returns the wall time.
func (e *scaleEnv) peerInstall(ctx context.Context, s scaleSpec, p string) time.Duration {
	e.t.Helper()
	_, digest := e.pushVersion(ctx, s.Service, s.Real, "peer")
	all, err := e.fleet.Agents(ctx, s.Service)
	if err != nil {
		harness.Fatal(e.t, err)
	}
	work := make(chan fleet.Agent)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	start := time.Now()
	for range s.MaxParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				res, err := e.fleet.Install(ctx, a, digest)
				if err != nil || res.Outcome != agent.OutcomeInstalled {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%s: %v %s %s", a.Instance, err, res.Outcome, res.Error))
					mu.Unlock()
				}
			}
		}()
	}
	n := 0
	for _, a := range all {
		if a.Pool == p {
			work <- a
			n++
		}
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	if len(errs) > 0 || n != s.Hosts/2 {
		harness.Fatalf(e.t, "peer install on %d hosts of pool %s: %s", n, p, strings.Join(errs, "; "))
	}
	return took
}

// procMem reads VmRSS and VmHWM of pid in MB (10^6 bytes).
func scaleProcMem(t *testing.T, pid int) (rss, hwm float64) {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		harness.Fatal(t, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
		if err != nil {
			harness.Fatalf(t, "%s of %d: %q", k, pid, v)
		}
		if k == "VmRSS" {
			rss = round2(kb * 1024 / 1e6)
		} else {
			hwm = round2(kb * 1024 / 1e6)
		}
	}
	return rss, hwm
}

// serverMemory reads the memory of every server, marking the leader.
func (e *scaleEnv) serverMemory(ctx context.Context, when string, hosts int) []scaleRSS {
	e.t.Helper()
	leader := e.c.waitLeader(ctx, e.c.nodes...)
	var out []scaleRSS
	for _, n := range e.c.nodes {
		role := "follower"
		if n == leader {
			role = "leader"
		}
		rss, hwm := scaleProcMem(e.t, n.Pid())
		out = append(out, scaleRSS{When: when, Hosts: hosts, Node: n.ID, Role: role, RSSMB: rss, HWMMB: hwm})
	}
	return out
}

// jsonLine is a compact JSON rendering for logs.
func scaleJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// scaleNotes says what is simulated and how each figure is taken.
func scaleNotes(scales []scaleSpec) (simulated, notes []string) {
	simulated = []string{
		"The 4-host scale runs real `cyclerd agent` processes (service web), each supervising the demo app as a child process (the manifest's start command).",
		"The larger scales run `integration/fleetsim`: N instances of the agent package's own Agent in one process, each with its own data directory, its own API listener with the real agent routes and tokens, registering its app instance under the Consul contract and itself as `cyclerd-agent` (discovery.Maintain, as `cyclerd agent` does). Installs are real: the blob is fetched from the servers and hashed, unpacked with pkgfile.Extract, `current` is switched, the app is restarted and its health is checked over HTTP, and the Consul registration is updated.",
		"What fleetsim simulates is the app: an in-process HTTP server per instance (GET / answers like the demo app, GET /health answers 200). The agents run in restart_command mode; the restart command is a real child process (`fleetsim restart`) that asks the in-process app to restart, upon which it reads its version from the agent's `current` link. A supervised start would need 500 app processes, which a 2-CPU machine cannot run alongside the rest.",
		fmt.Sprintf("The simulated hosts register through Consul client agents, one per %d hosts (10 at 500 hosts), each a real `consul agent` joined to the lab's Consul server, as app hosts' local agents join the servers of a real datacenter; the servers and the LB use the server agent. A real fleet has one local agent per host, so each client agent here still does the work of %d hosts: a Consul agent applies its service and check changes (the maintenance toggles of hide and switch) one at a time and syncs each to the catalog. Each instance talks to its agent from its own loopback address (127.1.x.y), so Consul's per-client connection limit applies per simulated host.", scaleHostsPerConsul, scaleHostsPerConsul),
	}
	notes = []string{
		fmt.Sprintf("Each service: min_live 1, drain %s, bake_time %s, bake_interval %s, smoke GET / on every hidden host, bake GET / through the LB, standby keep; max_parallel a tenth of a pool, at least 2 (%s).", scaleDrain, scaleBakeTime, scaleBakeInterval, scaleMaxParallels(scales)),
		"Overhead = cycle wall time − configured waits. Wall time runs from just before POST /v1/cycles (so it includes preflight) to the finish time the leader recorded. Subtracted: bake_time always, and drain when the hide phase waited it. In the measured cycles the target pool is the previous cycle's hidden standby, so hide commits no generation and waits no drain; the table says so per cycle. Everything else is counted as overhead: preflight, hide (maintenance calls, acks), the installs, smoke, the switch (unhide, Consul health, publish, every LB's ack, the probe through the LB, hiding the old pool), bake rounds running past bake_time, and standby.",
		"The peer installs a new package on the same number of hosts (the pool the cycle left as hidden standby) by POST /v1/agent/install straight to each agent, max_parallel at a time, with no hiding, smoke test, LB or Raft: the least any tool must do to put a version on those hosts. The ratio is the median overhead over the median peer time, so it shows what the cycle costs on top of the installs themselves.",
		"Two warm-up cycles per scale are not measured: the first puts a pool live with nothing to switch from (no LB ack wait), the second is the first deploy to the other pool. The measured cycles are steady state.",
		"One nginx LB (dynamic mode, `cyclerd lb`) serves every service, so every switch waits for its ack and the bake probes go through it. The agents of the smaller scales keep running (idle) while the larger ones are measured.",
		"Server memory is VmRSS and VmHWM from /proc/<pid>/status of the real `cyclerd server` processes, read after the measured cycles of the first scale and of the largest; VmHWM is the peak since the process started. The kills come after both readings.",
		fmt.Sprintf("Resume: the leader is killed with SIGKILL %s before the bake deadline the cycle committed, so the bake→standby change is due at once; resume is the time from the kill to the start time of the standby phase, which the new leader stamps as it commits it. The peer is the Raft failover of the same kill: the time until a surviving server reports itself leader (polled every 5 ms). The killed server is restarted and caught up before the next kill.", scaleKillLead),
		"All servers, agents, Consul, nginx and the harness share the machine, which may be running other work too (see the load average): compare figures from the same run rather than across runs.",
	}
	return simulated, notes
}

func scaleMaxParallels(scales []scaleSpec) string {
	var s []string
	for _, sc := range scales {
		s = append(s, fmt.Sprintf("%d at %d hosts", sc.MaxParallel, sc.Hosts))
	}
	return strings.Join(s, ", ")
}

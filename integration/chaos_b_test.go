//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// Chaos suite, part B: faults of the infrastructure around the servers
// (Consul, an agent host, the network between servers), each injected
// while a real cycle runs on the whole lab, with the invariant checker
// sampling through both LBs throughout.

// chaosLabOptions varies startChaosLab from startFleetLab.
type chaosLabOptions struct {
	// persistentConsul runs Consul as a single server with an on-disk
	// Raft store, so a restart keeps the KV store and the catalog.
	persistentConsul bool
	// netns runs each server in its own network namespace (see
	// harness.Netns); the test skips when namespaces cannot be made.
	netns bool
}

// startChaosLab starts the lab (see fleetLab) with the service block svc
// and opts; startFleetLab is it with no options. With opts.netns it also
// returns the namespaces, where server i runs in namespace i.
func startChaosLab(t *testing.T, svc string, opts chaosLabOptions) (*fleetLab, *harness.Netns) {
	t.Helper()
	var ns *harness.Netns
	if opts.netns {
		var err error
		if ns, err = harness.StartNetns(t, 3); err != nil {
			t.Skipf("network namespaces are not available here, so the partition cannot be made: %v", err)
		}
	}
	l := &fleetLab{t: t, consul: harness.StartConsulWith(t, harness.ConsulOptions{Persistent: opts.persistentConsul}),
		demoBin: harness.BuildBinary(t, "./cmd/cycler-demoapp")}
	l.cc = l.consul.Client()
	copts := clusterOptions{Size: 3, ConsulAddr: l.consul.HTTPAddr,
		Extra:    fmt.Sprintf("agent_token = %q\n%s", agentAPISecret, svc),
		ExtraAPI: fmt.Sprintf("  token \"fleet\" {\n    secret = %q\n    scopes = [\"agent\"]\n  }\n", fleetSecret)}
	if ns != nil {
		l.c = startNetnsCluster(t, ns, copts)
	} else {
		l.c = startCluster(t, copts)
	}
	var servers []string
	for _, n := range l.c.nodes {
		servers = append(servers, n.APIAddr)
	}
	for _, p := range []string{"blue", "green"} {
		for i := 1; i <= 2; i++ {
			l.agents = append(l.agents, startAgentWith(t, servers, l.consul.HTTPAddr, p, fmt.Sprintf("web-%s-%d", p, i)))
		}
	}
	env := &lbEnv{t: t, consul: l.consul, cc: l.cc}
	l.lbs = append(l.lbs, startNginxLB(t, env, "nginx-1", "dynamic"), startVarnishLB(t, env, "varnish-1"))
	if ns != nil {
		// The servers reach every agent, app and LB front end at the
		// loopback address it registers in Consul.
		var ports []int
		for _, a := range l.agents {
			ports = append(ports, portOf(t, "http://"+a.APIAddr), a.AppPort)
		}
		for _, b := range l.lbs {
			ports = append(ports, portOf(t, b.Public))
		}
		for i := range ns.Names {
			if err := ns.RelayLoopback(i, ports...); err != nil {
				harness.Fatal(t, err)
			}
		}
	}
	return l, ns
}

// requireV2OrRolledBack fails unless the deploy of 2.0.0 over 1.0.0
// ended done or rolled back and every LB serves the version it left live.
func requireV2OrRolledBack(ctx context.Context, t *testing.T, l *fleetLab, r deployResult) {
	t.Helper()
	requireEnded(t, r, cycle.Done, cycle.RolledBack)
	want := "2.0.0"
	if r.c.Phase == cycle.RolledBack {
		want = "1.0.0"
	}
	l.requireServing(ctx, want)
}

// deployV1 pushes the demo package 1.0.0 and deploys it through the first
// server; the test fails unless the cycle goes live.
func (l *fleetLab) deployV1(ctx context.Context) {
	l.t.Helper()
	_, v1 := l.pkg(ctx, "1.0.0")
	if code, c, out := l.deploy(ctx, l.c.nodes[0].APIAddr, v1); code != cycle.ExitLive {
		harness.Fatalf(l.t, "deploy v1: exit %d (%s)\n%s", code, c.Phase, out)
	}
}

// startNetnsCluster starts 3 servers, server i inside namespace i on its
// namespace address, joined through the first. Consul's HTTP port is
// relayed into each namespace, so the servers use the lab's Consul at its
// loopback address.
func startNetnsCluster(t *testing.T, ns *harness.Netns, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, opts: opts, ctlBin: harness.BuildBinary(t, "./cmd/cyclerctl")}
	ports := freePorts(t, 2*opts.Size)
	for i := range opts.Size {
		if err := ns.RelayLoopback(i, portOf(t, "http://"+opts.ConsulAddr)); err != nil {
			harness.Fatal(t, err)
		}
		n := &clusterNode{
			ID:       fmt.Sprintf("cyc-%d", i+1),
			APIAddr:  fmt.Sprintf("%s:%d", ns.IPs[i], ports[2*i]),
			RaftAddr: fmt.Sprintf("%s:%d", ns.IPs[i], ports[2*i+1]),
		}
		api, err := client.New(client.Config{Addr: "http://" + n.APIAddr, Token: clusterToken, Timeout: 15 * time.Second})
		if err != nil {
			harness.Fatal(t, err)
		}
		n.API = api
		c.nodes = append(c.nodes, n)
	}
	ctx := testContext(t, 2*time.Minute)
	for i, n := range c.nodes {
		var join []string
		if i > 0 {
			join = []string{c.nodes[0].APIAddr}
		}
		dir := filepath.Join(t.TempDir(), n.ID)
		n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{
			Role: "server", Name: n.ID, Dir: dir, APIAddr: n.APIAddr, Netns: ns.Names[i],
			Config: withExtra(serverConfig(n, filepath.Join(dir, "data"), opts.ConsulAddr, opts.Timing, join, false), opts),
		})
		if i == 0 {
			c.waitLeader(ctx, n)
		}
	}
	c.waitMembers(ctx, c.nodes...)
	return c
}

// portOf is the port of a base URL.
func portOf(t *testing.T, base string) int {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		harness.Fatalf(t, "parse %q: %v", base, err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		harness.Fatalf(t, "no port in %q", base)
	}
	return p
}

// chaosPkg pushes the demo package of version with a pre_switch hook that
// logs marker to the agent's app.log and then sleeps for hold, so an
// install lasts at least hold and a test sees when it is under way.
func chaosPkg(ctx context.Context, l *fleetLab, version, marker string, hold time.Duration) string {
	l.t.Helper()
	m := pkgtest.DemoManifest(version)
	m.Hooks = pkgfile.Hooks{PreSwitch: [][]string{{"/bin/sh", "-c",
		fmt.Sprintf("echo %s; sleep %.1f", marker, hold.Seconds())}}}
	bin, err := os.ReadFile(l.demoBin)
	if err != nil {
		harness.Fatal(l.t, err)
	}
	path := writePackage(l.t, "web-"+version+".tar.gz", pkgtest.Package(l.t, pkgtest.Manifest(m),
		pkgtest.Entry{Name: pkgtest.DemoBinary, Body: bin, Mode: 0o755}))
	var p struct {
		Digest string `json:"digest"`
	}
	mustJSON(l.t, l.c.mustCtl(ctx, l.c.nodes[0].APIAddr, "--json", "package", "push", path), &p)
	return p.Digest
}

// deployResult is what `cyclerctl deploy` ended with.
type deployResult struct {
	code int
	c    cycle.Cycle
	out  string
}

// deployAsync runs l.deploy in a goroutine; the channel yields its result.
func deployAsync(ctx context.Context, l *fleetLab, addr string, args ...string) <-chan deployResult {
	ch := make(chan deployResult, 1)
	go func() {
		stdout, stderr, err := l.c.ctl(ctx, addr, append([]string{"--json", "deploy"}, args...)...)
		r := deployResult{code: exitCode(err), out: stdout + stderr}
		_ = json.Unmarshal([]byte(stdout), &r.c)
		ch <- r
	}()
	return ch
}

// latestCycle reads the newest cycle of service web from whichever of
// nodes answers first.
func latestCycle(ctx context.Context, nodes ...*clusterNode) (cycle.Cycle, error) {
	var errs []string
	for _, n := range nodes {
		var list []cycle.Cycle
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.API.Do(rctx, http.MethodGet, "/v1/cycles?service=web&limit=1", nil, &list)
		cancel()
		if err != nil {
			errs = append(errs, n.ID+": "+err.Error())
			continue
		}
		if len(list) == 0 {
			return cycle.Cycle{}, fmt.Errorf("%s: no cycle yet", n.ID)
		}
		return list[0], nil
	}
	return cycle.Cycle{}, fmt.Errorf("no server answered: %s", strings.Join(errs, "; "))
}

// chaosWait waits until cond holds, failing the test with what it last
// said after ctx ends.
func chaosWait(ctx context.Context, t *testing.T, what string, cond func() error) {
	t.Helper()
	if err := harness.WaitFor(ctx, what, cond); err != nil {
		harness.Fatal(t, err)
	}
}

// appLogCount counts the lines of a's app.log (which holds hook output)
// that contain s.
func appLogCount(a *testAgent, s string) int {
	b, err := os.ReadFile(filepath.Join(a.DataDir, "app.log"))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// requireEnded fails unless the deploy ended with the cycle done or rolled
// back, with the matching exit code.
func requireEnded(t *testing.T, r deployResult, allowed ...cycle.Phase) {
	t.Helper()
	codes := map[cycle.Phase]int{cycle.Done: cycle.ExitLive, cycle.RolledBack: cycle.ExitRolledBack, cycle.Aborted: cycle.ExitAborted}
	for _, p := range allowed {
		if r.c.Phase == p && r.code == codes[p] {
			t.Logf("cycle %s ended %s (exit %d): %s", r.c.ID, r.c.Phase, r.code, r.c.Message)
			return
		}
	}
	harness.Fatalf(t, "deploy: exit %d, cycle %s in phase %q (%s); want one of %v\n%s", r.code, r.c.ID, r.c.Phase, r.c.Message, allowed, r.out)
}

// TestChaosConsulRestart kills the lab's Consul (a server with its Raft
// store on disk, as production Consul servers are) with SIGKILL while the
// agents run the v2 install, and starts it again on the same data dir and
// ports. The install's hook is short, so the agents restart the app and
// re-register it while Consul is down or electing itself. The cycle must still finish live (or roll back), no request
// through either LB may fail, and the LBs must end on v2.
func TestChaosConsulRestart(t *testing.T) {
	start := time.Now()
	l, _ := startChaosLab(t, labService(""), chaosLabOptions{persistentConsul: true})
	ctx := testContext(t, 3*time.Minute)
	l.deployV1(ctx)
	const marker = "chaos-consul-install-v2"
	v2 := chaosPkg(ctx, l, "2.0.0", marker, 500*time.Millisecond)
	t.Logf("lab up and v1 live after %s", time.Since(start).Round(time.Millisecond))

	chk := l.startChecker()
	res := deployAsync(ctx, l, l.c.nodes[1].APIAddr, v2)
	green := l.agents[2:]
	chaosWait(ctx, t, "the v2 install to be under way on the green hosts", func() error {
		for _, a := range green {
			if appLogCount(a, marker) == 0 {
				return fmt.Errorf("%s has not started the pre_switch hook", a.Instance)
			}
		}
		return nil
	})
	down := time.Now()
	if err := l.consul.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	if err := l.consul.Restart(); err != nil {
		harness.Fatalf(t, "restart Consul: %v", err)
	}
	up := time.Now()
	t.Logf("Consul was down (killed, restarted on the same data dir and ports) for %s", up.Sub(down).Round(time.Millisecond))
	if c, err := latestCycle(ctx, l.c.nodes...); err == nil {
		t.Logf("cycle %s was in phase %s when Consul came back", c.ID, c.Phase)
	}

	// While Consul is down the checker cannot watch it, which says nothing
	// about the product; its watches may need a moment to reconnect after
	// up.
	chk.expectOutage(down, up.Add(2*time.Second))
	r := <-res
	chk.cycleEnded(r.c)
	rep := chk.finish()
	rep.requireClean(t)
	requireV2OrRolledBack(ctx, t, l, r)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// TestChaosAgentKilledMidInstall SIGKILLs web-green-1's agent while it runs
// the pre_switch hook of the v2 install, and starts it again. With
// failure_limit 1 the cycle goes on without the host and goes live on
// web-green-2 alone (or, if the host's install is retried, on both);
// users must never get an answer from a host whose install did not
// finish, and no request may fail.
func TestChaosAgentKilledMidInstall(t *testing.T) {
	start := time.Now()
	l, _ := startChaosLab(t, labService(`failure_limit = "1"`), chaosLabOptions{})
	ctx := testContext(t, 3*time.Minute)
	l.deployV1(ctx)
	const marker = "chaos-agent-install-v2"
	v2 := chaosPkg(ctx, l, "2.0.0", marker, 4*time.Second)
	t.Logf("lab up and v1 live after %s", time.Since(start).Round(time.Millisecond))

	chk := l.startChecker()
	res := deployAsync(ctx, l, l.c.nodes[1].APIAddr, v2)
	victim := l.agents[2]
	if victim.Instance != "web-green-1" {
		harness.Fatalf(t, "agent 2 is %s, want web-green-1", victim.Instance)
	}
	chaosWait(ctx, t, victim.Instance+" to run the v2 pre_switch hook", func() error {
		if appLogCount(victim, marker) == 0 {
			return fmt.Errorf("no %q in its app.log yet", marker)
		}
		return nil
	})
	if err := victim.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	t.Logf("killed %s's agent (SIGKILL to its process group) during its install", victim.Instance)
	if err := victim.Restart(); err != nil {
		harness.Fatalf(t, "restart %s's agent: %v", victim.Instance, err)
	}

	r := <-res
	chk.cycleEnded(r.c)
	rep := chk.finish()
	rep.requireClean(t)
	requireEnded(t, r, cycle.Done, cycle.Aborted)
	if r.c.Phase == cycle.Aborted {
		l.requireServing(ctx, "1.0.0")
		if !strings.Contains(r.c.Message, "users never saw") {
			harness.Errorf(t, "aborted cycle's message %q does not say users never saw the package", r.c.Message)
		}
		return
	}
	l.requireServing(ctx, "2.0.0")
	if hostFailed(r.c, "web-green-2") {
		harness.Errorf(t, "web-green-2 failed, but only web-green-1's agent was killed: %+v", r.c.Hosts)
	}
	inv := victim.inventory(t)
	if h := r.c.Host(victim.Instance); h != nil && h.Deploy != nil {
		t.Logf("%s's deploy step in the cycle: ok %v, %s..%s, detail %q, error %q", victim.Instance, h.Deploy.OK,
			clock(h.Deploy.StartedAt), clock(h.Deploy.FinishedAt), h.Deploy.Detail, h.Deploy.Error)
	}
	if hostFailed(r.c, victim.Instance) {
		// The host failed: it stays out of the live set, and its agent
		// came back without half an install.
		if reg, on, _ := maintenanceOf(t, l, victim.Instance); reg && !on {
			harness.Errorf(t, "%s failed its install but is registered and not in maintenance", victim.Instance)
		}
		if inv.Current != nil && inv.Current.Version == "2.0.0" {
			harness.Errorf(t, "%s failed its install but its agent reports 2.0.0 as current: %+v", victim.Instance, inv.Current)
		}
		// What the killed install left on disk does not stop the next
		// one: the host installs v2 when asked again. It stays hidden,
		// since the live generation lists it as hidden.
		var again agent.InstallResult
		if err := victim.agentCall(ctx, agentAPISecret, http.MethodPost, "/v1/agent/install", agent.InstallRequest{Digest: v2}, &again); err != nil ||
			again.Outcome == agent.OutcomeFailed || again.Current == nil || again.Current.Version != "2.0.0" {
			harness.Errorf(t, "installing v2 again on %s after the kill: %v; result %+v", victim.Instance, err, again)
		}
		if reg, on, _ := maintenanceOf(t, l, victim.Instance); !reg || !on {
			harness.Errorf(t, "%s after the second install: registered %v, maintenance %v; want registered and hidden", victim.Instance, reg, on)
		}
		for _, b := range l.lbs {
			for range 20 {
				if inst, err := lbGet(ctx, freshHTTP, b.Public+"/"); err != nil || inst == victim.Instance {
					harness.Fatalf(t, "LB %s after the second install on %s: answered by %q (%v)", b.ID, victim.Instance, inst, err)
				}
			}
		}
	} else {
		if inv.Current == nil || inv.Current.Version != "2.0.0" {
			harness.Errorf(t, "%s passed in the cycle but its agent reports current %+v", victim.Instance, inv.Current)
		}
		wantVersion(t, victim, "2.0.0")
		t.Logf("%s was retried and installed 2.0.0", victim.Instance)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// TestChaosPartitionLeader runs each server in its own network namespace
// and, while the leader drives the v2 install, cuts the leader off from
// the other two servers (blackhole routes both ways; it still reaches
// Consul and the agents). The majority must elect a new leader and finish
// the cycle, the old leader must step down and drive nothing while cut
// off, and after the heal all three agree on one leader and one history.
func TestChaosPartitionLeader(t *testing.T) {
	start := time.Now()
	l, ns := startChaosLab(t, labService(""), chaosLabOptions{netns: true})
	ctx := testContext(t, 3*time.Minute)
	l.deployV1(ctx)
	const marker = "chaos-partition-install-v2"
	v2 := chaosPkg(ctx, l, "2.0.0", marker, 3*time.Second)
	old := l.c.waitLeader(ctx, l.c.nodes...)
	oldIdx := 0
	for i, n := range l.c.nodes {
		if n == old {
			oldIdx = i
		}
	}
	majority := l.c.others(old)
	t.Logf("lab up and v1 live after %s; %s leads", time.Since(start).Round(time.Millisecond), old.ID)

	chk := l.startChecker()
	res := deployAsync(ctx, l, majority[0].APIAddr, v2)
	chaosWait(ctx, t, "the v2 install to be under way on the green hosts", func() error {
		for _, a := range l.agents[2:] {
			if appLogCount(a, marker) == 0 {
				return fmt.Errorf("%s has not started the pre_switch hook", a.Instance)
			}
		}
		return nil
	})
	before, err := latestCycle(ctx, majority...)
	if err != nil {
		harness.Fatal(t, err)
	}
	logAt := fileSize(t, old.LogPath())
	if err := ns.Partition(oldIdx); err != nil {
		harness.Fatal(t, err)
	}
	cut := time.Now()
	t.Logf("partitioned %s from %s with cycle %s in phase %s (rev %d)", old.ID, nodeIDs(majority), before.ID, before.Phase, before.Rev)

	// The old leader loses its lease and steps down; its leader hooks (the
	// orchestrator) stop.
	chaosWait(ctx, t, old.ID+" to step down", func() error {
		st, err := old.self(ctx)
		if err != nil {
			return err
		}
		if st.State == "Leader" {
			return fmt.Errorf("%s still reports state Leader (term %d)", old.ID, st.Term)
		}
		if !bytes.Contains(readFrom(t, old.LogPath(), logAt), []byte("leadership relinquished")) {
			return fmt.Errorf("%s reports %s but has not logged that its leader hooks stopped", old.ID, st.State)
		}
		return nil
	})
	stepped, err := old.self(ctx)
	if err != nil {
		harness.Fatal(t, err)
	}
	t.Logf("%s stepped down %s after the cut (state %s, applied index %d)", old.ID, time.Since(cut).Round(time.Millisecond), stepped.State, stepped.AppliedIndex)
	leader := l.c.waitLeader(ctx, majority...)
	t.Logf("%s leads the majority %s after the cut", leader.ID, time.Since(cut).Round(time.Millisecond))

	// The majority carries the cycle on: wait for a committed change of it
	// (or for its end) before healing.
	chaosWait(ctx, t, "the majority to move cycle "+before.ID, func() error {
		c, err := latestCycle(ctx, majority...)
		if err != nil {
			return err
		}
		if c.ID != before.ID {
			return fmt.Errorf("the newest cycle is %s, want %s", c.ID, before.ID)
		}
		if c.Rev <= before.Rev && !c.Phase.Terminal() {
			return fmt.Errorf("cycle %s still at rev %d in phase %s", c.ID, c.Rev, c.Phase)
		}
		return nil
	})
	during, err := old.self(ctx)
	if err != nil {
		harness.Fatal(t, err)
	}
	if during.State == "Leader" || during.AppliedIndex != stepped.AppliedIndex {
		harness.Errorf(t, "%s, cut off from the majority, is in state %s at applied index %d (was %d when it stepped down): the minority side made progress",
			old.ID, during.State, during.AppliedIndex, stepped.AppliedIndex)
	}
	// Nothing on the old leader drove the cycle once its hooks stopped. The
	// orchestrator's lines are recognised by its logger name, which the
	// old leader's log shows from before the cut.
	if !orchestratorLine.Match(readFrom(t, old.LogPath(), 0)[:logAt]) {
		harness.Fatalf(t, "%s's log has no orchestrator line before the cut, so the check below would prove nothing", old.ID)
	}
	logged := readFrom(t, old.LogPath(), logAt)
	if i := bytes.Index(logged, []byte("leadership relinquished")); i >= 0 {
		for _, line := range bytes.Split(logged[i:], []byte("\n")) {
			if orchestratorLine.Match(line) && !bytes.Contains(line, []byte("orchestrator stopped")) {
				harness.Errorf(t, "%s's orchestrator logged while it was cut off and not leading: %s", old.ID, line)
			}
		}
	}
	if err := ns.Heal(); err != nil {
		harness.Fatal(t, err)
	}
	t.Logf("healed after %s", time.Since(cut).Round(time.Millisecond))

	r := <-res
	chk.cycleEnded(r.c)
	rep := chk.finish()
	rep.requireClean(t)
	requireV2OrRolledBack(ctx, t, l, r)

	// After the heal, the three agree on one leader, and the old leader's
	// replica holds the majority's history of the cycle.
	l.c.waitMembers(ctx, l.c.nodes...)
	final, err := latestCycle(ctx, leader)
	if err != nil {
		harness.Fatal(t, err)
	}
	chaosWait(ctx, t, old.ID+" to hold the final cycle", func() error {
		c, err := latestCycle(ctx, old)
		if err != nil {
			return err
		}
		if c.ID != final.ID || c.Rev != final.Rev || c.Phase != final.Phase {
			return fmt.Errorf("%s holds cycle %s rev %d in %s; the leader holds %s rev %d in %s", old.ID, c.ID, c.Rev, c.Phase, final.ID, final.Rev, final.Phase)
		}
		return nil
	})
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// orchestratorLine matches a console log line of the orchestrator's logger.
var orchestratorLine = regexp.MustCompile(`\torchestrator(\.[a-z_.]+)?\t`)

// fileSize is the size of the file at path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		harness.Fatal(t, err)
	}
	return st.Size()
}

// readFrom reads the file at path from offset on.
func readFrom(t *testing.T, path string, offset int64) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		harness.Fatal(t, err)
	}
	if int64(len(b)) < offset {
		return nil
	}
	return b[offset:]
}

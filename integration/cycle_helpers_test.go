//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// fleetLab is the whole product on loopback: a real Consul, 3 cyclerd
// servers, 4 agents each supervising the demo app (web-blue-1/2,
// web-green-1/2), and one nginx LB (dynamic mode) and one varnish LB, each
// with its `cyclerd lb`.
type fleetLab struct {
	t       *testing.T
	consul  *harness.Consul
	cc      *consulapi.Client
	c       *cluster
	agents  []*testAgent
	lbs     []*lbNode
	demoBin string
}

// labService is the service block the lab's servers run cycles with
// (harness.DemoServiceBlock, as `make demo` runs it); extra goes inside it.
func labService(extra string) string {
	return fmt.Sprintf("service \"web\" {\n%s  %s\n}\n", harness.DemoServiceBlock, extra)
}

// startFleetLab starts the lab with the service block svc.
func startFleetLab(t *testing.T, svc string) *fleetLab {
	t.Helper()
	l, _ := startChaosLab(t, svc, chaosLabOptions{})
	return l
}

// push builds the demo package of version with extra start arguments and
// pushes it; it returns the file path and the digest.
func (l *fleetLab) pkg(ctx context.Context, version string, args ...string) (string, string) {
	l.t.Helper()
	m := pkgtest.DemoManifest(version)
	m.Start.Command = append(m.Start.Command, args...)
	bin, err := os.ReadFile(l.demoBin)
	if err != nil {
		harness.Fatal(l.t, err)
	}
	path := writePackage(l.t, "web-"+version+".tar.gz", pkgtest.Package(l.t, pkgtest.Manifest(m),
		pkgtest.Entry{Name: pkgtest.DemoBinary, Body: bin, Mode: 0o755}))
	out := l.c.mustCtl(ctx, l.c.nodes[0].APIAddr, "--json", "package", "push", path)
	var p struct {
		Digest  string `json:"digest"`
		Stored  int    `json:"stored"`
		Servers int    `json:"servers"`
		Existed bool   `json:"existed"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		harness.Fatalf(l.t, "push: %v\n%s", err, out)
	}
	// A push answers once a majority of the servers hold the blob, so a
	// leader lost right after it cannot take the package with it.
	if !p.Existed && (p.Servers != 3 || p.Stored < 2) {
		harness.Fatalf(l.t, "push answered with the blob on %d of %d servers, want a majority of 3:\n%s", p.Stored, p.Servers, out)
	}
	return path, p.Digest
}

// deploy runs `cyclerctl deploy` against the given server and returns the
// exit code and the final cycle.
func (l *fleetLab) deploy(ctx context.Context, addr string, args ...string) (int, cycle.Cycle, string) {
	l.t.Helper()
	stdout, stderr, err := l.c.ctl(ctx, addr, append([]string{"--json", "deploy"}, args...)...)
	code := exitCode(err)
	var c cycle.Cycle
	_ = json.Unmarshal([]byte(stdout), &c)
	return code, c, stdout + stderr
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// served asks every LB n times and returns the versions seen per LB.
func (l *fleetLab) served(ctx context.Context, n int) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, b := range l.lbs {
		out[b.ID] = map[string]int{}
		for range n {
			v, err := appVersion(ctx, b.Public)
			if err != nil {
				v = "error: " + err.Error()
			}
			out[b.ID][v]++
		}
	}
	return out
}

// requireServing fails unless every LB answers only version.
func (l *fleetLab) requireServing(ctx context.Context, version string) {
	l.t.Helper()
	for id, seen := range l.served(ctx, 20) {
		if len(seen) != 1 || seen[version] != 20 {
			harness.Fatalf(l.t, "LB %s served %v, want only %s", id, seen, version)
		}
	}
}

// sampler sends a request through every LB every 20 ms and records what it
// saw, so a test can assert that no request failed and no bad version was
// ever served.
type sampler struct {
	mu       sync.Mutex
	total    int
	failures []string
	versions map[string]map[string]int
	stop     context.CancelFunc
	done     sync.WaitGroup
}

func (l *fleetLab) startSampler() *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{versions: map[string]map[string]int{}, stop: cancel}
	for _, b := range l.lbs {
		s.versions[b.ID] = map[string]int{}
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			hc := &http.Client{Timeout: 2 * time.Second}
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				v, err := versionVia(ctx, hc, b.Public)
				s.mu.Lock()
				s.total++
				if err != nil && ctx.Err() == nil {
					s.failures = append(s.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), b.ID, err))
				} else if err == nil {
					s.versions[b.ID][v]++
				}
				s.mu.Unlock()
			}
		}()
	}
	return s
}

func versionVia(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var a appAnswer
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return "", err
	}
	return a.Version, nil
}

// finish stops the sampler and returns what it saw.
func (s *sampler) finish() (total int, failures []string, versions map[string]map[string]int) {
	s.stop()
	s.done.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.failures, s.versions
}

// startAgentWith starts an agent for instance in pool that fetches blobs
// from any of servers.
func startAgentWith(t *testing.T, servers []string, consulAddr, pool, instance string) *testAgent {
	t.Helper()
	ports := freePorts(t, 1)
	dir := filepath.Join(t.TempDir(), "agent-"+instance)
	// The app's port is bound only at the first deploy, so it comes from
	// below the ephemeral range, where nothing else picks ports meanwhile.
	a := &testAgent{Instance: instance, Pool: pool, APIAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]), AppPort: harness.StablePort(t),
		DataDir: filepath.Join(dir, "data")}
	// Registered before the agent, so it runs after the agent's own
	// Cleanup: a test that failed half-way may leave an app the agent no
	// longer supervises.
	t.Cleanup(func() { harness.KillLeftoverApp(t, a.DataDir) })
	a.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{Role: "agent", Name: "agent-" + instance, Dir: dir, APIAddr: a.APIAddr,
		Config: agentConfig(a, servers, consulAddr)})
	return a
}

// hostFailed reports whether instance failed in c.
func hostFailed(c cycle.Cycle, instance string) bool {
	i := slices.IndexFunc(c.Hosts, func(h cycle.Host) bool { return h.Instance == instance })
	return i >= 0 && c.Hosts[i].Failed
}

// mustJSON decodes out into v or fails the test.
func mustJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		harness.Fatalf(t, "decode: %v\n%s", err, out)
	}
}

// maintenanceOf reads whether instance is in Consul maintenance.
func maintenanceOf(t *testing.T, l *fleetLab, instance string) (registered, on bool, reason string) {
	t.Helper()
	entries, _, err := l.cc.Health().Service("web", "", false, nil)
	if err != nil {
		harness.Fatal(t, err)
	}
	for _, e := range entries {
		if e.Service.ID != instance {
			continue
		}
		for _, c := range e.Checks {
			if strings.HasPrefix(c.CheckID, "_service_maintenance:") {
				return true, true, c.Notes
			}
		}
		return true, false, ""
	}
	return false, false, ""
}

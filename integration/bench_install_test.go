//go:build integration

package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// benchInstallCommand is how `make bench-install` runs TestBenchInstall.
const benchInstallCommand = "CYCLER_BENCH=1 go test -tags integration -count=1 -timeout 30m -run '^TestBenchInstall$' -v ./integration/"

// Knobs of TestBenchInstall, from the environment.
const (
	benchAgentsEnv    = "CYCLER_BENCH_AGENTS"     // agents (default 20)
	benchPackageMBEnv = "CYCLER_BENCH_PACKAGE_MB" // random data in the package, MiB (default 50)
)

// installBenchReport is docs/benchmarks-install.json.
type installBenchReport struct {
	Command string       `json:"command"`
	Date    time.Time    `json:"date"`
	Machine benchMachine `json:"machine"`
	Agents  int          `json:"agents"`
	// PackageBytes is the .tar.gz; DataBytes the random file inside it.
	PackageBytes int64 `json:"package_bytes"`
	DataBytes    int64 `json:"data_bytes"`
	// Install is every agent installing at once through the server route.
	Install installRun `json:"install"`
	// Floor is the same blob fetched and unpacked by curl | tar xz, as
	// many pipelines at once, in the same run: the faster of FloorRuns,
	// one before the installs and one after.
	Floor     installRun   `json:"floor"`
	FloorRuns []installRun `json:"floor_runs"`
	// Ratio is Install.WallMS / Floor.WallMS.
	Ratio float64 `json:"ratio"`
	// ServerPeakRSSMB is the server's VmHWM over the installs (reset just
	// before them through /proc/<pid>/clear_refs when the kernel allows).
	ServerPeakRSSMB float64 `json:"server_peak_rss_mb"`
	// AgentPeakRSSMB are the agents' VmHWM over the installs: max and median.
	AgentPeakRSSMaxMB    float64  `json:"agent_peak_rss_max_mb"`
	AgentPeakRSSMedianMB float64  `json:"agent_peak_rss_median_mb"`
	PeakRSSReset         bool     `json:"peak_rss_reset"`
	Notes                []string `json:"notes"`
}

// installRun is one batch of concurrent installs or pipelines.
type installRun struct {
	What   string  `json:"what"`
	WallMS float64 `json:"wall_ms"`
	// Each is one agent's (or pipeline's) own duration.
	EachMinMS float64 `json:"each_min_ms"`
	EachP50MS float64 `json:"each_p50_ms"`
	EachMaxMS float64 `json:"each_max_ms"`
	Failures  int     `json:"failures"`
}

// TestBenchInstall measures installing one large package (the demo app
// plus 50 MiB of random bytes) on 20 real agents at once through the
// server route, against a floor of `curl | tar xz` of the same blob from
// the same server, 20 at once, in the same run. It asserts only that
// every install succeeded; the numbers go to docs/benchmarks-install.md
// and .json. Run it with `make bench-install`.
func TestBenchInstall(t *testing.T) {
	if os.Getenv("CYCLER_BENCH") != "1" {
		t.Skip("benchmark: set CYCLER_BENCH=1 to run it (make bench-install); it rewrites docs/benchmarks-install.{md,json}")
	}
	n := envInt(t, benchAgentsEnv, 20)
	dataMB := envInt(t, benchPackageMBEnv, 50)
	outDir := os.Getenv(benchOutEnv)
	if outDir == "" {
		outDir = filepath.Join(harness.ModuleRoot(t), "docs")
	}
	for _, tool := range []string{"curl", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			harness.Fatalf(t, "the floor needs %s: %v", tool, err)
		}
	}
	e := startHostsEnv(t)
	ctx := testContext(t, 25*time.Minute)
	rep := installBenchReport{Command: benchInstallCommand, Date: time.Now().UTC().Round(time.Second), Machine: machine(), Agents: n}

	data := make([]byte, dataMB<<20)
	if _, err := rand.Read(data); err != nil {
		harness.Fatal(t, err)
	}
	bin, err := os.ReadFile(e.demoBin)
	if err != nil {
		harness.Fatal(t, err)
	}
	m := pkgtest.DemoManifest("bench-1")
	pkg := pkgtest.Package(t, pkgtest.Manifest(m), pkgtest.Entry{Name: pkgtest.DemoBinary, Body: bin, Mode: 0o755},
		pkgtest.Entry{Name: "data/random.bin", Body: data})
	rep.PackageBytes, rep.DataBytes = int64(len(pkg)), int64(len(data))
	digest := e.push(ctx, writePackage(t, "bench.tar.gz", pkg))

	agents := make([]*testAgent, n)
	for i := range agents {
		agents[i] = e.startAgent("blue", fmt.Sprintf("web-blue-%02d", i+1))
	}
	pids := []int{e.server.Pid()}
	for _, a := range agents {
		pids = append(pids, a.Pid())
	}
	url := "http://" + e.server.APIAddr + "/v1/packages/" + digest + "/blob"
	rep.FloorRuns = append(rep.FloorRuns, benchFloor(ctx, t, url, n))
	rep.PeakRSSReset = resetPeakRSS(pids...)

	rep.Install = benchInstalls(ctx, t, e, agents, digest)
	if rep.Install.Failures > 0 {
		harness.Fatalf(t, "%d of %d installs failed", rep.Install.Failures, n)
	}
	for _, a := range agents {
		wantVersion(t, a, "bench-1")
	}
	rep.ServerPeakRSSMB = peakRSSMB(t, e.server.Pid())
	var agentRSS []float64
	for _, a := range agents {
		agentRSS = append(agentRSS, peakRSSMB(t, a.Pid()))
	}
	slices.Sort(agentRSS)
	rep.AgentPeakRSSMaxMB, rep.AgentPeakRSSMedianMB = agentRSS[len(agentRSS)-1], agentRSS[len(agentRSS)/2]

	rep.FloorRuns = append(rep.FloorRuns, benchFloor(ctx, t, url, n))
	rep.Floor = rep.FloorRuns[0]
	for _, f := range rep.FloorRuns {
		if f.Failures > 0 {
			harness.Fatalf(t, "%d of %d curl | tar xz pipelines failed", f.Failures, n)
		}
		if f.WallMS < rep.Floor.WallMS {
			rep.Floor = f
		}
	}
	rep.Ratio = round2(rep.Install.WallMS / rep.Floor.WallMS)
	rep.Notes = []string{
		"One `cyclerd server` serves the blob to every agent; agents, demo apps, the server, Consul and the harness share the machine (see the load average).",
		"An agent's install streams the blob from GET /v1/packages/{digest}/blob, hashing it (sha256) as it unpacks it with pkgfile.Extract (every entry checked) into a staging directory, then renames it into releases/, switches `current`, stops the old app (none here), starts the new one and waits for GET /health, then updates its Consul registration. The install wall time covers all of it, as seen by the caller of POST /v1/hosts/{instance}/install.",
		"The floor is `curl -sf -H 'Authorization: Bearer …' URL | tar xzf - -C DIR`, curl and tar run as two processes joined by a pipe (GNU tar then forks a helper and runs `gzip -d`), as many pipelines at once as agents, from the same server. It runs once before and once after the installs and the faster run counts. It only downloads and unpacks: no hashing, no entry checks, no restart, no health wait.",
		"A ratio below 1 means the agents finished before the floor did. On a machine with few CPUs that is expected: each floor pipeline is four processes (curl, tar, its helper and `gzip -d`) handing every byte through three pipes, so 20 pipelines are 80 processes, while an agent streams the blob through one process.",
		"Peak RSS is VmHWM from /proc/<pid>/status. It is reset through /proc/<pid>/clear_refs just before the installs (peak_rss_reset says whether that worked), so it covers the installs and not the push.",
	}
	t.Logf("install %+v\nfloor %+v\nratio %.2f, server peak RSS %.1f MB, agent peak RSS max %.1f MB median %.1f MB",
		rep.Install, rep.Floor, rep.Ratio, rep.ServerPeakRSSMB, rep.AgentPeakRSSMaxMB, rep.AgentPeakRSSMedianMB)
	writeInstallReport(t, outDir, rep)
}

// benchInstalls installs digest on every agent at once through the server
// route and times it.
func benchInstalls(ctx context.Context, t *testing.T, e *hostsEnv, agents []*testAgent, digest string) installRun {
	t.Helper()
	c, err := client.New(client.Config{Addr: "http://" + e.server.APIAddr, Token: clusterToken, Timeout: -1})
	if err != nil {
		harness.Fatal(t, err)
	}
	each := make([]float64, len(agents))
	var failures int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			var res agent.InstallResult
			err := c.Do(ctx, http.MethodPost, "/v1/hosts/"+a.Instance+"/install", agent.InstallRequest{Digest: digest}, &res)
			mu.Lock()
			defer mu.Unlock()
			each[i] = ms(time.Since(t0))
			if err != nil || res.Outcome != agent.OutcomeInstalled {
				failures++
				harness.Errorf(t, "install on %s: %v; %+v", a.Instance, err, res.Install)
			}
		}()
	}
	wg.Wait()
	return summarize("POST /v1/hosts/{instance}/install on every agent at once", time.Since(start), each, failures)
}

// benchFloor runs n `curl | tar xz` pipelines of url at once and times them.
func benchFloor(ctx context.Context, t *testing.T, url string, n int) installRun {
	t.Helper()
	root := t.TempDir()
	each := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = curlTar(ctx, url, filepath.Join(root, strconv.Itoa(i)))
			each[i] = ms(time.Since(t0))
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	failures := 0
	for i, err := range errs {
		if err != nil {
			failures++
			harness.Errorf(t, "pipeline %d: %v", i, err)
		}
	}
	return summarize("curl | tar xz of the same blob, as many at once", wall, each, failures)
}

// curlTar runs `curl -sf -H 'Authorization: Bearer <fleet token>' url |
// tar xzf - -C dir` as two processes joined by a pipe, no shell.
func curlTar(ctx context.Context, url, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	curl := exec.CommandContext(ctx, "curl", "-sf", "-H", "Authorization: Bearer "+fleetSecret, url)
	untar := exec.CommandContext(ctx, "tar", "xzf", "-", "-C", dir)
	curl.Stdout, untar.Stdin = pw, pr
	var curlErr, tarErr strings.Builder
	curl.Stderr, untar.Stderr = &curlErr, &tarErr
	if err := untar.Start(); err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	if err := curl.Start(); err != nil {
		pr.Close()
		pw.Close()
		_ = untar.Wait()
		return err
	}
	// The children hold their own ends; tar sees EOF once curl exits.
	pr.Close()
	pw.Close()
	cerr, terr := curl.Wait(), untar.Wait()
	if cerr != nil || terr != nil {
		return fmt.Errorf("curl: %v %s; tar: %v %s", cerr, curlErr.String(), terr, tarErr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "random.bin")); err != nil {
		return fmt.Errorf("unpacked tree incomplete: %w", err)
	}
	return nil
}

// summarize builds an installRun from the wall time and each duration.
func summarize(what string, wall time.Duration, each []float64, failures int) installRun {
	s := slices.Clone(each)
	slices.Sort(s)
	return installRun{What: what, WallMS: ms(wall), EachMinMS: round2(s[0]), EachP50MS: round2(percentile(s, 50)),
		EachMaxMS: round2(s[len(s)-1]), Failures: failures}
}

// resetPeakRSS resets VmHWM of pids (writing 5 to clear_refs) and reports
// whether it worked for all of them.
func resetPeakRSS(pids ...int) bool {
	ok := true
	for _, pid := range pids {
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
			ok = false
		}
	}
	return ok
}

// peakRSSMB reads VmHWM of pid in MB (10^6 bytes).
func peakRSSMB(t *testing.T, pid int) float64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		harness.Fatal(t, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				harness.Fatalf(t, "VmHWM of %d: %q", pid, v)
			}
			return round2(kb * 1024 / 1e6)
		}
	}
	harness.Fatalf(t, "no VmHWM in /proc/%d/status", pid)
	return 0
}

// writeInstallReport writes benchmarks-install.json and .md to dir.
func writeInstallReport(t *testing.T, dir string, rep installBenchReport) {
	t.Helper()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		harness.Fatal(t, err)
	}
	var md strings.Builder
	m := rep.Machine
	fmt.Fprintf(&md, `# Install benchmark

Measured by `+"`make bench-install`"+`, which runs:

    %s

on real processes on loopback: one `+"`cyclerd server`"+`, %d `+"`cyclerd agent`"+`s (each with its own data directory,
supervising the demo app) and a Consul agent. The numbers are from one run on %s; %s holds them in machine-readable form.

Machine: %d CPUs (%s), %s, %s, Linux %s; load average at the start: %s.

The package is the demo app plus %.0f MiB of random bytes: %.1f MB as .tar.gz.

| run | wall time | each: min | each: p50 | each: max | failures |
|---|---|---|---|---|---|
| %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %d |
| %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %d |

Install wall time / floor wall time: **%.2f**. The floor's two runs (before and after the installs) took %s.

| memory (VmHWM) | MB |
|---|---|
| server peak RSS during the installs | %.1f |
| agent peak RSS, max of %d | %.1f |
| agent peak RSS, median | %.1f |

Peak RSS reset before the installs: %v.

## Notes

`, rep.Command, rep.Agents, rep.Date.Format("2006-01-02"), "`docs/benchmarks-install.json`",
		m.NProc, m.CPUModel, m.GoVersion, m.OSArch, m.Kernel, m.LoadAvg,
		float64(rep.DataBytes)/(1<<20), float64(rep.PackageBytes)/1e6,
		mdCell(rep.Install.What), rep.Install.WallMS, rep.Install.EachMinMS, rep.Install.EachP50MS, rep.Install.EachMaxMS, rep.Install.Failures,
		mdCell(rep.Floor.What), rep.Floor.WallMS, rep.Floor.EachMinMS, rep.Floor.EachP50MS, rep.Floor.EachMaxMS, rep.Floor.Failures,
		rep.Ratio, floorWalls(rep.FloorRuns), rep.ServerPeakRSSMB, rep.Agents, rep.AgentPeakRSSMaxMB, rep.AgentPeakRSSMedianMB, rep.PeakRSSReset)
	for _, n := range rep.Notes {
		fmt.Fprintf(&md, "- %s\n", n)
	}
	for name, b := range map[string][]byte{"benchmarks-install.json": append(js, '\n'), "benchmarks-install.md": []byte(md.String())} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			harness.Fatal(t, err)
		}
		t.Logf("wrote %s", path)
	}
}

// mdCell escapes the pipes of a Markdown table cell.
func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// floorWalls lists the wall times of the floor runs for the report.
func floorWalls(runs []installRun) string {
	var s []string
	for _, r := range runs {
		s = append(s, fmt.Sprintf("%.0f ms", r.WallMS))
	}
	return strings.Join(s, " and ")
}

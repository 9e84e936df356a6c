//go:build integration && linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
)

// lbReport is docs/benchmarks-lb.json.
type lbReport struct {
	Command  string        `json:"command"`
	Date     time.Time     `json:"date"`
	Machine  benchMachine  `json:"machine"`
	Versions lbToolVersion `json:"versions"`

	FlipsPerRow     int     `json:"flips_per_row"`
	ProbeIntervalMS float64 `json:"probe_interval_ms"`
	// LoadRate is the target of each of the two load clients, over
	// LoadConns keepalive connections each.
	LoadRate   float64 `json:"load_rate_per_client"`
	LoadConns  int     `json:"load_connections_per_client"`
	WrkDelayMS int     `json:"wrk_delay_ms"`
	// WorkerShutdownTimeout is what cyclerd's standalone nginx.conf renders
	// (the nginx rows run with it).
	WorkerShutdownTimeout string   `json:"nginx_worker_shutdown_timeout"`
	Rows                  []lbRow  `json:"rows"`
	Goals                 []lbGoal `json:"goals"`
	Notes                 []string `json:"notes"`
}

// lbToolVersion records what ran.
type lbToolVersion struct {
	Nginx          string `json:"nginx"`
	Varnish        string `json:"varnish"`
	ConsulTemplate string `json:"consul_template"`
	Consul         string `json:"consul"`
	Wrk            string `json:"wrk"`
}

// lbRow is one LB's figures.
type lbRow struct {
	Name    string `json:"name"`
	How     string `json:"how"`
	LoadAvg string `json:"loadavg_at_start"`
	// SamplesMS are the switch latencies: KV write to the first answer
	// from the new pool through the LB.
	SamplesMS []float64 `json:"samples_ms"`
	MinMS     float64   `json:"min_ms"`
	P50MS     float64   `json:"p50_ms"`
	P99MS     float64   `json:"p99_ms"`
	MaxMS     float64   `json:"max_ms"`
	// P50VsCT and P99VsCT divide this row's figure by the consul-template
	// row's from the same run.
	P50VsCT float64 `json:"p50_vs_consul_template"`
	P99VsCT float64 `json:"p99_vs_consul_template"`
	// ProbeErrors are probes (not load) that failed during the switches.
	ProbeErrors int `json:"probe_errors"`
	// Changes counts the changes made to the LB during the flips, from the
	// logs: nginx reloads (consul-template's commands, cyclerd's reload
	// mode), VCL loads (varnish) or stored sets (nginx dynamic).
	Changes int         `json:"lb_changes"`
	Go      lbLoadStats `json:"go_client"`
	Wrk     wrkStats    `json:"wrk"`
	// FlipsWithFailures and MaxFailedInFlip attribute the Go client's
	// failed requests to the flip before them; WarmupFailures came before
	// the first flip. WrkFlipsWithFailures counts the flips whose wrk run
	// (one per flip) had a failed request.
	FlipsWithFailures    int `json:"flips_with_failed_requests"`
	WrkFlipsWithFailures int `json:"wrk_flips_with_failed_requests"`
	MaxFailedInFlip      int `json:"max_failed_requests_in_a_flip"`
	WarmupFailures       int `json:"warmup_failed_requests"`
}

// lbGoal is one goal of the issue, checked against the figures.
type lbGoal struct {
	Goal   string `json:"goal"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// attribute assigns each failed request of the Go client to the last flip
// published before it.
func (r *lbRow) attribute(flipped []time.Time) {
	per := make([]int, len(flipped))
	for _, f := range r.Go.failures {
		i := len(flipped) - 1
		for i >= 0 && flipped[i].After(f) {
			i--
		}
		if i < 0 {
			r.WarmupFailures++
			continue
		}
		per[i]++
	}
	for _, n := range per {
		if n > 0 {
			r.FlipsWithFailures++
		}
		r.MaxFailedInFlip = max(r.MaxFailedInFlip, n)
	}
}

// finish computes the ratios to the consul-template row (the first) and
// checks the goals.
func (rep *lbReport) finish() {
	ct := rep.Rows[0]
	for i := range rep.Rows {
		r := &rep.Rows[i]
		if ct.P50MS > 0 && ct.P99MS > 0 { // JSON has no Inf
			r.P50VsCT, r.P99VsCT = round2(r.P50MS/ct.P50MS), round2(r.P99MS/ct.P99MS)
		}
	}
	for _, r := range rep.Rows[1:] {
		if r.Name == "cyclerd lb, nginx dynamic" || r.Name == "cyclerd lb, varnish" {
			rep.Goals = append(rep.Goals, lbGoal{
				Goal: "0 failed requests: " + r.Name, Met: r.Go.Failed == 0 && r.Wrk.Failed == 0,
				Detail: fmt.Sprintf("Go client %d of %d, wrk %d of %d", r.Go.Failed, r.Go.Requests, r.Wrk.Failed, r.Wrk.Requests),
			})
		}
	}
	for _, r := range rep.Rows[1:] {
		rep.Goals = append(rep.Goals,
			lbGoal{Goal: "switch p99 under consul-template's: " + r.Name, Met: r.P99MS < ct.P99MS,
				Detail: fmt.Sprintf("%.0f ms vs %.0f ms (%.2fx)", r.P99MS, ct.P99MS, r.P99VsCT)},
			lbGoal{Goal: "switch p99 under 300 ms: " + r.Name, Met: r.P99MS < 300, Detail: fmt.Sprintf("%.0f ms", r.P99MS)})
	}
	rep.Notes = []string{
		"Every row runs in the same test run, one after the other, against the same Consul (dev mode), the same four demo apps (2 blue, 2 green) and the same switch sequence. Each row's processes are stopped before the next row starts.",
		"A flip does what the leader does, in the order that keeps every instance of the target pool serving before it becomes live: take the target pool out of maintenance, write cycler/web/state (generation+1, live = target, the old pool listed as hidden) and put the old pool in maintenance with cycler's reason. The clock starts just before the KV write.",
		fmt.Sprintf("A sample ends at the arrival of the first answer from the target pool (X-App-Pool) through the LB. Probe requests start every %.0f ms on fresh connections from the KV write on, each in its own goroutine.", rep.ProbeIntervalMS),
		"Between flips the harness waits until the LB serves only the live pool (the cyclerd lb's ack of the generation, where there is one, and 20 requests on fresh connections), then pauses 0.7-1 s.",
		"Some answers with `Connection: close` come from nginx's limit of requests per keepalive connection (keepalive_requests, 1000), not from switches: all of them in the nginx dynamic row; in the reload rows the rest come from old workers shutting down.",
		fmt.Sprintf("Load: two clients at about %.0f requests/s each (about %.0f/s together), each over %d keepalive connections, neither retrying. "+
			"The Go client sends on a fixed schedule through each whole row and counts every request that got no 2xx answer; before reusing an idle connection it checks "+
			"(a non-blocking peek) whether the LB closed it, and reconnects if so, as browsers and Go's http.Transport do. Those are counted as idle_keepalive_closed, not as failures: no request was sent on them.", rep.LoadRate, 2*rep.LoadRate, rep.LoadConns),
		fmt.Sprintf("wrk (-t1 -c%d) paces each connection with the Lua delay() hook (%d ms between an answer and the next request) and counts non-2xx answers in a response() hook; its socket errors are wrk's own counts. "+
			"wrk counts a keepalive connection that the LB closes while it is idle as a read error, although no request was on it, so in the reload rows its read errors are mostly the idle connections each reload closes (up to %d per reload). "+
			"Its delay() pacing does not survive such a reconnect (in a trial with a reload every second its rate rose from about 510 to 680 requests/s), so the harness runs one wrk per flip, from 0.5 s before the KV write until the LB has settled, rather than one for the whole row.",
			rep.LoadConns, rep.WrkDelayMS, rep.LoadConns),
		"cyclerd lb can apply a new generation in two steps. Its instance watch, like consul-template's, leaves at least 100 ms between blocking queries, so when the state document arrives it may hold a view of the instances from before the second target instance left maintenance: it applies the new pool with the one instance it sees as serving, then the full pool once the instance watch catches up (its logs show both applies, 1 backend then 2). No request fails from it, since the first step already routes to the new pool only (though for a moment to one instance of it), but each step is a change of the LB: in reload mode two reloads per flip, with varnish two VCL compiles. consul-template re-queries the service when the key changes its template's dependency, so it renders the full pool at once. The LB changes per flip column shows how often it happened in this run.",
		"The cyclerd lb rows use the integration tests' lb config: verify_interval 1s (a read-back every second) and debug logs, a little more work than the production defaults (15s, info).",
		"The consul-template row runs consul-template with its defaults (no wait/quiescence, max_stale 2s) and the nginx configuration cyclerd's reload mode writes (nginx.Bootstrap: same nginx.conf, worker_processes auto, worker_shutdown_timeout, upstream keepalive 32); its template renders the same web_cycler upstream from the passing instances tagged cycler-<live> (live from the state document), and its command is `nginx -s reload` as an argv list, without a shell.",
		"p99 uses the nearest rank, so with fewer than 100 samples it is the largest sample.",
		"All processes share the machine, which may be running other work too (see the load averages): compare rows of the same run rather than across runs.",
	}
}

// lbToolVersions asks each tool for its version.
func lbToolVersions(t *testing.T, ctBin, wrkBin string) lbToolVersion {
	t.Helper()
	first := func(bin string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// wrk -v exits 1 after printing its version; the output is what counts.
		out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	varnishd, err := exec.LookPath("varnishd")
	if err != nil {
		varnishd = "/usr/sbin/varnishd"
	}
	return lbToolVersion{
		Nginx: first(harness.NginxBinary(t), "-v"), Varnish: first(varnishd, "-V"),
		ConsulTemplate: first(ctBin, "-version"), Consul: first(harness.ConsulBinary(t), "version"), Wrk: first(wrkBin, "-v"),
	}
}

// ctTemplate renders what cyclerd's reload mode writes to web.upstream.conf:
// the web_cycler upstream of the passing instances of the live pool, and
// the map its admin location reads (empty: nothing reads it here).
const ctTemplate = `# Rendered by consul-template for TestBenchLBSwitch.
{{- with $state := key "cycler/web/state" | parseJSON }}
upstream web_cycler {
{{- range service (printf "cycler-%s.web" $state.live) }}
    server {{ .Address }}:{{ .Port }};  # id {{ .ID }}
{{- end }}
    keepalive 32;
}
{{- end }}

map $host $cycler_set_web {
    default "";
}
`

// startCTLB runs the peer: nginx with the configuration cyclerd's reload
// mode writes, and consul-template rendering its upstream include and
// reloading nginx after each render.
func startCTLB(t *testing.T, e *lbEnv, bin string) lbTarget {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "nginx")
	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	o := nginx.Options{
		Mode: nginx.ModeReload, Binary: harness.NginxBinary(t), Prefix: prefix, ConfigDir: filepath.Join(prefix, "cycler"),
		MainConfig: filepath.Join(prefix, "nginx.conf"), Standalone: true, AdminAddr: admin,
		Services: []nginx.Service{{Name: "web", Listen: listen}},
	}
	if os.Geteuid() == 0 {
		o.User = "root" // workers must read the prefix in the test's 0700 temp dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := nginx.Bootstrap(ctx, o); err != nil {
		harness.Fatal(t, err)
	}
	errorLog := filepath.Join(prefix, "logs", "error.log")
	ngx := harness.StartProcess(t, harness.ProcessConfig{
		Name: "nginx-ct", Path: o.Binary, Args: nginx.ForegroundArgs(o), Dir: prefix, ExtraLogs: []string{errorLog},
		Ready: nginxAdminUp(admin),
	})

	dir := t.TempDir()
	src, cfgPath := filepath.Join(dir, "web.upstream.ctmpl"), filepath.Join(dir, "consul-template.hcl")
	dest := filepath.Join(o.ConfigDir, "web.upstream.conf")
	reload := []string{o.Binary, "-p", prefix + "/", "-c", o.MainConfig, "-e", errorLog, "-s", "reload"}
	quoted := make([]string, len(reload))
	for i, a := range reload {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	cfg := fmt.Sprintf(`consul {
  address = %q
}
log_level = "info"
template {
  source      = %q
  destination = %q
  # A list of several elements runs directly, without a shell.
  exec {
    command = [%s]
    timeout = "30s"
  }
}
`, e.consul.HTTPAddr, src, dest, strings.Join(quoted, ", "))
	for path, data := range map[string]string{src: ctTemplate, cfgPath: cfg} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			harness.Fatal(t, err)
		}
	}
	ct := harness.StartProcess(t, harness.ProcessConfig{
		Name: "consul-template", Path: bin, Args: []string{"-config", cfgPath}, Dir: dir,
		Ready: func(context.Context) error {
			if b, err := os.ReadFile(dest); err != nil || !strings.Contains(string(b), "    server 127.0.0.1:") {
				return fmt.Errorf("%s not rendered yet (%v)", dest, err)
			}
			return nil
		},
	})
	return lbTarget{url: "http://" + listen, log: ct.LogPath(), changeMarks: []string{"(runner) executing command"}, stop: func() {
		_ = ct.Stop()
		_ = ngx.Stop()
	}}
}

// writeLBReport writes benchmarks-lb.json and benchmarks-lb.md to dir.
func writeLBReport(t *testing.T, dir string, rep lbReport) {
	t.Helper()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		harness.Fatal(t, err)
	}
	md := renderLBMarkdown(rep)
	for name, data := range map[string][]byte{"benchmarks-lb.json": append(js, '\n'), "benchmarks-lb.md": []byte(md)} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			harness.Fatal(t, err)
		}
		t.Logf("wrote %s", path)
	}
}

// renderLBMarkdown renders the report for people.
func renderLBMarkdown(rep lbReport) string {
	var b strings.Builder
	m, v := rep.Machine, rep.Versions
	fmt.Fprintf(&b, "# LB switch benchmarks\n\nMeasured by `make bench-lb`, which runs:\n\n    %s\n\n", rep.Command)
	fmt.Fprintf(&b, "It installs the tools first with `scripts/install-bench-tools.sh`. The numbers are from one run on %s;\n"+
		"`docs/benchmarks-lb.json` holds them in machine-readable form, with every sample.\n\n", rep.Date.Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s, %s, Linux %s; load average at the start: %s.\n\n", m.NProc, m.CPUModel, m.GoVersion, m.OSArch, m.Kernel, m.LoadAvg)
	fmt.Fprintf(&b, "Versions: %s; %s; %s; %s; %s.\n\n", v.Nginx, v.Varnish, v.ConsulTemplate, v.Consul, v.Wrk)

	fmt.Fprintf(&b, "## Switch latency\n\nFrom the leader's KV write of `cycler/web/state` (a new generation, the other pool live) to the first\n"+
		"answer through the LB from the new pool. %d flips per LB, all in the same run; probes every %.0f ms on fresh connections.\n\n", rep.FlipsPerRow, rep.ProbeIntervalMS)
	b.WriteString("| LB | how it switches | min | p50 | p99 | max | p50 vs consul-template | p99 vs consul-template | LB changes per flip |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, "| %s | %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.2fx | %.2fx | %.2f |\n",
			r.Name, r.How, r.MinMS, r.P50MS, r.P99MS, r.MaxMS, r.P50VsCT, r.P99VsCT, float64(r.Changes)/float64(len(r.SamplesMS)))
	}
	b.WriteString("\nLB changes per flip counts, from the logs, the reloads (consul-template's `nginx -s reload`, cyclerd's reload mode), VCL loads\n" +
		"(varnish) or stored sets (nginx dynamic) per flip. More than 1 means the LB went through an intermediate set: see the notes.\n")

	fmt.Fprintf(&b, "\n## Failed requests under load\n\nTwo clients, at about %.0f requests/s each over %d keepalive connections, neither retrying. A failed\n"+
		"request is a non-2xx answer or a socket error. The Go client runs through each whole row (%d flips and a 2 s warm-up);\n"+
		"wrk runs once per flip, from 0.5 s before the KV write until the LB has settled (see the notes for why).\n\n", rep.LoadRate, rep.LoadConns, rep.FlipsPerRow)
	b.WriteString("Go client (open loop, fixed schedule):\n\n| LB | failed / requests | req/s | non-2xx | socket errors: connect/write/read/timeout | flips with a failure | idle keepalive connections the LB closed | answers with `Connection: close` |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Rows {
		g := r.Go
		fmt.Fprintf(&b, "| %s | %d / %d | %.0f | %d | %d/%d/%d/%d | %d of %d | %d | %d |\n",
			r.Name, g.Failed, g.Requests, g.Rate, g.Non2xx, g.Connect, g.Write, g.Read, g.Timeout, r.FlipsWithFailures, len(r.SamplesMS), g.IdleClosed, g.ClosedAfter)
	}
	fmt.Fprintf(&b, "\nwrk (`-t1 -c%d`, paced by `delay()`):\n\n| LB | failed / requests | req/s | non-2xx | socket errors: connect/read/write/timeout | flips with a failure |\n|---|---|---|---|---|---|\n", rep.LoadConns)
	for _, r := range rep.Rows {
		w := r.Wrk
		fmt.Fprintf(&b, "| %s | %d / %d | %.0f | %d | %d/%d/%d/%d | %d of %d |\n",
			r.Name, w.Failed, w.Requests, w.Rate, w.Non2xx, w.Connect, w.Read, w.Write, w.Timeout, r.WrkFlipsWithFailures, len(r.SamplesMS))
	}
	b.WriteString("\nLatency of the load requests themselves (Go client, successful requests):\n\n| LB | p50 | p99 | max |\n|---|---|---|---|\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, "| %s | %.1f ms | %.1f ms | %.1f ms |\n", r.Name, r.Go.LatencyP50MS, r.Go.LatencyP99MS, r.Go.LatencyMaxMS)
	}

	b.WriteString("\n## Goals of the issue\n\n| goal | met | measured |\n|---|---|---|\n")
	for _, g := range rep.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, met, g.Detail)
	}

	b.WriteString("\n## nginx reloads: worker_shutdown_timeout and what a reload costs\n\n")
	fmt.Fprintf(&b, "`nginx -s reload` makes the master start new workers with the new configuration and ask the old ones to shut down\n"+
		"gracefully: they stop accepting connections, close their idle keepalive connections, finish the requests in flight\n"+
		"(answering them with `Connection: close`) and exit when their last connection is gone. `worker_shutdown_timeout`\n"+
		"bounds that drain: when it passes, nginx closes whatever connections an old worker still holds (a long download, a\n"+
		"websocket, a client that never sends its next request), so an old worker, which still routes to the old pool, cannot\n"+
		"live for hours. cyclerd's standalone nginx.conf renders `worker_shutdown_timeout %s;` (`nginx.DefaultWorkerShutdownTimeout`);\n"+
		"with your own nginx.conf, set it yourself. It does not make a reload free: idle keepalive connections are closed at\n"+
		"once whatever its value, and a request that a client writes while its connection is being closed fails.\n\n", rep.WorkerShutdownTimeout)
	b.WriteString("The measured cost of reloads is in the two reload rows above, against nginx dynamic mode, which never reloads:\n\n")
	for _, r := range rep.Rows {
		if !strings.Contains(r.Name, "reload") {
			continue
		}
		fmt.Fprintf(&b, "- %s: over %d reloads the Go client lost %d requests (%d flips had a failure, at most %d in one) and found %d idle\n"+
			"  keepalive connections closed by a reload; wrk counted %d failed requests (%d socket errors, %d non-2xx) of %d, in %d of the %d flips.\n",
			r.Name, len(r.SamplesMS), r.Go.Failed, r.FlipsWithFailures, r.MaxFailedInFlip, r.Go.IdleClosed, r.Wrk.Failed,
			r.Wrk.Connect+r.Wrk.Read+r.Wrk.Write+r.Wrk.Timeout, r.Wrk.Non2xx, r.Wrk.Requests, r.WrkFlipsWithFailures, len(r.SamplesMS))
	}
	for _, r := range rep.Rows {
		if r.Name == "cyclerd lb, nginx dynamic" {
			fmt.Fprintf(&b, "- %s, for comparison: the Go client lost %d requests and found %d idle connections closed; wrk counted %d failed requests of %d.\n",
				r.Name, r.Go.Failed, r.Go.IdleClosed, r.Wrk.Failed, r.Wrk.Requests)
		}
	}

	b.WriteString("\n## Samples (ms)\n\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, "- %s (load average at its start: %s): %s\n", r.Name, r.LoadAvg, joinFloats(r.SamplesMS))
	}
	b.WriteString("\n## Notes\n\n")
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

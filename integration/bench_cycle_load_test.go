//go:build integration && linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
)

// cycleWrkScript is wrkScript plus what TestBenchCycle reports: the non-2xx
// answers by status and wrk's latency histogram (microseconds, count), so
// the runs of one phase merge into exact percentiles.
const cycleWrkScript = `-- Written by TestBenchCycle.
local pause = tonumber(os.getenv("CYCLER_WRK_DELAY_MS"))
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  statuses = {}
end

function delay()
  return pause
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local k = tostring(status)
    statuses[k] = (statuses[k] or 0) + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  local by = {}
  for _, t in ipairs(threads) do
    n = n + t:get("non2xx")
    for k, v in pairs(t:get("statuses")) do
      by[k] = (by[k] or 0) + v
    end
  end
  local st = {}
  for k, v in pairs(by) do
    st[#st + 1] = string.format('"%s":%d', k, v)
  end
  local hist = {}
  for i = 1, #latency do
    local v, c = latency(i)
    hist[#hist + 1] = string.format("[%d,%d]", v, c)
  end
  local e = summary.errors
  io.write(string.format('CYCLER_WRK {"requests":%d,"duration_us":%d,"non2xx":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"non2xx_by_status":{%s},"latency_us":[%s]}\n',
    summary.requests, summary.duration, n, e.status, e.connect, e.read, e.write, e.timeout, table.concat(st, ","), table.concat(hist, ",")))
end
`

// latencyHist counts requests by latency in microseconds; merging the
// histograms of several runs gives exact percentiles over all of them.
type latencyHist map[int64]int64

func (h latencyHist) add(o latencyHist) {
	for v, c := range o {
		h[v] += c
	}
}

// percentileMS is the nearest-rank percentile p, in milliseconds.
func (h latencyHist) percentileMS(p float64) float64 {
	var total int64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := int64(p / 100 * float64(total))
	if float64(rank) < p/100*float64(total) {
		rank++
	}
	rank = max(rank, 1)
	var seen int64
	for _, v := range slices.Sorted(maps.Keys(h)) {
		seen += h[v]
		if seen >= rank {
			return round2(float64(v) / 1000)
		}
	}
	return 0
}

// cycleWrkResult is one wrk run of TestBenchCycle: the counts wrk and the
// script report, the non-2xx answers by status and the latency histogram.
type cycleWrkResult struct {
	wrkStats
	byStatus map[string]int
	hist     latencyHist
}

// stopCycleWrk stops a wrk started with cycleWrkScript and parses its line.
func stopCycleWrk(t *testing.T, w *wrkRun) cycleWrkResult {
	t.Helper()
	st := w.stop(t)
	_, line, _ := strings.Cut(w.out.String(), "CYCLER_WRK ")
	line, _, _ = strings.Cut(line, "\n")
	var r struct {
		ByStatus map[string]int `json:"non2xx_by_status"`
		Latency  [][2]int64     `json:"latency_us"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		harness.Fatalf(t, "wrk report line: %v\n%s", err, line)
	}
	res := cycleWrkResult{wrkStats: st, byStatus: r.ByStatus, hist: latencyHist{}}
	for _, vc := range r.Latency {
		res.hist[vc[0]] += vc[1]
	}
	return res
}

// heyStats is what hey reports for one run.
type heyStats struct {
	Requests int     `json:"requests"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate_per_sec"`
	// ByStatus counts the answers by HTTP status; Errors the requests that
	// got no answer, by hey's error text.
	ByStatus map[string]int `json:"by_status"`
	Errors   map[string]int `json:"errors,omitempty"`
	Non2xx   int            `json:"non_2xx"`
	Failed   int            `json:"failed"`
	// P50MS and P99MS are hey's own percentiles of the answered requests
	// (it prints them to 0.1 ms).
	P50MS float64 `json:"latency_p50_ms"`
	P99MS float64 `json:"latency_p99_ms"`
}

// heyRun is a running hey.
type heyRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
	err    error
}

// startHey runs hey against url with conns workers of qps requests/s each
// (-q), keepalive connections, a 5 s timeout and no end of its own: stop
// interrupts it, and hey prints its summary on SIGINT.
func startHey(t *testing.T, bin, url string, conns int, qps float64) *heyRun {
	t.Helper()
	h := &heyRun{exited: make(chan struct{})}
	h.cmd = exec.Command(bin, "-z", "3600s", "-c", strconv.Itoa(conns), "-q", strconv.FormatFloat(qps, 'f', -1, 64), "-t", "5", url)
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	if err := h.cmd.Start(); err != nil {
		harness.Fatalf(t, "start hey: %v", err)
	}
	go func() {
		h.err = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-h.exited:
		default:
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	})
	return h
}

var (
	heyTotalRE   = regexp.MustCompile(`Total:\s+([\d.]+) secs`)
	heyPctRE     = regexp.MustCompile(`(\d+)%+ in ([\d.]+) secs`)
	heyStatusRE  = regexp.MustCompile(`\[(\d{3})\]\s+(\d+) responses`)
	heyErrorLine = regexp.MustCompile(`^\s*\[(\d+)\]\s+(.*)$`)
)

// stop interrupts hey and parses its summary.
func (h *heyRun) stop(t *testing.T) heyStats {
	t.Helper()
	if err := h.cmd.Process.Signal(os.Interrupt); err != nil {
		<-h.exited
		harness.Fatalf(t, "interrupt hey: %v (hey: %v)\n%s", err, h.err, h.out.String())
	}
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		harness.Fatalf(t, "hey did not stop 30s after SIGINT:\n%s", h.out.String())
	}
	out := h.out.String()
	m := heyTotalRE.FindStringSubmatch(out)
	if h.err != nil || m == nil {
		harness.Fatalf(t, "hey: %v; no summary:\n%s", h.err, out)
	}
	s := heyStats{ByStatus: map[string]int{}, Errors: map[string]int{}}
	s.Seconds, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range heyPctRE.FindAllStringSubmatch(out, -1) {
		secs, _ := strconv.ParseFloat(m[2], 64)
		switch m[1] {
		case "50":
			s.P50MS = round2(secs * 1000)
		case "99":
			s.P99MS = round2(secs * 1000)
		}
	}
	status, errs, _ := strings.Cut(out, "Status code distribution:")
	status, _, _ = strings.Cut(errs, "Error distribution:")
	for _, m := range heyStatusRE.FindAllStringSubmatch(status, -1) {
		n, _ := strconv.Atoi(m[2])
		s.ByStatus[m[1]] += n
		s.Requests += n
		if !strings.HasPrefix(m[1], "2") {
			s.Non2xx += n
			s.Failed += n
		}
	}
	if _, errs, ok := strings.Cut(out, "Error distribution:"); ok {
		for _, line := range strings.Split(errs, "\n") {
			if m := heyErrorLine.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				s.Errors[m[2]] += n
				s.Requests += n
				s.Failed += n
			}
		}
	}
	if s.Seconds > 0 {
		s.Rate = round2(float64(s.Requests) / s.Seconds)
	}
	return s
}

// versionSample is one request of the version recorder.
type versionSample struct {
	At      time.Time
	Version string // "" when the request failed
	Err     string
}

// versionRecorder sends GET / through each LB every cycleSampleEvery on a
// keepalive connection and records the version of each answer, for the
// chart and the per-deploy version counts.
type versionRecorder struct {
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex // guards samples
	samples map[string][]versionSample
}

func startVersionRecorder(ctx context.Context, lbs []cycleLB) *versionRecorder {
	ctx, cancel := context.WithCancel(ctx)
	r := &versionRecorder{stop: cancel, samples: map[string][]versionSample{}}
	for _, lb := range lbs {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			tick := time.NewTicker(cycleSampleEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				at := time.Now()
				v, err := versionVia(ctx, hc, lb.URL)
				if ctx.Err() != nil {
					return
				}
				s := versionSample{At: at, Version: v}
				if err != nil {
					s.Version, s.Err = "", err.Error()
				}
				r.mu.Lock()
				r.samples[lb.Name] = append(r.samples[lb.Name], s)
				r.mu.Unlock()
			}
		}()
	}
	return r
}

// window returns lb's samples sent in [from, to).
func (r *versionRecorder) window(lb string, from, to time.Time) []versionSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []versionSample
	for _, s := range r.samples[lb] {
		if !s.At.Before(from) && s.At.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// finish stops the recorder.
func (r *versionRecorder) finish() {
	r.stop()
	r.wg.Wait()
}

// sampleCounts summarises samples: requests, failures (with the first few
// errors), answers per version, and how often consecutive answers changed
// version (1 for a clean cut-over from one version to the next).
type sampleCounts struct {
	Requests       int            `json:"requests"`
	Failed         int            `json:"failed"`
	FirstErrors    []string       `json:"first_errors,omitempty"`
	Versions       map[string]int `json:"versions"`
	VersionChanges int            `json:"version_changes"`
}

func countSamples(samples []versionSample) sampleCounts {
	c := sampleCounts{Versions: map[string]int{}}
	last := ""
	for _, s := range samples {
		c.Requests++
		if s.Err != "" {
			c.Failed++
			if len(c.FirstErrors) < 3 {
				c.FirstErrors = append(c.FirstErrors, fmt.Sprintf("%s: %s", s.At.Format("15:04:05.000"), s.Err))
			}
			continue
		}
		c.Versions[s.Version]++
		if last != "" && s.Version != last {
			c.VersionChanges++
		}
		last = s.Version
	}
	return c
}

func (c *sampleCounts) add(o sampleCounts) {
	c.Requests += o.Requests
	c.Failed += o.Failed
	if len(c.FirstErrors) < 3 {
		c.FirstErrors = append(c.FirstErrors, o.FirstErrors[:min(len(o.FirstErrors), 3-len(c.FirstErrors))]...)
	}
	if c.Versions == nil {
		c.Versions = map[string]int{}
	}
	for v, n := range o.Versions {
		c.Versions[v] += n
	}
	c.VersionChanges += o.VersionChanges
}

//go:build integration

package varnish_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/lbdrivers/varnish"
	"github.com/cyclerhq/cycler/pool"
)

func stepCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startApps(t *testing.T, p pool.Pool, ids ...string) []lbdrivers.Backend {
	t.Helper()
	var out []lbdrivers.Backend
	for _, id := range ids {
		a := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v-" + string(p), Instance: id, Pool: p})
		out = append(out, lbdrivers.Backend{ID: id, Address: a.Host, Port: a.Port})
	}
	return out
}

var freshClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := freshClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-App-Instance"), string(body)
}

// requireOnly sends n requests and fails unless each was answered 200 by a
// backend in want and each backend in want answered. Varnish's round-robin
// director is global, so 2*len(want) requests see every backend.
func requireOnly(t *testing.T, url string, n int, want []lbdrivers.Backend) {
	t.Helper()
	var ids []string
	for _, b := range want {
		ids = append(ids, b.ID)
	}
	seen := map[string]int{}
	for range n {
		status, id, _ := get(t, url)
		if status != http.StatusOK || !slices.Contains(ids, id) {
			t.Fatalf("GET %s: status %d from %q, want 200 from one of %v (so far %v)", url, status, id, ids, seen)
		}
		seen[id]++
	}
	for _, id := range ids {
		if seen[id] == 0 {
			t.Fatalf("backend %q never answered in %d requests (all: %v)", id, n, seen)
		}
	}
}

func requireApplied(t *testing.T, d *varnish.Driver, gen uint64, want []lbdrivers.Backend) {
	t.Helper()
	g, got, err := d.Applied(stepCtx(t))
	if err != nil {
		t.Fatalf("Applied: %v", err)
	}
	if g != gen || !slices.Equal(got, lbdrivers.Sorted(want)) {
		t.Fatalf("Applied = %d %v, want %d %v", g, got, gen, lbdrivers.Sorted(want))
	}
}

// cyclerVCLs lists the loaded cycler VCLs (not those discarded and still
// cooling down) and the active VCL's name.
func cyclerVCLs(t *testing.T, v *harness.Varnish) (names []string, active string) {
	t.Helper()
	out, err := v.Adm(stepCtx(t), "vcl.list")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		name := f[len(f)-1]
		if f[0] == "active" {
			active = name
		}
		if strings.HasPrefix(name, "cycler_") && f[0] != "discarded" {
			names = append(names, name)
		}
	}
	return names, active
}

func TestVarnishSwitch(t *testing.T) {
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	v := harness.StartVarnish(t, harness.VarnishOptions{})
	dir := t.TempDir()
	// Pass every request, so each answer comes from a backend, not the cache.
	site := filepath.Join(dir, "site.vcl")
	if err := os.WriteFile(site, []byte("sub vcl_recv {\n    return (pass);\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	opts := varnish.Options{
		AdminAddr:  v.AdminAddr,
		SecretFile: v.SecretFile,
		VCLDir:     filepath.Join(dir, "vcl"),
		KeepVCLs:   2,
		Include:    site,
		Logger:     zap.New(core),
	}
	d, err := varnish.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	url := v.URL() + "/"

	requireApplied(t, d, 0, nil) // the boot VCL is not cyclerd's

	if err := d.Apply(stepCtx(t), 1, blue); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 8, blue)
	requireApplied(t, d, 1, blue)
	if status, _, body := get(t, v.URL()+varnish.GenerationPath); status != 200 || body != "1" {
		t.Fatalf("generation path: %d %q, want 200 \"1\"", status, body)
	}

	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 8, green)
	requireApplied(t, d, 2, green)

	// Idempotent: no new VCL for the same generation and set.
	before, active := cyclerVCLs(t, v)
	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	after, activeAfter := cyclerVCLs(t, v)
	if !slices.Equal(before, after) || active != activeAfter {
		t.Fatalf("re-applying the same set changed the VCLs: %v (%s) -> %v (%s)", before, active, after, activeAfter)
	}
	entries := logs.FilterMessage("backend set applied").All()
	if changed := entries[len(entries)-1].ContextMap()["changed"]; changed != false {
		t.Fatalf("idempotent Apply logged changed=%v", changed)
	}

	// Flips between the pools already loaded compile nothing: the VCL of
	// generation 2 holds blue and green, admin health picks the live pool.
	for gen := uint64(3); gen <= 5; gen++ {
		set := blue
		if gen%2 == 0 {
			set = green
		}
		if err := d.Apply(stepCtx(t), gen, set); err != nil {
			t.Fatal(err)
		}
		requireOnly(t, url, 4, set)
		requireApplied(t, d, gen, set)
		if got, activeNow := cyclerVCLs(t, v); !slices.Equal(got, after) || activeNow != activeAfter {
			t.Fatalf("flip to generation %d loaded a VCL: %v (%s), want still %v (%s)", gen, got, activeNow, after, activeAfter)
		}
		if last := logs.FilterMessage("backend set applied").All(); last[len(last)-1].ContextMap()["switch"] != "flip" {
			t.Fatalf("generation %d: logged %v, want switch=flip", gen, last[len(last)-1].ContextMap())
		}
	}
	if status, _, body := get(t, v.URL()+varnish.GenerationPath); status != 200 || body != "5" {
		t.Fatalf("generation path after flips: %d %q, want 200 \"5\"", status, body)
	}
	requireOnly(t, url, 8, blue)
	requireApplied(t, d, 5, blue)

	// Refusals keep the active VCL and its traffic.
	if err := d.Apply(stepCtx(t), 4, green); !errors.Is(err, varnish.ErrStaleGeneration) {
		t.Fatalf("stale Apply: err %v, want ErrStaleGeneration", err)
	}
	if err := d.Apply(stepCtx(t), 6, nil); !errors.Is(err, varnish.ErrEmptySet) {
		t.Fatalf("empty Apply: err %v, want ErrEmptySet", err)
	}
	broken := filepath.Join(dir, "broken.vcl")
	if err := os.WriteFile(broken, []byte("sub vcl_recv {\n    this is not VCL;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := opts
	bad.Include = broken
	db, err := varnish.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Apply(stepCtx(t), 6, green)
	var cerr *varnish.CLIError
	if !errors.As(err, &cerr) || !strings.Contains(cerr.Msg, "VCC-compiler") {
		t.Fatalf("Apply of a VCL that does not compile: err %v, want a CLIError with the compiler's message", err)
	}
	wrong := opts
	wrong.SecretFile = filepath.Join(dir, "wrong-secret")
	if err := os.WriteFile(wrong.SecretFile, []byte("not the secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dw, err := varnish.New(wrong)
	if err != nil {
		t.Fatal(err)
	}
	if err := dw.Apply(stepCtx(t), 6, green); !errors.Is(err, varnish.ErrUnauthorized) {
		t.Fatalf("Apply with a wrong secret: err %v, want ErrUnauthorized", err)
	}
	requireOnly(t, url, 8, blue)
	requireApplied(t, d, 5, blue)
	if _, active := cyclerVCLs(t, v); active != "cycler_2_1" {
		t.Fatalf("active VCL %s after refused applies, want cycler_2_1", active)
	}

	// A set that shrinks within a generation is a flip too.
	if err := d.Apply(stepCtx(t), 5, blue[:1]); err != nil {
		t.Fatal(err)
	}
	if _, active := cyclerVCLs(t, v); active != "cycler_2_1" {
		t.Fatalf("active VCL %s, want cycler_2_1", active)
	}
	requireOnly(t, url, 4, blue[:1])
	requireApplied(t, d, 5, blue[:1])
	if status, _, body := get(t, v.URL()+varnish.GenerationPath); status != 200 || body != strconv.Itoa(5) {
		t.Fatalf("generation path: %d %q, want 200 \"5\"", status, body)
	}

	// A backend the VCL does not hold needs a new VCL: the new set and the
	// live one before it, so that the next flip back compiles nothing. At
	// most KeepVCLs cycler VCLs stay loaded, with their files.
	blue3 := startApps(t, pool.Blue, "web-blue-3")
	if err := d.Apply(stepCtx(t), 6, blue3); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 4, blue3)
	requireApplied(t, d, 6, blue3)
	names, active := cyclerVCLs(t, v)
	if len(names) > opts.KeepVCLs || active != "cycler_6_1" {
		t.Fatalf("after a new backend: cycler VCLs %v, active %s; want at most %d, active cycler_6_1 (warnings: %v)", names, active, opts.KeepVCLs, logs.FilterMessage("discard old VCLs").All())
	}
	files, _ := filepath.Glob(filepath.Join(opts.VCLDir, "cycler_*.vcl"))
	if len(files) != len(names) {
		t.Fatalf("VCL files %v do not match the loaded VCLs %v", files, names)
	}
	if err := d.Apply(stepCtx(t), 7, blue[:1]); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 4, blue[:1])
	requireApplied(t, d, 7, blue[:1])
	if _, active := cyclerVCLs(t, v); active != "cycler_6_1" {
		t.Fatalf("flip back to the previous set: active VCL %s, want cycler_6_1", active)
	}

	// A cycler VCL not rendered by cyclerd (edited by hand) cannot be read
	// back; Apply still refuses a generation older than its name's and
	// replaces it with a load.
	manual := filepath.Join(dir, "manual.vcl")
	src := "vcl 4.1;\nbackend x { .host = \"" + blue[0].Address + "\"; .port = \"" + strconv.Itoa(blue[0].Port) + "\"; }\n"
	if err := os.WriteFile(manual, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"vcl.load", "cycler_9_1", manual}, {"vcl.use", "cycler_9_1"}} {
		if out, err := v.Adm(stepCtx(t), cmd...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	if _, _, err := d.Applied(stepCtx(t)); !errors.Is(err, varnish.ErrReadBack) {
		t.Fatalf("Applied of a hand-made VCL: err %v, want ErrReadBack", err)
	}
	if err := d.Apply(stepCtx(t), 8, green); !errors.Is(err, varnish.ErrStaleGeneration) {
		t.Fatalf("Apply(8) under cycler_9_1: err %v, want ErrStaleGeneration", err)
	}
	if err := d.Apply(stepCtx(t), 10, green); err != nil {
		t.Fatal(err)
	}
	requireOnly(t, url, 8, green)
	requireApplied(t, d, 10, green)
}

// cachedGet GETs url and returns the answering instance and whether
// varnish answered from its cache (X-Varnish carries two transaction ids on
// a hit).
func cachedGet(t *testing.T, url string) (string, bool) {
	t.Helper()
	resp, err := freshClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	return resp.Header.Get("X-App-Instance"), len(strings.Fields(resp.Header.Get("X-Varnish"))) == 2
}

// TestVarnishBanOnSwitch caches the app's answers for an hour, switches
// pools, and checks what the next request gets: the new pool with
// BanOnSwitch on (the default), the cached answer of the old pool with it
// off. The second case shows the cache really holds old-pool objects, so
// the first one proves the ban and the per-generation hash at work.
func TestVarnishBanOnSwitch(t *testing.T) {
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	caching := filepath.Join(t.TempDir(), "cache.vcl")
	if err := os.WriteFile(caching, []byte("sub vcl_backend_response {\n    set beresp.ttl = 1h;\n    return (deliver);\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	on, off := true, false
	tests := []struct {
		name    string
		give    *bool
		wantNew bool // the first answer after the switch comes from the new pool
	}{
		{name: "default bans", give: nil, wantNew: true},
		{name: "on", give: &on, wantNew: true},
		{name: "off keeps the cache", give: &off, wantNew: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := harness.StartVarnish(t, harness.VarnishOptions{})
			d, err := varnish.New(varnish.Options{
				AdminAddr: v.AdminAddr, SecretFile: v.SecretFile, VCLDir: filepath.Join(t.TempDir(), "vcl"),
				Include: caching, BanOnSwitch: tt.give,
			})
			if err != nil {
				t.Fatal(err)
			}
			url := v.URL() + "/"
			if err := d.Apply(stepCtx(t), 1, blue); err != nil {
				t.Fatal(err)
			}
			first, _ := cachedGet(t, url)
			again, hit := cachedGet(t, url)
			if !hit || again != first || !strings.HasPrefix(first, "web-blue-") {
				t.Fatalf("before the switch: %q then %q (hit %v); want one blue answer, then the same from the cache", first, again, hit)
			}

			if err := d.Apply(stepCtx(t), 2, green); err != nil {
				t.Fatal(err)
			}
			got, hit := cachedGet(t, url)
			bans, err := v.Adm(stepCtx(t), "ban.list")
			if err != nil {
				t.Fatal(err)
			}
			banned := strings.Contains(bans, "obj.status != 0")
			if tt.wantNew && (hit || !strings.HasPrefix(got, "web-green-") || !banned) {
				t.Fatalf("after the switch to green: %q (hit %v), ban issued %v; want a green answer from the backend and a ban\n%s", got, hit, banned, bans)
			}
			if !tt.wantNew && (!hit || got != first || banned) {
				t.Fatalf("after the switch with ban_on_switch off: %q (hit %v), ban issued %v; want the cached %q and no ban", got, hit, banned, first)
			}

			// Back to blue: a flip by admin health, no new VCL. The green
			// object cached under generation 2 must not be served.
			before, _ := cyclerVCLs(t, v)
			if err := d.Apply(stepCtx(t), 3, blue); err != nil {
				t.Fatal(err)
			}
			if after, _ := cyclerVCLs(t, v); !slices.Equal(before, after) {
				t.Fatalf("flip back loaded a VCL: %v -> %v", before, after)
			}
			got, hit = cachedGet(t, url)
			if tt.wantNew && (hit || !strings.HasPrefix(got, "web-blue-")) {
				t.Fatalf("after the flip back to blue: %q (hit %v); want a blue answer from the backend", got, hit)
			}
			if !tt.wantNew && (!hit || got != first) {
				t.Fatalf("after the flip back with ban_on_switch off: %q (hit %v); want the cached %q", got, hit, first)
			}
		})
	}
}

// TestVarnishFlipsNeverEmpty sends requests without pause while the pools
// flip back and forth by admin health: every answer must be a 200 from a
// backend (live first, hidden after, so there is always a healthy one), and
// no flip may load a VCL.
func TestVarnishFlipsNeverEmpty(t *testing.T) {
	blue := startApps(t, pool.Blue, "web-blue-1", "web-blue-2")
	green := startApps(t, pool.Green, "web-green-1", "web-green-2")
	v := harness.StartVarnish(t, harness.VarnishOptions{})
	dir := t.TempDir()
	site := filepath.Join(dir, "site.vcl")
	if err := os.WriteFile(site, []byte("sub vcl_recv {\n    return (pass);\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := varnish.New(varnish.Options{AdminAddr: v.AdminAddr, SecretFile: v.SecretFile, VCLDir: filepath.Join(dir, "vcl"), Include: site})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(stepCtx(t), 1, blue); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(stepCtx(t), 2, green); err != nil {
		t.Fatal(err)
	}
	loaded, active := cyclerVCLs(t, v)

	stop := make(chan struct{})
	type result struct{ ok, failed int }
	done := make(chan result)
	client := &http.Client{Timeout: 10 * time.Second}
	for range 2 {
		go func() {
			var r result
			for {
				select {
				case <-stop:
					done <- r
					return
				default:
				}
				resp, err := client.Get(v.URL() + "/")
				if err != nil {
					r.failed++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					r.ok++
				} else {
					r.failed++
				}
			}
		}()
	}
	var applyErr error
	for gen := uint64(3); gen <= 42 && applyErr == nil; gen++ {
		set := blue
		if gen%2 == 0 {
			set = green
		}
		applyErr = d.Apply(stepCtx(t), gen, set)
	}
	close(stop)
	total := result{}
	for range 2 {
		r := <-done
		total.ok += r.ok
		total.failed += r.failed
	}
	if applyErr != nil {
		t.Fatal(applyErr)
	}
	if total.failed != 0 || total.ok == 0 {
		t.Fatalf("during 40 flips: %d answers of 200, %d failures; want no failure", total.ok, total.failed)
	}
	if after, activeAfter := cyclerVCLs(t, v); !slices.Equal(after, loaded) || activeAfter != active {
		t.Fatalf("flips loaded VCLs: %v (%s) -> %v (%s)", loaded, active, after, activeAfter)
	}
	requireApplied(t, d, 42, green)
	t.Logf("%d requests answered during 40 flips", total.ok)
}

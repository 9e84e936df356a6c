//go:build integration

// Package integration holds the tests that run cycler against real Consul, nginx,
// varnishd and cyclerd processes. Run them with
//
//	go test -tags integration -count=1 ./integration/...
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pool"
)

// TestMain deletes the binaries the harness built for this package. It is the
// package's only TestMain.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.RemoveBuiltBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "remove harness binaries:", err)
	}
	os.Exit(code)
}

// appAnswer is the demo app's JSON body.
type appAnswer struct {
	Version  string `json:"version"`
	Instance string `json:"instance"`
	Pool     string `json:"pool"`
}

// TestHarnessRealComponents starts every component for real, checks each one's
// answers, and then checks that no process it started outlives the test.
func TestHarnessRealComponents(t *testing.T) {
	var pids []int
	ok := t.Run("components", func(t *testing.T) {
		consul := harness.StartConsul(t)
		blue := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v1", Instance: "web-blue-1", Pool: pool.Blue})
		green := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v2", Instance: "web-green-1", Pool: pool.Green})
		ngx := harness.StartNginx(t, harness.NginxOptions{Upstreams: []string{blue.Addr}, LoadLua: true})
		vsh := harness.StartVarnish(t, harness.VarnishOptions{Backends: []string{green.Addr}})

		leader, err := consul.Client().Status().Leader()
		if err != nil || leader == "" {
			harness.Fatalf(t, "consul leader = %q, %v; want a leader", leader, err)
		}

		// Each LB answers with the instance behind it, not just any 200.
		if got := getApp(t, ngx.URL()+"/"); got != (appAnswer{"v1", "web-blue-1", "blue"}) {
			harness.Errorf(t, "through nginx: %+v, want web-blue-1 v1 blue", got)
		}
		if got := getApp(t, vsh.URL()+"/"); got != (appAnswer{"v2", "web-green-1", "green"}) {
			harness.Errorf(t, "through varnish: %+v, want web-green-1 v2 green", got)
		}

		for _, app := range []*harness.DemoApp{blue, green} {
			harness.RegisterInstance(t, consul.Client(), harness.Instance{
				Service: "web", ID: app.Instance, Pool: app.Pool, Version: app.Version, Addr: app.Host, Port: app.Port,
			})
		}
		entries := harness.WaitPassing(t, consul.Client(), "web", blue.Instance, green.Instance)
		for _, e := range entries {
			want := map[string]string{"web-blue-1": "blue", "web-green-1": "green"}[e.Service.ID]
			if e.Service.Meta[pool.MetaPool] != want || !slices.Contains(e.Service.Tags, pool.Tag(pool.Pool(want))) {
				harness.Errorf(t, "%s: meta %v tags %v, want pool %s and tag %s", e.Service.ID, e.Service.Meta, e.Service.Tags, want, pool.Tag(pool.Pool(want)))
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		// nginx: pids are stable without a reload, and a reload starts a new worker
		// under the same master.
		before, err := ngx.PIDs()
		if err != nil || len(before) != 2 {
			harness.Fatalf(t, "nginx pids = %v, %v; want master and one worker", before, err)
		}
		if again, _ := ngx.PIDs(); !slices.Equal(before, again) {
			harness.Errorf(t, "nginx pids changed without a reload: %v then %v", before, again)
		}
		if err := ngx.Reload(ctx); err != nil {
			harness.Fatal(t, err)
		}
		after, err := ngx.PIDs()
		if err != nil {
			harness.Fatal(t, err)
		}
		newWorker := slices.ContainsFunc(after[1:], func(pid int) bool { return !slices.Contains(before, pid) })
		if after[0] != before[0] || !newWorker {
			harness.Errorf(t, "after reload pids = %v (before %v); want master %d and a new worker", after, before, before[0])
		}

		// varnish: the management CLI works, lists the generated backend, and takes
		// a new VCL passed inline (quotes and newlines survive Adm's CLI quoting).
		out, err := vsh.Adm(ctx, "backend.list")
		if err != nil || !strings.Contains(out, "app0") {
			harness.Errorf(t, "backend.list = %q, %v; want app0", out, err)
		}
		vcl, err := harness.RenderVCL([]string{blue.Addr})
		if err != nil {
			harness.Fatal(t, err)
		}
		if _, err := vsh.Adm(ctx, "vcl.inline", "to_blue", vcl); err != nil {
			harness.Fatal(t, err)
		}
		if _, err := vsh.Adm(ctx, "vcl.use", "to_blue"); err != nil {
			harness.Fatal(t, err)
		}
		if got := getApp(t, vsh.URL()+"/"); got.Instance != "web-blue-1" {
			harness.Errorf(t, "through varnish after vcl.use to_blue: %+v, want web-blue-1", got)
		}

		// Kill takes an app down hard; Restart brings it back on the same port.
		if err := blue.Kill(); err != nil {
			harness.Fatal(t, err)
		}
		if code := status(t, ngx.URL()+"/"); code != http.StatusBadGateway {
			harness.Errorf(t, "nginx with its only backend killed answered %d, want 502", code)
		}
		if err := blue.Restart(); err != nil {
			harness.Fatal(t, err)
		}
		if got := getApp(t, ngx.URL()+"/"); got.Instance != "web-blue-1" {
			harness.Errorf(t, "after restart through nginx: %+v", got)
		}

		// Consul restarts on the same ports with the agent's registrations intact.
		if err := consul.Restart(); err != nil {
			harness.Fatal(t, err)
		}
		harness.WaitPassing(t, consul.Client(), "web", blue.Instance, green.Instance)

		pids = append(pids, consul.Pid(), blue.Pid(), green.Pid(), vsh.Pid())
		all, err := ngx.PIDs()
		if err != nil {
			harness.Fatal(t, err)
		}
		pids = append(pids, all...)
		kids, err := harness.ChildPIDs(vsh.Pid())
		if err != nil || len(kids) == 0 {
			harness.Fatalf(t, "varnish cache process: %v, %v; want one child of the manager", kids, err)
		}
		pids = append(pids, kids...)
		for _, pid := range pids {
			if !harness.Alive(pid) {
				harness.Errorf(t, "pid %d is not alive while the components run", pid)
			}
		}
	})
	if !ok {
		return
	}
	// The subtest's cleanups have run: nothing it started may survive.
	for _, pid := range pids {
		if harness.Alive(pid) {
			harness.Errorf(t, "pid %d survived the test's cleanup", pid)
		}
	}
}

// TestHarnessConsulPersistentRestart checks that a persistent Consul keeps its KV
// store across Restart, on the same address.
func TestHarnessConsulPersistentRestart(t *testing.T) {
	c := harness.StartConsulWith(t, harness.ConsulOptions{Persistent: true})
	kv := c.Client().KV()
	if _, err := kv.Put(&consulapi.KVPair{Key: "cycler/web/state", Value: []byte(`{"generation":7}`)}, nil); err != nil {
		harness.Fatal(t, err)
	}
	addr, pid := c.HTTPAddr, c.Pid()
	if err := c.Restart(); err != nil {
		harness.Fatal(t, err)
	}
	if c.HTTPAddr != addr || c.Pid() == pid {
		harness.Fatalf(t, "after restart: addr %s (was %s), pid %d (was %d); want the same addr and a new pid", c.HTTPAddr, addr, c.Pid(), pid)
	}
	pair, _, err := kv.Get("cycler/web/state", nil)
	if err != nil || pair == nil || string(pair.Value) != `{"generation":7}` {
		harness.Fatalf(t, "after restart: %+v, %v; want the value written before", pair, err)
	}
}

func getApp(t *testing.T, url string) appAnswer {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		harness.Fatalf(t, "GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		harness.Fatalf(t, "GET %s: read body: %v", url, err)
	}
	var a appAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
		harness.Fatalf(t, "GET %s: %d %q, want 200 and the demo app's JSON", url, resp.StatusCode, body)
	}
	if h := resp.Header.Get("X-App-Instance"); h != a.Instance {
		harness.Fatalf(t, "GET %s: X-App-Instance %q but body says %q", url, h, a.Instance)
	}
	return a
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		harness.Fatalf(t, "GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/pool"
)

// lbToken is the operator secret of every cyclerd in these tests.
const lbToken = "lb-test-operator-secret-0123456789"

// The demo fleet of service web: two blue and two green instances.
var (
	lbBlue  = []string{"web-blue-1", "web-blue-2"}
	lbGreen = []string{"web-green-1", "web-green-2"}
)

// lbEnv is a real Consul with the four demo apps registered under the
// Consul contract. The test plays the leader: it writes cycler/web/state
// and puts instances in maintenance itself.
type lbEnv struct {
	t      *testing.T
	consul *harness.Consul
	cc     *consulapi.Client
}

func startLBEnv(t *testing.T) *lbEnv {
	t.Helper()
	e := &lbEnv{t: t, consul: harness.StartConsul(t)}
	e.cc = e.consul.Client()
	for _, id := range append(slices.Clone(lbBlue), lbGreen...) {
		p, v := pool.Blue, "v1"
		if strings.Contains(id, "green") {
			p, v = pool.Green, "v2"
		}
		app := harness.StartDemoApp(t, harness.DemoAppOptions{Version: v, Instance: id, Pool: p})
		harness.RegisterInstance(t, e.cc, harness.Instance{Service: "web", ID: id, Pool: p, Version: v, Addr: app.Host, Port: app.Port})
	}
	harness.WaitPassing(t, e.cc, "web", append(slices.Clone(lbBlue), lbGreen...)...)
	return e
}

// publish does what the leader does to make live the live pool at
// generation gen: publish the state, unhide the live pool, hide the other
// one with cycler's maintenance reason.
func (e *lbEnv) publish(gen uint64, live pool.Pool) {
	e.t.Helper()
	liveIDs, hidden := lbGreen, lbBlue
	if live == pool.Blue {
		liveIDs, hidden = lbBlue, lbGreen
	}
	e.putState(gen, live, hidden)
	for _, id := range liveIDs {
		if err := e.cc.Agent().DisableServiceMaintenance(id); err != nil {
			harness.Fatalf(e.t, "unhide %s: %v", id, err)
		}
	}
	for _, id := range hidden {
		e.maintenance(id, pool.HiddenReason(gen))
	}
}

// putState writes the state document only, touching no instance.
func (e *lbEnv) putState(gen uint64, live pool.Pool, hidden []string) {
	e.t.Helper()
	doc, err := json.Marshal(pool.State{Generation: gen, Live: live, Hidden: hidden, Pools: map[pool.Pool]pool.Release{
		pool.Blue: {Version: "v1"}, pool.Green: {Version: "v2"},
	}})
	if err != nil {
		harness.Fatal(e.t, err)
	}
	if _, err := e.cc.KV().Put(&consulapi.KVPair{Key: pool.StateKey("web"), Value: doc}, nil); err != nil {
		harness.Fatalf(e.t, "publish generation %d: %v", gen, err)
	}
}

func (e *lbEnv) maintenance(id, reason string) {
	e.t.Helper()
	if err := e.cc.Agent().EnableServiceMaintenance(id, reason); err != nil {
		harness.Fatalf(e.t, "maintenance on %s: %v", id, err)
	}
}

// ack reads LB lbID's acknowledgement of service web.
func (e *lbEnv) ack(lbID string) (lb.Ack, error) {
	pair, _, err := e.cc.KV().Get(pool.AckKey("web", lbID), nil)
	if err != nil {
		return lb.Ack{}, err
	}
	if pair == nil {
		return lb.Ack{}, errors.New("no ack yet")
	}
	return lb.ParseAck(pair.Value)
}

// waitAck waits until lbID acknowledges gen with exactly ids.
func (e *lbEnv) waitAck(lbID string, gen uint64, ids ...string) lb.Ack {
	e.t.Helper()
	var got lb.Ack
	waitFor(e.t, fmt.Sprintf("%s to ack generation %d with %v", lbID, gen, ids), func() error {
		a, err := e.ack(lbID)
		if err != nil {
			return err
		}
		got = a
		if a.Generation != gen || !slices.Equal(ackIDs(a), ids) {
			return fmt.Errorf("ack: generation %d, backends %v, last error %q", a.Generation, ackIDs(a), a.LastError)
		}
		return nil
	})
	return got
}

func ackIDs(a lb.Ack) []string {
	var ids []string
	for _, b := range a.Backends {
		ids = append(ids, b.ID)
	}
	slices.Sort(ids)
	return ids
}

// lbNode is one `cyclerd lb` and the load balancer it drives.
type lbNode struct {
	*harness.Cyclerd
	ID string
	// Public is the load balancer's public URL for service web.
	Public string
	// Nginx is the nginx process (nginx LBs only).
	Nginx *harness.Process
}

// startNginxLB starts `cyclerd lb` with a standalone nginx config in mode,
// then runs nginx from the files it wrote, as an operator or systemd would:
// cyclerd writes the config, something else runs nginx.
func startNginxLB(t *testing.T, e *lbEnv, id, mode string) *lbNode {
	t.Helper()
	if nginx.Mode(mode) == nginx.ModeDynamic && nginx.DetectMode("") != nginx.ModeDynamic {
		t.Skip("libnginx-mod-http-lua or lua-resty-core is not installed; dynamic mode cannot run")
	}
	prefix := filepath.Join(t.TempDir(), "nginx")
	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := lbConfig(id, apiAddr, e.consul.HTTPAddr, harness.NginxDriver{Mode: mode, Binary: harness.NginxBinary(t), Prefix: prefix,
		AdminAddr: admin, AdminSecret: randomHex(t), Services: []harness.NginxService{{Name: "web", Listen: listen}}}.Render())
	n := &lbNode{ID: id, Public: "http://" + listen}
	n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{Role: "lb", Config: cfg, APIAddr: apiAddr, Name: "cyclerd-lb-" + id})
	o := nginx.Options{Prefix: prefix, MainConfig: filepath.Join(prefix, "nginx.conf"), Standalone: true}
	n.Nginx = harness.StartProcess(t, harness.ProcessConfig{
		Name:      "nginx-" + id,
		Path:      harness.NginxBinary(t),
		Args:      nginx.ForegroundArgs(o),
		Dir:       prefix,
		ExtraLogs: []string{filepath.Join(prefix, "logs", "error.log")},
		Ready:     nginxAdminUp(admin),
	})
	return n
}

// nginxAdminUp is the Ready check of an nginx with its admin server at
// admin: that server answers (404 on /) once nginx serves.
func nginxAdminUp(admin string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/", nil)
		if err != nil {
			return err
		}
		resp, err := freshHTTP.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
}

// startVarnishLB starts a varnishd (booted with the harness's VCL) and a
// `cyclerd lb` driving it.
func startVarnishLB(t *testing.T, e *lbEnv, id string) *lbNode {
	t.Helper()
	v := harness.StartVarnish(t, harness.VarnishOptions{})
	// varnish is a cache: without this, the demo app's answers would be
	// cached and every request would seem to come from one instance.
	site := filepath.Join(t.TempDir(), "site.vcl")
	if err := os.WriteFile(site, []byte("sub vcl_recv {\n    return (pass);\n}\n"), 0o644); err != nil {
		harness.Fatal(t, err)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := lbConfig(id, apiAddr, e.consul.HTTPAddr,
		harness.VarnishDriver{V: v, VCLDir: filepath.Join(t.TempDir(), "vcl"), Include: site, Service: "web"}.Render())
	n := &lbNode{ID: id, Public: v.URL()}
	n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{Role: "lb", Config: cfg, APIAddr: apiAddr, Name: "cyclerd-lb-" + id})
	return n
}

// lbConfig renders a `cyclerd lb` config (harness.LBConfig) for service
// web around a driver block. verify_interval is short so drift repair
// shows within a test.
func lbConfig(id, apiAddr, consulAddr, driver string) string {
	return harness.LBConfig{ID: id, Services: []string{"web"}, VerifyInterval: "1s", LogLevel: "debug",
		APIAddr: apiAddr, OperatorSecret: lbToken, ConsulAddr: consulAddr, Driver: driver}.Render()
}

// status reads GET /v1/lb/status.
func (n *lbNode) status(t *testing.T) lb.Report {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.URL()+"/v1/lb/status", nil)
	if err != nil {
		harness.Fatal(t, err)
	}
	req.Header.Set("Authorization", "Bearer "+lbToken)
	resp, err := freshHTTP.Do(req)
	if err != nil {
		harness.Fatalf(t, "GET /v1/lb/status: %v", err)
	}
	defer resp.Body.Close()
	var rep lb.Report
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rep) != nil || len(rep.Services) != 1 {
		harness.Fatalf(t, "GET /v1/lb/status: status %d, report %+v", resp.StatusCode, rep)
	}
	return rep
}

// freshHTTP opens a new connection per request, so requests spread over
// nginx's workers and no request rides a connection from before a switch.
var freshHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// lbGet GETs url and returns the answering instance (X-App-Instance).
func lbGet(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return resp.Header.Get("X-App-Instance"), nil
}

// sample sends n requests through the LB on fresh connections and returns
// how often each instance answered, or an error on any failed request or
// any answer from outside want.
func sample(url string, n int, want []string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	for i := range n {
		id, err := lbGet(ctx, freshHTTP, url)
		if err != nil {
			return seen, fmt.Errorf("request %d: %w", i+1, err)
		}
		seen[id]++
		if !slices.Contains(want, id) {
			return seen, fmt.Errorf("request %d answered by %q, outside %v (seen %v)", i+1, id, want, seen)
		}
	}
	return seen, nil
}

// requireOnly fails unless every one of n requests is answered by an
// instance in want, and each of them answers at least once.
func requireOnly(t *testing.T, url string, n int, want ...string) {
	t.Helper()
	seen, err := sample(url, n, want)
	if err != nil {
		harness.Fatal(t, err)
	}
	for _, id := range want {
		if seen[id] == 0 {
			harness.Fatalf(t, "%s never answered in %d requests (seen %v)", id, n, seen)
		}
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		harness.Fatal(t, err)
	}
	return hex.EncodeToString(b)
}

// switchAndCheck runs the switch sequence every driver must pass: green at
// generation 1, blue at 2, then a blue instance leaving the set. After each
// ack, every request goes to the acked set.
func switchAndCheck(t *testing.T, e *lbEnv, n *lbNode) {
	t.Helper()
	waitFor(t, "the lb to wait for a state", func() error {
		if st := n.status(t).Services[0]; st.Waiting != "waiting for the leader to publish cycler/web/state" || st.Generation != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	e.publish(1, pool.Green)
	a := e.waitAck(n.ID, 1, lbGreen...)
	if a.Driver == "" || a.AppliedAt.IsZero() || a.CheckedAt.IsZero() || a.LastError != "" {
		harness.Fatalf(t, "ack of generation 1: %+v", a)
	}
	requireOnly(t, n.Public, 50, lbGreen...)

	e.publish(2, pool.Blue)
	e.waitAck(n.ID, 2, lbBlue...)
	requireOnly(t, n.Public, 50, lbBlue...)

	// An operator puts a live instance in maintenance: it leaves the set.
	e.maintenance("web-blue-2", "ops: disk swap")
	e.waitAck(n.ID, 2, "web-blue-1")
	requireOnly(t, n.Public, 50, "web-blue-1")
	if st := n.status(t).Services[0]; !st.InSync || st.Generation != 2 || len(st.Backends) != 1 {
		harness.Fatalf(t, "status after the maintenance: %+v", st)
	}
}

// TestLBSwitchNginx drives a real nginx in dynamic mode through switches,
// repairs drift after an nginx restart, and shows the LB in `cyclerctl lb
// status` of a real server.
func TestLBSwitchNginx(t *testing.T) {
	e := startLBEnv(t)
	n := startNginxLB(t, e, "lb-ngx", "dynamic")
	switchAndCheck(t, e, n)

	// nginx restarts: its lua_shared_dict is empty (502s) until the drift
	// check applies the set again.
	if err := n.Nginx.Restart(); err != nil {
		harness.Fatal(t, err)
	}
	waitFor(t, "the set restored after the nginx restart", func() error {
		_, err := sample(n.Public, 10, []string{"web-blue-1"})
		return err
	})
	if a, err := e.ack(n.ID); err != nil || a.Generation != 2 {
		harness.Fatalf(t, "ack after the restart: %+v, %v; want generation 2", a, err)
	}

	// cyclerctl lb status against a real server reads the acks from Consul.
	dir := t.TempDir()
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	harness.StartCyclerd(t, harness.CyclerdOptions{Role: "server", APIAddr: apiAddr, Config: fmt.Sprintf(`node_id  = "lbs-1"
data_dir = %q
api {
  listen = %q
  token "ops" {
    secret = %q
    scopes = ["operator"]
  }
}
consul {
  address = %q
}
raft {
  bind   = "127.0.0.1:%d"
  timing = "fast"
}
`, filepath.Join(dir, "data"), apiAddr, lbToken, e.consul.HTTPAddr, harness.FreePort(t))})
	ctl := harness.BuildBinary(t, "./cmd/cyclerctl")
	out, err := runCtl(ctl, "--addr", apiAddr, "--token", lbToken, "lb", "status")
	if err != nil {
		harness.Fatalf(t, "cyclerctl lb status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "LB") || !strings.Contains(lines[0], "STALENESS") {
		harness.Fatalf(t, "cyclerctl lb status printed:\n%s\nwant a header and one row", out)
	}
	if f := strings.Fields(lines[1]); len(f) < 7 || f[0] != "lb-ngx" || f[1] != "web" || f[2] != "nginx" || f[3] != "2" || f[4] != "1" {
		harness.Fatalf(t, "cyclerctl lb status row %q; want lb-ngx web nginx 2 1 ...", lines[1])
	}
	out, err = runCtl(ctl, "--addr", apiAddr, "--token", lbToken, "--json", "lb", "status")
	var rows []controller.LBAck
	if err != nil || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		harness.Fatalf(t, "cyclerctl --json lb status: %v\n%s", err, out)
	}
	if r := rows[0]; r.LBID != "lb-ngx" || r.Generation != 2 || len(r.Backends) != 1 || r.StalenessSeconds == nil {
		harness.Fatalf(t, "cyclerctl --json lb status row %+v", r)
	}
}

// TestLBSwitchVarnish drives a real varnishd through the same switches.
func TestLBSwitchVarnish(t *testing.T) {
	e := startLBEnv(t)
	n := startVarnishLB(t, e, "lb-vsh")
	switchAndCheck(t, e, n)
}

// TestLBVarnishCacheAfterSwitch runs two varnish LBs that cache the app's
// answers for an hour, one with ban_on_switch at its default (true), one
// with it off. After a switch to blue the first answers from blue at once;
// the second still serves the green answer it cached, which shows the cache
// really held old-pool objects.
func TestLBVarnishCacheAfterSwitch(t *testing.T) {
	e := startLBEnv(t)
	caching := filepath.Join(t.TempDir(), "cache.vcl")
	if err := os.WriteFile(caching, []byte("sub vcl_backend_response {\n    set beresp.ttl = 1h;\n    return (deliver);\n}\n"), 0o644); err != nil {
		harness.Fatal(t, err)
	}
	start := func(id, extra string) *lbNode {
		v := harness.StartVarnish(t, harness.VarnishOptions{})
		apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		cfg := lbConfig(id, apiAddr, e.consul.HTTPAddr, fmt.Sprintf(`driver "varnish" {
  admin_addr  = %q
  secret_file = %q
  vcl_dir     = %q
  include     = %q
  %s
}`, v.AdminAddr, v.SecretFile, filepath.Join(t.TempDir(), "vcl"), caching, extra))
		n := &lbNode{ID: id, Public: v.URL()}
		n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{Role: "lb", Config: cfg, APIAddr: apiAddr, Name: "cyclerd-lb-" + id})
		return n
	}
	// get returns the answering instance and whether varnish answered
	// from its cache (X-Varnish holds two transaction ids on a hit).
	get := func(n *lbNode) (string, bool) {
		t.Helper()
		resp, err := freshHTTP.Get(n.Public + "/")
		if err != nil {
			harness.Fatalf(t, "GET through %s: %v", n.ID, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			harness.Fatalf(t, "GET through %s: status %d", n.ID, resp.StatusCode)
		}
		return resp.Header.Get("X-App-Instance"), len(strings.Fields(resp.Header.Get("X-Varnish"))) == 2
	}
	banning, keeping := start("lb-vcache", ""), start("lb-vkeep", "ban_on_switch = false")

	e.publish(1, pool.Green)
	cached := map[string]string{}
	for _, n := range []*lbNode{banning, keeping} {
		e.waitAck(n.ID, 1, lbGreen...)
		first, _ := get(n)
		again, hit := get(n)
		if !hit || again != first || !slices.Contains(lbGreen, first) {
			harness.Fatalf(t, "%s before the switch: %q then %q (hit %v); want a green answer, then the same one from the cache", n.ID, first, again, hit)
		}
		cached[n.ID] = first
	}

	e.publish(2, pool.Blue)
	for _, n := range []*lbNode{banning, keeping} {
		e.waitAck(n.ID, 2, lbBlue...)
	}
	if got, hit := get(banning); hit || !slices.Contains(lbBlue, got) {
		harness.Fatalf(t, "first answer after the ack of blue: %q (hit %v); want blue, fetched from the backend, not green from the cache", got, hit)
	}
	if got, hit := get(keeping); !hit || got != cached[keeping.ID] {
		harness.Fatalf(t, "with ban_on_switch = false: %q (hit %v); want the cached %q", got, hit, cached[keeping.ID])
	}
}

// TestLBRefusesEmptySet takes every live instance out: the LB refuses the
// empty set, keeps serving the last good one, does not move its ack, and
// reports the refusal.
func TestLBRefusesEmptySet(t *testing.T) {
	e := startLBEnv(t)
	n := startNginxLB(t, e, "lb-refuse", "dynamic")
	e.publish(1, pool.Green)
	e.waitAck(n.ID, 1, lbGreen...)
	requireOnly(t, n.Public, 20, lbGreen...)

	// One instance leaves: the set of the other is still above min_live
	// and is applied. (Both leaving in two Consul calls would race the LB,
	// which may or may not see this set in between.)
	last := lbGreen[len(lbGreen)-1]
	for _, id := range lbGreen[:len(lbGreen)-1] {
		e.maintenance(id, "ops: all hands")
	}
	good := e.waitAck(n.ID, 1, last)
	// The last one leaves: the set would be empty, so it is refused and
	// the ack keeps the last good set.
	e.maintenance(last, "ops: all hands")
	waitFor(t, "the refusal in the ack", func() error {
		a, err := e.ack(n.ID)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(a.LastError, "refused: generation 1: 0 serving backends") || a.Refused == "" {
			return fmt.Errorf("ack %+v", a)
		}
		if a.Generation != 1 || !slices.Equal(ackIDs(a), []string{last}) || !a.AppliedAt.Equal(good.AppliedAt) {
			return fmt.Errorf("the ack moved: %+v", a)
		}
		return nil
	})
	st := n.status(t).Services[0]
	if !strings.Contains(st.Refused, "fewer than min_live 1") || !strings.Contains(st.Refused, "2 in maintenance") ||
		st.Generation != 1 || st.InSync || !strings.HasPrefix(st.LastError, "refused: ") {
		harness.Fatalf(t, "status during the refusal: %+v", st)
	}
	// The green instances still run, and nginx still routes to the last
	// good set.
	requireOnly(t, n.Public, 20, last)

	// The blue instances come back and serve, but are not live: a new
	// generation whose live pool (green) has nothing serving is refused
	// too. The state lists nothing as hidden, so only the live pool keeps
	// blue out.
	for _, id := range lbBlue {
		if err := e.cc.Agent().DisableServiceMaintenance(id); err != nil {
			harness.Fatal(t, err)
		}
	}
	harness.WaitPassing(t, e.cc, "web", lbBlue...)
	e.putState(2, pool.Green, nil)
	waitFor(t, "the refusal of generation 2", func() error {
		if st := n.status(t).Services[0]; !strings.Contains(st.Refused, "generation 2: 0 serving backends in live pool green") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if a, err := e.ack(n.ID); err != nil || a.Generation != 1 {
		harness.Fatalf(t, "ack during the refusal: %+v, %v; want generation 1", a, err)
	}
	requireOnly(t, n.Public, 20, last)

	// One green instance returns: generation 2 is applied with it alone.
	if err := e.cc.Agent().DisableServiceMaintenance("web-green-1"); err != nil {
		harness.Fatal(t, err)
	}
	if a := e.waitAck(n.ID, 2, "web-green-1"); a.Refused != "" || a.LastError != "" {
		harness.Fatalf(t, "ack after the recovery: %+v", a)
	}
	requireOnly(t, n.Public, 20, "web-green-1")
}

// TestLBNginxDynamicNoReload proves a dynamic-mode switch reloads nothing:
// the nginx master and workers keep their pids, and a keepalive connection
// opened before the switch carries a request after it.
func TestLBNginxDynamicNoReload(t *testing.T) {
	e := startLBEnv(t)
	n := startNginxLB(t, e, "lb-noreload", "dynamic")
	e.publish(1, pool.Green)
	e.waitAck(n.ID, 1, lbGreen...)

	keep := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(keep.CloseIdleConnections)
	first := keepaliveGet(t, keep, n.Public)
	if first.reused || !slices.Contains(lbGreen, first.instance) {
		harness.Fatalf(t, "first request: %+v; want a new connection answered by green", first)
	}
	before := nginxPIDs(t, n.Nginx)

	e.publish(2, pool.Blue)
	e.waitAck(n.ID, 2, lbBlue...)
	after := keepaliveGet(t, keep, n.Public)
	if !after.reused || !slices.Contains(lbBlue, after.instance) {
		harness.Fatalf(t, "request after the switch: %+v; want the same connection, answered by blue", after)
	}
	if now := nginxPIDs(t, n.Nginx); !slices.Equal(before, now) {
		harness.Fatalf(t, "nginx pids %v before the switch, %v after; a dynamic switch must not reload", before, now)
	}
}

// TestLBNginxReloadMode switches a stock-nginx (reload mode) LB.
func TestLBNginxReloadMode(t *testing.T) {
	e := startLBEnv(t)
	n := startNginxLB(t, e, "lb-reload", "reload")
	for gen, live := range []pool.Pool{pool.Green, pool.Blue} {
		ids := lbGreen
		if live == pool.Blue {
			ids = lbBlue
		}
		e.publish(uint64(gen+1), live)
		a := e.waitAck(n.ID, uint64(gen+1), ids...)
		if a.Driver != "nginx" {
			harness.Fatalf(t, "ack %+v", a)
		}
		// After a reload, old workers may finish requests already
		// accepted; new connections go to the new workers.
		waitFor(t, fmt.Sprintf("only %v answering", ids), func() error {
			_, err := sample(n.Public, 20, ids)
			return err
		})
	}
}

// keepaliveAnswer is one request's answering instance and whether it
// reused a pooled connection.
type keepaliveAnswer struct {
	instance string
	reused   bool
}

func keepaliveGet(t *testing.T, c *http.Client, url string) keepaliveAnswer {
	t.Helper()
	var a keepaliveAnswer
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { a.reused = info.Reused },
	})
	id, err := lbGet(ctx, c, url)
	if err != nil {
		harness.Fatalf(t, "keepalive request: %v", err)
	}
	a.instance = id
	return a
}

// nginxPIDs returns the master's pid and its workers', sorted.
func nginxPIDs(t *testing.T, p *harness.Process) []int {
	t.Helper()
	kids, err := harness.ChildPIDs(p.Pid())
	if err != nil {
		harness.Fatal(t, err)
	}
	slices.Sort(kids)
	return append([]int{p.Pid()}, kids...)
}

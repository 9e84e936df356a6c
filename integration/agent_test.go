//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
	"github.com/cyclerhq/cycler/pool"
)

// TestAgentInstallAndHide runs two real agents (blue and green) that
// supervise the demo app, a real server and a real Consul: push v1 and
// install it on both; install v2 on blue only and see exactly that in
// `cyclerctl hosts`; kill -9 blue's agent and restart it (the app keeps
// serving and is adopted); hide blue and see it leave Consul's passing
// instances and Consul DNS; unhide it and see it come back.
func TestAgentInstallAndHide(t *testing.T) {
	e := startHostsEnv(t)
	ctx := testContext(t, 5*time.Minute)
	v1 := e.push(ctx, writePackage(t, "web-1.0.0.tar.gz", pkgtest.DemoPackage(t, "1.0.0", e.demoBin)))
	v2 := e.push(ctx, writePackage(t, "web-2.0.0.tar.gz", pkgtest.DemoPackage(t, "2.0.0", e.demoBin)))
	blue := e.startAgent("blue", "web-blue-1")
	green := e.startAgent("green", "web-green-1")

	// An operator token cannot drive an agent.
	err := blue.agentCall(ctx, agentOpsSecret, http.MethodPost, "/v1/agent/install", agent.InstallRequest{Digest: v1}, nil)
	if !errors.Is(err, api.ErrForbidden) {
		harness.Fatalf(t, "install with an operator-only token: %v, want 403 forbidden", err)
	}

	for _, a := range []*testAgent{blue, green} {
		res := e.install(ctx, a.Instance, v1, agent.OutcomeInstalled)
		if res.Current == nil || res.Current.Digest != v1 || res.Current.Version != "1.0.0" {
			harness.Fatalf(t, "%s current after install = %+v", a.Instance, res.Current)
		}
		wantVersion(t, a, "1.0.0")
	}
	ans := getApp(t, blue.AppURL())
	if ans.Instance != "web-blue-1" || ans.Pool != "blue" {
		harness.Fatalf(t, "blue's app reports %+v; the agent must pass instance and pool", ans)
	}
	cc := e.consul.Client()
	waitPassing(t, cc, "web-blue-1", "web-green-1")
	// Installing the current digest again changes nothing.
	e.install(ctx, blue.Instance, v1, agent.OutcomeUnchanged)

	e.install(ctx, blue.Instance, v2, agent.OutcomeInstalled)
	wantVersion(t, blue, "2.0.0")
	wantVersion(t, green, "1.0.0")
	waitFor(t, "Consul to show blue on 2.0.0", func() error {
		return consulVersions(cc, map[string]string{"web-blue-1": "2.0.0", "web-green-1": "1.0.0"})
	})
	wantHosts(t, e.hosts(ctx), []hostWant{
		{instance: "web-blue-1", pool: "blue", version: "2.0.0", digest: v2, state: "visible"},
		{instance: "web-green-1", pool: "green", version: "1.0.0", digest: v1, state: "visible"},
	})
	out := e.c.mustCtl(ctx, e.server.APIAddr, "hosts")
	for _, want := range []string{"web-blue-1", "web-green-1", "2.0.0", "1.0.0", "reachable", "installed"} {
		if !strings.Contains(out, want) {
			harness.Errorf(t, "the hosts table lacks %q:\n%s", want, out)
		}
	}

	// kill -9 the agent: the app, in its own process group, keeps serving;
	// the restarted agent re-adopts it without redeploying.
	before := blue.inventory(t)
	if err := blue.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	wantVersion(t, blue, "2.0.0")
	if err := blue.Restart(); err != nil {
		harness.Fatal(t, err)
	}
	after := blue.inventory(t)
	if after.Current == nil || *after.Current != *before.Current || !slices.Equal(after.Releases, before.Releases) ||
		after.LastInstall == nil || *after.LastInstall != *before.LastInstall || after.Maintenance != before.Maintenance {
		harness.Fatalf(t, "inventory changed across kill -9 and restart:\nbefore %+v\nafter  %+v", before, after)
	}
	if after.App.PID != before.App.PID || !after.App.Adopted || after.App.Health != agent.HealthPassing {
		harness.Fatalf(t, "app after the agent restart = %+v; want pid %d adopted and passing", after.App, before.App.PID)
	}
	wantVersion(t, blue, "2.0.0")

	// Hide blue: it leaves every passing-only view, Consul DNS included.
	e.c.mustCtl(ctx, e.server.APIAddr, "host", "hide", blue.Instance, "--generation", "1")
	bluePort, greenPort := uint16(blue.AppPort), uint16(green.AppPort)
	waitFor(t, "blue to leave health?passing and DNS", func() error {
		return visible(ctx, cc, e.consul.DNSAddr, []string{"web-green-1"}, []uint16{greenPort})
	})
	wantHosts(t, e.hosts(ctx), []hostWant{
		{instance: "web-blue-1", pool: "blue", version: "2.0.0", digest: v2, state: "hidden"},
		{instance: "web-green-1", pool: "green", version: "1.0.0", digest: v1, state: "visible"},
	})
	wantVersion(t, blue, "2.0.0") // hidden is not stopped: a warm standby

	e.c.mustCtl(ctx, e.server.APIAddr, "host", "unhide", blue.Instance, "--generation", "2")
	waitFor(t, "blue to come back to health?passing and DNS", func() error {
		return visible(ctx, cc, e.consul.DNSAddr, []string{"web-blue-1", "web-green-1"}, []uint16{bluePort, greenPort})
	})
	// A stale hide (generation 1 < 2) is refused and changes nothing.
	_, errOut, err := e.c.ctl(ctx, e.server.APIAddr, "host", "hide", blue.Instance, "--generation", "1")
	if err == nil || !strings.Contains(errOut, "stale generation") {
		harness.Fatalf(t, "a stale hide: %v\n%s", err, errOut)
	}
	if err := visible(ctx, cc, e.consul.DNSAddr, []string{"web-blue-1", "web-green-1"}, []uint16{bluePort, greenPort}); err != nil {
		harness.Fatalf(t, "after the refused stale hide: %v", err)
	}
}

// hostWant is what one row of `cyclerctl hosts --json` must say.
type hostWant struct {
	instance, pool, version, digest, state string
}

// wantHosts requires exactly the rows of want, each with a reachable agent,
// a passing app and a last install that succeeded.
func wantHosts(t *testing.T, got []controller.Host, want []hostWant) {
	t.Helper()
	if len(got) != len(want) {
		harness.Fatalf(t, "hosts lists %d rows, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		h := got[i]
		if h.Instance != w.instance || h.Pool != w.pool || h.Version != w.version || h.Digest != w.digest || h.State != w.state ||
			!h.AgentReachable || h.Health != agent.HealthPassing || h.LastInstall == nil || h.LastInstall.Outcome != agent.OutcomeInstalled {
			harness.Fatalf(t, "hosts row %d = %+v (last install %+v); want %+v, reachable, passing, last install installed", i, h, h.LastInstall, w)
		}
	}
}

// waitPassing waits until Consul lists exactly ids as passing web instances.
func waitPassing(t *testing.T, cc *consulapi.Client, ids ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("Consul to list %v as passing", ids), func() error {
		got, err := passingIDs(context.Background(), cc)
		if err != nil {
			return err
		}
		if !slices.Equal(got, ids) {
			return fmt.Errorf("passing: %v", got)
		}
		return nil
	})
}

// passingIDs is GET /v1/health/service/web?passing, as instance ids.
func passingIDs(ctx context.Context, cc *consulapi.Client) ([]string, error) {
	entries, _, err := cc.Health().Service("web", "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	sort.Strings(ids)
	return ids, nil
}

// consulVersions checks the cycler_version Meta of each instance.
func consulVersions(cc *consulapi.Client, want map[string]string) error {
	entries, _, err := cc.Health().Service("web", "", false, nil)
	if err != nil {
		return err
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Service.ID] = e.Service.Meta[pool.MetaVersion]
		if p := e.Service.Meta[pool.MetaPool]; !slices.Contains(e.Service.Tags, pool.TagPrefix+p) {
			return fmt.Errorf("%s: tags %v lack %s%s", e.Service.ID, e.Service.Tags, pool.TagPrefix, p)
		}
	}
	for id, v := range want {
		if got[id] != v {
			return fmt.Errorf("Consul versions %v, want %v", got, want)
		}
	}
	return nil
}

// visible checks that exactly ids are passing web instances in Consul's
// HTTP API and that Consul DNS answers web.service.consul with exactly
// the SRV ports of those instances.
func visible(ctx context.Context, cc *consulapi.Client, dnsAddr string, ids []string, ports []uint16) error {
	got, err := passingIDs(ctx, cc)
	if err != nil {
		return err
	}
	if !slices.Equal(got, ids) {
		return fmt.Errorf("health?passing lists %v, want %v", got, ids)
	}
	gotPorts, err := dnsPorts(ctx, dnsAddr, "web.service.consul")
	if err != nil {
		return err
	}
	want := slices.Sorted(slices.Values(ports))
	if !slices.Equal(gotPorts, want) {
		return fmt.Errorf("Consul DNS SRV web.service.consul gives ports %v, want %v", gotPorts, want)
	}
	return nil
}

// dnsPorts asks the DNS server at addr for the SRV records of name and
// returns their ports, sorted. No name means no ports, not an error.
func dnsPorts(ctx context.Context, addr, name string) ([]uint16, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, srvs, err := r.LookupSRV(ctx, "", "", name)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("DNS SRV %s at %s: %w", name, addr, err)
	}
	var ports []uint16
	for _, s := range srvs {
		ports = append(ports, s.Port)
	}
	slices.Sort(ports)
	return ports, nil
}

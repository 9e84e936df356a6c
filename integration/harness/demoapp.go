package harness

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/pool"
)

// DemoAppOptions describes one cycler-demoapp instance.
type DemoAppOptions struct {
	// Version is the release version the app reports. Required.
	Version string
	// Instance is the instance id the app reports. Required.
	Instance string
	// Pool is the pool the app reports; it may be empty.
	Pool pool.Pool
	// Port is the listen port on 127.0.0.1. Default: a free port.
	Port int
	// FailHealth makes /health answer 500 (a release that never gets healthy).
	FailHealth bool
	// FailPath makes that exact path answer 500 (healthy but broken for users).
	FailPath string
}

// DemoApp is a running cycler-demoapp, started by StartDemoApp.
type DemoApp struct {
	*Process
	// Addr is the listen address, 127.0.0.1:port.
	Addr string
	// Host and Port are Addr's parts, as Consul registrations want them.
	Host string
	Port int
	// Instance, Version and Pool are what the app reports.
	Instance string
	Version  string
	Pool     pool.Pool
}

// StartDemoApp builds cmd/cycler-demoapp (once per process), runs it on a free
// loopback port and waits until /health answers 200 (or, with FailHealth, until it
// answers at all).
func StartDemoApp(t T, opts DemoAppOptions) *DemoApp {
	t.Helper()
	if opts.Version == "" || opts.Instance == "" {
		fatalf(t, "harness: demo app needs Version and Instance; got %+v", opts)
	}
	bin := BuildBinary(t, "./cmd/cycler-demoapp")
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	a := &DemoApp{
		Addr:     loopback(opts.Port),
		Host:     "127.0.0.1",
		Port:     opts.Port,
		Instance: opts.Instance,
		Version:  opts.Version,
		Pool:     opts.Pool,
	}
	args := []string{"-listen", a.Addr, "-version", opts.Version, "-instance", opts.Instance, "-pool", string(opts.Pool)}
	want := 200
	if opts.FailHealth {
		args = append(args, "-fail-health")
		want = 0
	}
	if opts.FailPath != "" {
		args = append(args, "-fail-path", opts.FailPath)
	}
	a.Process = StartProcess(t, ProcessConfig{
		Name:  "demoapp-" + opts.Instance,
		Path:  bin,
		Args:  args,
		Dir:   t.TempDir(),
		Ready: wantStatus(a.URL()+"/health", want),
	})
	return a
}

// URL returns http://<Addr>.
func (a *DemoApp) URL() string { return "http://" + a.Addr }

// Instance is one app instance to register in Consul under the Consul contract.
type Instance struct {
	// Service is the Consul service name ("web").
	Service string
	// ID is the Consul service id, unique on the agent ("web-blue-1").
	ID string
	// Pool is the instance's pool.
	Pool pool.Pool
	// Version is the installed release version.
	Version string
	// Addr is the instance's IP address and Port its port.
	Addr string
	Port int
}

// checkInterval is the Consul health check interval of registered instances;
// Consul's minimum is one second.
const checkInterval = time.Second

// RegisterInstance registers in on the Consul agent behind client exactly as the
// Consul contract says (Meta cycler_pool and cycler_version, tag cycler-<pool>)
// with an HTTP check of /health every second, and deregisters it at Cleanup. The
// check starts critical; use WaitPassing to wait for Consul to see it healthy.
func RegisterInstance(t T, client *consulapi.Client, in Instance) {
	t.Helper()
	if _, err := pool.Parse(string(in.Pool)); err != nil {
		fatalf(t, "harness: register %s: %v", in.ID, err)
	}
	if in.Service == "" || in.ID == "" || in.Version == "" || in.Addr == "" || in.Port == 0 {
		fatalf(t, "harness: register instance needs Service, ID, Version, Addr and Port; got %+v", in)
	}
	reg := &consulapi.AgentServiceRegistration{
		ID:      in.ID,
		Name:    in.Service,
		Address: in.Addr,
		Port:    in.Port,
		Tags:    []string{pool.Tag(in.Pool)},
		Meta:    map[string]string{pool.MetaPool: string(in.Pool), pool.MetaVersion: in.Version},
		Check: &consulapi.AgentServiceCheck{
			Name:     in.ID + " /health",
			HTTP:     "http://" + net.JoinHostPort(in.Addr, strconv.Itoa(in.Port)) + "/health",
			Interval: checkInterval.String(),
			Timeout:  checkInterval.String(),
		},
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		fatalf(t, "harness: register %s in Consul: %v", in.ID, err)
	}
	t.Cleanup(func() {
		// Consul may already be gone (a chaos test stopped it); that is not a failure.
		if err := client.Agent().ServiceDeregister(in.ID); err != nil {
			t.Logf("harness: deregister %s: %v", in.ID, err)
		}
	})
}

// WaitPassing waits (up to 30s) until every id in ids is a passing instance of
// service in Consul's health API, and returns the passing entries.
func WaitPassing(t T, client *consulapi.Client, service string, ids ...string) []*consulapi.ServiceEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var entries []*consulapi.ServiceEntry
	err := WaitFor(ctx, fmt.Sprintf("%s instances %v passing in Consul", service, ids), func() error {
		var err error
		entries, _, err = client.Health().Service(service, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		var have []string
		for _, e := range entries {
			have = append(have, e.Service.ID)
		}
		for _, id := range ids {
			if !slices.Contains(have, id) {
				return fmt.Errorf("%s not passing yet (passing: %v)", id, have)
			}
		}
		return nil
	})
	if err != nil {
		fatalf(t, "harness: %v", err)
	}
	return entries
}

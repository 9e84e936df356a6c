// Command fleetsim runs many `cyclerd agent` instances in one process, for
// the scale benchmark (integration/bench_scale_test.go). It is a test tool,
// not shipped.
//
// Each instance is the agent package's own Agent (install, hide, unhide,
// inventory, the Consul registration of its app instance under the Consul
// contract) behind its own API listener with the agent routes, with its own
// data directory, registered in Consul as cyclerd-agent by
// discovery.Maintain, as `cyclerd agent` does. What is simulated is the app:
// each instance's app is an in-process HTTP server on its own port instead
// of a separate process. The agent runs it in restart_command mode; the
// restart command is this binary's `restart` subcommand, a real child
// process that asks the in-process app to restart, upon which the app reads
// its version from the agent's `current` link, as a restarted app would
// from the release it runs. Until then it answers with the version it had.
//
//	fleetsim run -n 500 -service sim500 -consul 127.0.0.1:8500 -servers a:1,b:2 \
//	    -server-token S -agent-token A -dir DIR
//	fleetsim restart    (run by the agents, with CYCLER_ADDR set)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/discovery"
	"github.com/cyclerhq/cycler/logging"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pool"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: fleetsim run|restart [flags]")
	}
	switch args[0] {
	case "run":
		return runFleet(args[1:])
	case "restart":
		return restart(os.Getenv(pkgfile.EnvAddr))
	}
	return fmt.Errorf("unknown subcommand %q; want run or restart", args[0])
}

// restart asks the in-process app at addr to restart.
func restart(addr string) error {
	if addr == "" {
		return fmt.Errorf("$%s is empty; the agent sets it for its restart command", pkgfile.EnvAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/_restart", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("restart app at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("restart app at %s: status %d: %s", addr, resp.StatusCode, b)
	}
	return nil
}

// options are the flags of `fleetsim run`.
type options struct {
	n             int
	service       string
	consul        string
	servers       string
	serverToken   string
	agentToken    string
	dir           string
	checkInterval time.Duration
	logLevel      string
}

func runFleet(args []string) error {
	var o options
	fs := flag.NewFlagSet("fleetsim run", flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 50, "instances, split evenly blue/green")
	fs.StringVar(&o.service, "service", "", "the service the instances run (required)")
	fs.StringVar(&o.consul, "consul", "", "Consul HTTP addresses host:port, comma-separated; the instances are split among them in contiguous blocks (required)")
	fs.StringVar(&o.servers, "servers", "", "comma-separated cyclerd server API addresses to fetch blobs from (required)")
	fs.StringVar(&o.serverToken, "server-token", "", "agent-scope token the agents present to servers (required)")
	fs.StringVar(&o.agentToken, "agent-token", "", "agent-scope token the agents accept from servers (required)")
	fs.StringVar(&o.dir, "dir", "", "directory for the instances' data directories (required)")
	fs.DurationVar(&o.checkInterval, "check-interval", 2*time.Second, "Consul check interval of each app instance")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level of the agents")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.n < 2 || o.service == "" || o.consul == "" || o.servers == "" || o.serverToken == "" || o.agentToken == "" || o.dir == "" {
		return errors.New("-n (at least 2), -service, -consul, -servers, -server-token, -agent-token and -dir are required")
	}
	log, err := logging.New("console", o.logLevel, os.Stderr)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	blobs := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	consuls := strings.Split(o.consul, ",")

	var wg sync.WaitGroup
	for i := range o.n {
		p, k := "blue", i/2+1
		if i%2 == 1 {
			p = "green"
		}
		inst := fmt.Sprintf("%s-%s-%03d", o.service, p, k)
		consul, err := hostConsul(consuls[i*len(consuls)/o.n], i)
		if err != nil {
			stop()
			wg.Wait()
			return err
		}
		if err := startInstance(ctx, &wg, o, inst, p, self, consul, blobs, log.With(zap.String("instance", inst))); err != nil {
			stop()
			wg.Wait()
			return fmt.Errorf("instance %s: %w", inst, err)
		}
	}
	fmt.Printf("fleetsim: %d instances of %s serving\n", o.n, o.service)
	<-ctx.Done()
	wg.Wait()
	return nil
}

// hostConsul is the Consul client of simulated host i, for the Consul
// agent at addr. Each host talks to its agent from its own loopback
// address (127.1.x.y), so Consul's per-client limits
// (http_max_conns_per_client) apply per host, as on a real fleet where
// each host has its own local Consul agent.
func hostConsul(addr string, i int) (*consulapi.Client, error) {
	cc := consulapi.DefaultConfig()
	cc.Address = addr
	src := &net.TCPAddr{IP: net.IPv4(127, 1, byte(i/250), byte(i%250+1))}
	cc.Transport.DialContext = (&net.Dialer{LocalAddr: src, Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	cc.Transport.MaxIdleConnsPerHost = 2
	return consulapi.NewClient(cc)
}

// startInstance starts one agent with its API and its in-process app.
func startInstance(ctx context.Context, wg *sync.WaitGroup, o options, inst, p, self string, consul *consulapi.Client,
	blobs *http.Client, log *zap.Logger) error {
	dataDir := filepath.Join(o.dir, inst)
	app, err := startApp(ctx, wg, inst, p, dataDir)
	if err != nil {
		return err
	}
	var sources []agent.BlobSource
	for _, s := range strings.Split(o.servers, ",") {
		src, err := agent.NewServerSource(s, o.serverToken, blobs)
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}
	ag, err := agent.New(agent.Config{
		DataDir: dataDir, Service: o.service, Pool: p, Instance: inst, Node: "sim-" + inst,
		Address: "127.0.0.1", Port: app.port, KeepReleases: 2,
		RestartCommand: []string{self, "restart"}, StopTimeout: 5 * time.Second, HealthTimeout: 20 * time.Second,
		CheckInterval: o.checkInterval, HookTimeout: 20 * time.Second, InstallTimeout: 2 * time.Minute,
		Sources: sources, Registry: agent.NewConsulRegistry(consul), Logger: log.Named("agent"),
	})
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", NodeName: "sim-" + inst, Logger: log.Named("api"),
		Tokens: []api.Token{{Name: "servers", Secret: o.agentToken, Scopes: []api.Scope{api.ScopeAgent}}}})
	if err != nil {
		return err
	}
	ag.Register(srv)
	if err := srv.Listen(); err != nil {
		return err
	}
	reg := discovery.Registration{Service: pool.ServiceAgent, ID: pool.ServiceAgent + "-" + inst, Addr: srv.Addr(),
		Meta: map[string]string{"service": o.service, "pool": p, "instance": inst, "api_addr": srv.Addr(), "api_scheme": "http"}}
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := ag.Run(ctx); err != nil {
			log.Error("agent run", zap.Error(err))
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx); err != nil {
			log.Error("agent api", zap.Error(err))
		}
	}()
	go func() {
		defer wg.Done()
		discovery.Maintain(ctx, consul, reg, log.Named("discovery"))
	}()
	return nil
}

// simApp is the simulated app of one instance.
type simApp struct {
	port    int
	current string // the agent's `current` link
	inst    string
	pool    string

	mu      sync.Mutex
	version string
}

// startApp serves the simulated app: GET / answers like the demo app
// ({"version","instance","pool"}), GET /health answers 200, and POST
// /_restart re-reads the version from `current`.
func startApp(ctx context.Context, wg *sync.WaitGroup, inst, p, dataDir string) (*simApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &simApp{port: ln.Addr().(*net.TCPAddr).Port, current: filepath.Join(dataDir, "current"), inst: inst, pool: p}
	a.reload() // an instance restarted on a release answers with it
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /_restart", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.reload(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "restarted\n")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		v := a.version
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"version": v, "instance": a.inst, "pool": a.pool})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln)
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return a, nil
}

// reload sets the version from the release `current` points at, whose
// directory is "<version>-<12 hex digits of the digest>".
func (a *simApp) reload() error {
	target, err := os.Readlink(a.current)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := filepath.Base(target)
	i := strings.LastIndexByte(dir, '-')
	if i <= 0 {
		return fmt.Errorf("current points at %q, not a release directory", target)
	}
	a.mu.Lock()
	a.version = dir[:i]
	a.mu.Unlock()
	return nil
}

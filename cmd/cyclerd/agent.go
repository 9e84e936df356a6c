package main

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/discovery"
	"github.com/cyclerhq/cycler/pool"
)

func agentOverrides(c *config.Agent) []override {
	if c == nil {
		c = &config.Agent{}
	}
	return append(commonOverrides(&c.Log, &c.API, &c.Consul),
		override{flag: "data-dir", path: "data_dir", usage: "directory for releases and state", apply: func(v string) { c.DataDir = v }},
		override{flag: "node-id", path: "node_id", usage: "this host's name", apply: func(v string) { c.NodeID = v }},
	)
}

// runAgent runs `cyclerd agent`: it re-adopts the app from `current`,
// serves the agent API (install, switch-local, hide, unhide, inventory),
// keeps the app instance registered in Consul, and registers itself as
// cyclerd-agent with its API address so servers can find it.
func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, base, err := startRole("agent", args, stderr, config.LoadAgent, agentOverrides, func(c *config.Agent) config.Log { return c.Log })
	if err != nil {
		return err
	}
	defer base.Sync() //nolint:errcheck // stderr sync errors are not actionable
	log := base.With(zap.String("instance", cfg.Instance()))

	token, err := cfg.ResolvedServerToken()
	if err != nil {
		return err
	}
	var sources []agent.BlobSource
	for _, s := range cfg.Servers {
		src, err := agent.NewServerSource(s, token, nil)
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}
	consul, err := discovery.NewClient(cfg.Consul)
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Config{
		DataDir: cfg.DataDir, Service: cfg.Service, Pool: cfg.Pool, Instance: cfg.Instance(), Node: cfg.NodeID,
		Address: cfg.Address, Port: cfg.Port, KeepReleases: cfg.KeepReleases,
		RestartCommand: cfg.App.RestartCommand, StopTimeout: cfg.App.StopTimeoutDuration(),
		HealthTimeout: cfg.App.HealthTimeoutDuration(), CheckInterval: cfg.App.CheckIntervalDuration(),
		HookTimeout: cfg.App.HookTimeoutDuration(), InstallTimeout: cfg.InstallTimeoutDuration(),
		StopWithAgent: cfg.App.StopWithAgent, Sources: sources, Registry: agent.NewConsulRegistry(consul),
		Logger: log.Named("agent"),
	})
	if err != nil {
		return err
	}

	srv, err := newAPI(cfg.API, cfg.NodeID, log)
	if err != nil {
		return err
	}
	handleVersion(srv, cfg.NodeID)
	ag.Register(srv)
	if err := srv.Listen(); err != nil {
		return err
	}
	apiAddr := agentAPIAddr(srv.Addr(), cfg.Address)
	scheme := "http"
	if cfg.API.TLS != nil {
		scheme = "https"
	}

	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = ag.Run(ctx)
	}()
	// However the API ends, stop the agent and wait for it: an install
	// under way finishes or rolls back before the process exits.
	defer func() {
		stop()
		wg.Wait()
		if runErr != nil {
			log.Error("agent shutdown", zap.Error(runErr))
		}
	}()
	log.Info("agent started", zap.String("api_addr", apiAddr), zap.String("service", cfg.Service), zap.String("pool", cfg.Pool),
		zap.String("data_dir", cfg.DataDir))
	return runWithRegistration(ctx, cfg.Consul, srv, discovery.Registration{
		Service: pool.ServiceAgent, ID: pool.ServiceAgent + "-" + cfg.Instance(),
		Meta: map[string]string{
			"service": cfg.Service, "pool": cfg.Pool, "instance": cfg.Instance(),
			"api_addr": apiAddr, "api_scheme": scheme,
		},
	}, log)
}

// agentAPIAddr is the API address servers use for this agent: the listen
// address, or the app's address with the API port when listening on every
// interface.
func agentAPIAddr(listen, appAddress string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(strings.Trim(appAddress, "[]"), port)
	}
	return listen
}

// runWithRegistration serves the API and keeps its Consul registration
// alive until ctx ends. Consul being unreachable does not stop the daemon;
// discovery.Maintain logs it and retries.
func runWithRegistration(ctx context.Context, cc config.Consul, srv *api.Server, reg discovery.Registration, log *zap.Logger) error {
	consul, err := discovery.NewClient(cc)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	reg.Addr = srv.Addr()
	log.Info("listening", zap.String("addr", srv.Addr()), zap.String("role", reg.Service))
	regCtx, stopReg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		discovery.Maintain(regCtx, consul, reg, log.Named("discovery"))
	}()
	err = srv.Serve(ctx)
	stopReg()
	wg.Wait()
	return err
}

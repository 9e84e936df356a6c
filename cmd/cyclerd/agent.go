package main

import (
	"context"
	"io"
	"sync"

	"go.uber.org/zap"

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

// runAgent runs `cyclerd agent`: the API listener, registered in Consul as
// cyclerd-agent so servers can find it.
func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseRoleFlags("agent", args, stderr, config.LoadAgent, agentOverrides)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable
	srv, err := newAPI(cfg.API, cfg.NodeID, log)
	if err != nil {
		return err
	}
	handleVersion(srv, cfg.NodeID)
	return runWithRegistration(ctx, cfg.Consul, srv, discovery.Registration{
		Service: pool.ServiceAgent, ID: pool.ServiceAgent + "-" + cfg.Instance(),
		Meta: map[string]string{"service": cfg.Service, "pool": cfg.Pool, "instance": cfg.Instance()},
	}, log)
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

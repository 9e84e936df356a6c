package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/discovery"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/metrics"
	"github.com/cyclerhq/cycler/orchestrator"
	"github.com/cyclerhq/cycler/pkgstore"
	"github.com/cyclerhq/cycler/pool"
	"github.com/cyclerhq/cycler/raftstore"
	"github.com/cyclerhq/cycler/smoke"
)

func serverOverrides(c *config.Server) []override {
	if c == nil {
		c = &config.Server{}
	}
	return append(commonOverrides(&c.Log, &c.API, &c.Consul),
		override{flag: "node-id", path: "node_id", usage: "this server's name, unique in the cluster", apply: func(v string) { c.NodeID = v }},
		override{flag: "data-dir", path: "data_dir", usage: "directory for Raft data", apply: func(v string) { c.DataDir = v }},
		override{flag: "raft-bind", path: "raft.bind", usage: "Raft listen address host:port", apply: func(v string) { c.Raft.Bind = v }},
		override{flag: "raft-advertise", path: "raft.advertise", usage: "Raft address other servers use", apply: func(v string) { c.Raft.Advertise = v }},
		override{flag: "join", path: "raft.join", usage: "comma-separated API addresses of existing servers to join", apply: func(v string) { c.Raft.Join = splitList(v) }},
	)
}

// runServer runs `cyclerd server`: the Raft store, the API with forwarding,
// joining an existing cluster when told to, and the Consul registration.
func runServer(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, base, err := startRole("server", args, stderr, config.LoadServer, serverOverrides, func(c *config.Server) config.Log { return c.Log })
	if err != nil {
		return err
	}
	defer base.Sync() //nolint:errcheck // stderr sync errors are not actionable
	log := base.With(zap.String("node_id", cfg.NodeID))

	srv, err := newAPI(cfg.API, cfg.NodeID, log)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	raftAddr := cfg.Raft.Bind
	if cfg.Raft.Advertise != "" {
		raftAddr = cfg.Raft.Advertise
	}
	apiAddr := advertisedAPI(srv.Addr(), raftAddr)
	bootstrap := len(cfg.Raft.Join) == 0 && !cfg.Raft.Discover
	store, err := raftstore.New(raftstore.Config{
		NodeID: cfg.NodeID, DataDir: cfg.DataDir, BindAddr: cfg.Raft.Bind, AdvertiseAddr: cfg.Raft.Advertise,
		APIAddr: apiAddr, Bootstrap: bootstrap, Timing: cfg.Raft.Timing,
		SnapshotThreshold: cfg.Raft.SnapshotThreshold, SnapshotRetain: cfg.Raft.SnapshotRetain,
		Logger: base.Named("raftstore"), // raftstore adds node_id itself
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Shutdown(); err != nil {
			log.Warn("raft shutdown", zap.Error(err))
		}
	}()

	token, err := cfg.ResolvedClientToken(config.ScopeOperator)
	if err != nil && !bootstrap {
		return err // joining needs a token the other servers accept
	}
	peerTLS, err := peerTLSConfig(cfg.API.TLS)
	if err != nil {
		return err
	}
	peers := controller.NewPeers(cfg.NodeID, token, peerTLS)

	consul, err := discovery.NewClient(cfg.Consul)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	pkgs, err := pkgstore.New(pkgstore.Config{Dir: cfg.PackagesDir(), Keep: cfg.Packages.Keep,
		MaxUploadBytes: cfg.Packages.MaxUploadBytes, Logger: log.Named("pkgstore")})
	if err != nil {
		return err
	}
	// Without an agent token the server still runs; the host routes say
	// what is missing.
	agentToken, err := cfg.ResolvedAgentToken()
	if err != nil && !errors.Is(err, config.ErrNoAgentToken) {
		return err
	}
	mets := metrics.New()
	mets.RegisterRaft(func() metrics.RaftStats {
		st := store.Stats()
		return metrics.RaftStats{IsLeader: st.State == "Leader", Term: st.Term, LastIndex: st.LastIndex,
			AppliedIndex: st.AppliedIndex, Leader: st.LeaderID}
	})
	specs := serviceSpecs(cfg)
	orch := orchestrator.New(orchestrator.Config{
		Store:     store,
		Fleet:     &fleet.Client{Consul: consul, Token: agentToken, HTTP: peers.HTTP},
		Discovery: orchestrator.ConsulDiscovery{C: consul},
		Services:  func() map[string]orchestrator.Spec { return specs },
		Smoke:     smoke.New(log.Named("smoke"), nil),
		Logger:    log.Named("orchestrator"),
		Observer:  mets,
	})
	ctrl := controller.New(controller.Config{Store: store, Peers: peers, Logger: log.Named("controller"), Leave: stop, APIAddr: apiAddr, Consul: consul,
		Packages: pkgs, AgentToken: agentToken, Orchestrator: orch, Metrics: mets.Handler()})
	ctrl.Register(srv)
	store.OnLeader("package-gc", ctrl.RunPackageGC)
	store.OnLeader("orchestrator", orch.Run)
	handleVersion(srv, cfg.NodeID)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctrl.SyncPackages(ctx) // every server keeps every package's blob
	}()
	if !bootstrap {
		wg.Add(1)
		go func() {
			defer wg.Done()
			joinCluster(ctx, cfg, peers, api.JoinRequest{NodeID: cfg.NodeID, RaftAddr: raftAddr, APIAddr: apiAddr}, log.Named("join"))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		discovery.Maintain(ctx, consul, discovery.Registration{
			Service: pool.ServiceServer, ID: pool.ServiceServer + "-" + cfg.NodeID, Addr: apiAddr,
			Meta: map[string]string{"node_id": cfg.NodeID, "raft_addr": raftAddr, "api_addr": apiAddr},
		}, log.Named("discovery"))
	}()
	log.Info("server started", zap.String("api_addr", apiAddr), zap.String("raft_addr", raftAddr), zap.Bool("bootstrap", bootstrap))
	err = srv.Serve(ctx)
	stop()
	return err
}

// advertisedAPI is the API address other servers use for this one: the
// listen address, or the Raft host with the API port when listening on
// every interface.
func advertisedAPI(listen, raftAddr string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		rhost, _, _ := net.SplitHostPort(raftAddr)
		return net.JoinHostPort(rhost, port)
	}
	return listen
}

// joinCluster asks the servers in raft.join (or found through Consul) to add
// this one, until one accepts or ctx ends. A follower forwards the request
// to the leader. Joining is idempotent, so a restarted member does it again
// harmlessly.
func joinCluster(ctx context.Context, cfg *config.Server, peers *controller.Peers, req api.JoinRequest, log *zap.Logger) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		targets := cfg.Raft.Join
		if cfg.Raft.Discover {
			consul, err := discovery.NewClient(cfg.Consul)
			if err == nil {
				found, err := discovery.Peers(ctx, consul, pool.ServiceServer, "api_addr")
				if err != nil {
					log.Warn("discovering servers through consul", zap.Error(err))
				}
				targets = append(append([]string(nil), targets...), found...)
			}
		}
		var lastErr error
		for _, t := range targets {
			if t == req.APIAddr {
				continue
			}
			if lastErr = joinVia(ctx, peers, t, req); lastErr == nil {
				log.Info("joined the cluster", zap.String("via", t), zap.Int("attempt", attempt))
				return
			}
		}
		if lastErr == nil {
			lastErr = errors.New("no server to join: raft.join is empty and consul lists no other cyclerd server")
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("join failed; retrying", zap.Strings("targets", targets), zap.Int("attempt", attempt), zap.Error(lastErr))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + rand.N(backoff/2)):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func joinVia(ctx context.Context, peers *controller.Peers, target string, req api.JoinRequest) error {
	c, err := client.New(client.Config{Addr: schemeFor(target, peers.Scheme), Token: peers.Token, HTTPClient: peers.HTTP, Timeout: 15 * time.Second})
	if err != nil {
		return err
	}
	return c.Do(ctx, http.MethodPost, "/v1/cluster/join", req, nil)
}

// schemeFor adds scheme to a bare host:port; a URL is kept as written.
func schemeFor(addr, scheme string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return scheme + "://" + addr
}

// peerTLSConfig is the TLS a server uses toward other servers: it trusts
// the CA that signs client certificates when one is configured (servers of
// one cluster share a CA) and presents its own certificate, so peers that
// verify clients accept it.
func peerTLSConfig(t *config.TLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("peer TLS: reading api.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("peer TLS: api.tls.client_ca_file %s holds no PEM certificate", t.ClientCAFile)
		}
		tc.RootCAs = pool
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("peer TLS: loading the server certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Package discovery connects cyclerd to its local Consul agent: it builds the
// Consul client from config, keeps the daemon's own service registration alive
// (cyclerd, cyclerd-agent, cyclerd-lb), and finds peers through Consul.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/config"
)

// NewClient returns a Consul API client for cfg. The ACL token comes from
// the config or, when that is empty, from CONSUL_HTTP_TOKEN.
func NewClient(cfg config.Consul) (*consulapi.Client, error) {
	cc := consulapi.DefaultConfig()
	cc.Address = cfg.Address
	cc.Scheme = cfg.Scheme
	cc.Token = cfg.ResolvedToken()
	cc.Datacenter = cfg.Datacenter
	if cfg.TLS != nil {
		cc.TLSConfig.CAFile = cfg.TLS.CAFile
	}
	c, err := consulapi.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// Registration describes the daemon's own Consul service.
type Registration struct {
	// Service is the Consul service name, for example "cyclerd".
	Service string
	// ID is unique per agent, for example "cyclerd-s1".
	ID string
	// Addr is the daemon's API "host:port"; Consul checks it with a TCP check.
	Addr string
	// Meta carries role-specific facts, such as a server's Raft address.
	Meta map[string]string
}

// Interval between checks that the registration still exists. Consul in dev
// mode forgets every registration on restart, so the daemon must notice.
const checkEvery = 10 * time.Second

// Maintain registers reg with Consul and keeps it registered until ctx ends,
// then deregisters it. Consul being down is not fatal: the daemon keeps
// working, logs once per failure streak, and retries with capped backoff.
func Maintain(ctx context.Context, c *consulapi.Client, reg Registration, log *zap.Logger) {
	log = log.With(zap.String("consul_service", reg.Service), zap.String("consul_id", reg.ID))
	backoff := time.Second
	failing := false
	for {
		err := ensure(ctx, c, reg)
		wait := checkEvery
		switch {
		case err == nil && failing:
			log.Info("consul registration restored")
			failing, backoff = false, time.Second
		case err != nil && ctx.Err() == nil:
			if !failing {
				log.Warn("consul registration failing; retrying with backoff", zap.Error(err))
			}
			failing = true
			wait = backoff + rand.N(backoff/2+1)
			backoff = min(backoff*2, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := c.Agent().ServiceDeregisterOpts(reg.ID, (&consulapi.QueryOptions{}).WithContext(dctx)); err != nil {
				log.Warn("consul deregistration", zap.Error(err))
			}
			cancel()
			return
		case <-time.After(wait):
		}
	}
}

// ensure registers reg unless Consul already has it.
func ensure(ctx context.Context, c *consulapi.Client, reg Registration) error {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	svc, _, err := c.Agent().Service(reg.ID, q)
	if err == nil && svc != nil {
		return nil
	}
	var se consulapi.StatusError
	if err != nil && !(errors.As(err, &se) && se.Code == 404) {
		return fmt.Errorf("consul: read service %q: %w", reg.ID, err)
	}
	host, portS, err := net.SplitHostPort(reg.Addr)
	if err != nil {
		return fmt.Errorf("consul: registration address %q: %w", reg.Addr, err)
	}
	port, _ := strconv.Atoi(portS)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	asr := &consulapi.AgentServiceRegistration{
		ID: reg.ID, Name: reg.Service, Address: host, Port: port, Meta: reg.Meta,
		Check: &consulapi.AgentServiceCheck{
			Name:                           reg.Service + " api",
			TCP:                            net.JoinHostPort(host, portS),
			Interval:                       "5s",
			Timeout:                        "2s",
			DeregisterCriticalServiceAfter: "10m",
		},
	}
	if err := c.Agent().ServiceRegisterOpts(asr, consulapi.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: register %q: %w", reg.ID, err)
	}
	return nil
}

// Peers returns the Meta values under key of every passing instance of
// service, for example the Raft addresses of the other cyclerd servers.
func Peers(ctx context.Context, c *consulapi.Client, service, key string) ([]string, error) {
	entries, _, err := c.Health().Service(service, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list %s: %w", service, err)
	}
	var out []string
	for _, e := range entries {
		if v := e.Service.Meta[key]; v != "" {
			out = append(out, v)
		}
	}
	return out, nil
}

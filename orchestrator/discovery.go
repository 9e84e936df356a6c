package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/pool"
)

// LBInfo is one cyclerd-lb registration that serves a service.
type LBInfo struct {
	ID string `json:"id"`
	// FrontendURL is where clients reach the service through this LB; empty
	// when the LB did not register one (its probes are then skipped).
	FrontendURL string `json:"frontend_url,omitempty"`
	// Passing is Consul's verdict on the cyclerd lb process.
	Passing bool `json:"passing"`
}

// Discovery is what the orchestrator reads from and writes to Consul.
type Discovery interface {
	// Instances reads the app instances of service.
	Instances(ctx context.Context, service string) (pool.Instances, error)
	// PublishState writes the state document with check-and-set. It never
	// replaces a document of a higher generation.
	PublishState(ctx context.Context, service string, st pool.State) error
	// LBs lists the registered LBs that serve service.
	LBs(ctx context.Context, service string) ([]LBInfo, error)
	// Acks reads the acknowledgements of service, by LB id.
	Acks(ctx context.Context, service string) (map[string]lb.Ack, error)
}

// ErrNewerState is returned by PublishState when Consul already holds a
// higher generation than the one being published.
var ErrNewerState = errors.New("consul holds a newer state")

// ConsulDiscovery is Discovery on a real Consul agent.
type ConsulDiscovery struct{ C *consulapi.Client }

// Instances implements Discovery.
func (d ConsulDiscovery) Instances(ctx context.Context, service string) (pool.Instances, error) {
	return pool.ReadInstances(ctx, d.C, service)
}

// PublishState implements Discovery. It reads the key, and writes with CAS
// on the index it read, so a document written meanwhile (by an older
// leader that has not noticed yet) is never overwritten blindly; a lost
// race is retried on the fresh document.
func (d ConsulDiscovery) PublishState(ctx context.Context, service string, st pool.State) error {
	key := pool.StateKey(service)
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for range 5 {
		pair, _, err := d.C.KV().Get(key, (&consulapi.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: read %s: %w", key, err)
		}
		var idx uint64
		if pair != nil {
			idx = pair.ModifyIndex
			if cur, err := pool.ParseState(pair.Value); err == nil {
				if cur.Generation > st.Generation {
					return fmt.Errorf("consul: %s holds generation %d, above %d: %w", key, cur.Generation, st.Generation, ErrNewerState)
				}
				if string(pair.Value) == string(body) {
					return nil
				}
			}
		}
		ok, _, err := d.C.KV().CAS(&consulapi.KVPair{Key: key, Value: body, ModifyIndex: idx}, (&consulapi.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: write %s: %w", key, err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("consul: write %s: check-and-set kept losing to another writer", key)
}

// LBs implements Discovery.
func (d ConsulDiscovery) LBs(ctx context.Context, service string) ([]LBInfo, error) {
	entries, _, err := d.C.Health().Service(pool.ServiceLB, "", false, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list %s: %w", pool.ServiceLB, err)
	}
	var out []LBInfo
	for _, e := range entries {
		m := e.Service.Meta
		if m["lb_id"] == "" || !slices.Contains(strings.Split(m["services"], ","), service) {
			continue
		}
		out = append(out, LBInfo{ID: m["lb_id"], FrontendURL: m["frontend_"+service],
			Passing: e.Checks.AggregatedStatus() == consulapi.HealthPassing})
	}
	slices.SortFunc(out, func(a, b LBInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// AckWatcher is a Discovery that can wait for a service's
// acknowledgements to change instead of being polled for them.
type AckWatcher interface {
	// WatchAcks returns the acknowledgements of service, by LB id, once
	// their index differs from index or wait has passed (index 0 answers
	// at once), and the index to pass to the next call.
	WatchAcks(ctx context.Context, service string, index uint64, wait time.Duration) (map[string]lb.Ack, uint64, error)
}

// Acks implements Discovery.
func (d ConsulDiscovery) Acks(ctx context.Context, service string) (map[string]lb.Ack, error) {
	acks, _, err := d.WatchAcks(ctx, service, 0, 0)
	return acks, err
}

// WatchAcks implements AckWatcher with a Consul blocking query on the
// service's ack keys.
func (d ConsulDiscovery) WatchAcks(ctx context.Context, service string, index uint64, wait time.Duration) (map[string]lb.Ack, uint64, error) {
	prefix := pool.AckPrefix(service)
	q := &consulapi.QueryOptions{}
	if index > 0 {
		q.WaitIndex, q.WaitTime = index, wait
	}
	pairs, meta, err := d.C.KV().List(prefix, q.WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("consul: list %s: %w", prefix, err)
	}
	return parseAcks(prefix, pairs), meta.LastIndex, nil
}

// parseAcks decodes the ack keys under prefix, by LB id, skipping keys
// that are not an LB's ack.
func parseAcks(prefix string, pairs consulapi.KVPairs) map[string]lb.Ack {
	out := map[string]lb.Ack{}
	for _, p := range pairs {
		id := strings.TrimPrefix(p.Key, prefix)
		if id == "" || strings.Contains(id, "/") {
			continue
		}
		if a, err := lb.ParseAck(p.Value); err == nil {
			out[id] = a
		}
	}
	return out
}

var (
	_ Discovery  = ConsulDiscovery{}
	_ AckWatcher = ConsulDiscovery{}
)

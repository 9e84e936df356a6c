//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pool"
)

// latest keeps the newest value a watcher emitted.
type latest[T any] struct {
	mu sync.Mutex
	v  T
	n  int
}

func (l *latest[T]) set(v T) { l.mu.Lock(); l.v, l.n = v, l.n+1; l.mu.Unlock() }
func (l *latest[T]) get() (T, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v, l.n
}

// TestPoolWatchRealConsul watches a real Consul: the two pools of a service
// with health and maintenance, and the published state document.
func TestPoolWatchRealConsul(t *testing.T) {
	consul := harness.StartConsul(t)
	cc := consul.Client()
	apps := map[string]*harness.DemoApp{}
	for _, id := range []string{"web-blue-1", "web-green-1", "web-green-2"} {
		p := pool.Blue
		if id != "web-blue-1" {
			p = pool.Green
		}
		app := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v1", Instance: id, Pool: p})
		harness.RegisterInstance(t, cc, harness.Instance{Service: "web", ID: id, Pool: p, Version: "v1", Addr: app.Host, Port: app.Port})
		apps[id] = app
	}
	harness.WaitPassing(t, cc, "web", "web-blue-1", "web-green-1", "web-green-2")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var inst latest[pool.Instances]
	var state latest[pool.StateView]
	wg.Add(2)
	go func() { defer wg.Done(); pool.WatchInstances(ctx, cc, "web", inst.set, func(error) {}) }()
	go func() { defer wg.Done(); pool.WatchState(ctx, cc, "web", state.set, func(error) {}) }()

	waitFor(t, "three serving instances, one blue and two green", func() error {
		v, _ := inst.get()
		if len(v.Pool(pool.Blue)) != 1 || len(v.Pool(pool.Green)) != 2 {
			return fmt.Errorf("pools: %+v", v.All)
		}
		for _, in := range v.All {
			if !in.Serving() || in.Version != "v1" {
				return fmt.Errorf("instance %+v not serving v1", in)
			}
		}
		return nil
	})

	// Hiding is Consul service maintenance mode with cycler's reason.
	reason := pool.HiddenReason(7)
	if err := cc.Agent().EnableServiceMaintenance("web-green-1", reason); err != nil {
		harness.Fatal(t, err)
	}
	waitFor(t, "web-green-1 in maintenance with cycler's reason", func() error {
		v, _ := inst.get()
		for _, in := range v.All {
			if in.ID == "web-green-1" {
				if gen, ok := pool.ParseHiddenReason(in.MaintenanceReason); !in.Maintenance || in.Serving() || !ok || gen != 7 {
					return fmt.Errorf("instance %+v", in)
				}
				return nil
			}
		}
		return fmt.Errorf("web-green-1 missing")
	})
	if err := cc.Agent().DisableServiceMaintenance("web-green-1"); err != nil {
		harness.Fatal(t, err)
	}
	waitFor(t, "web-green-1 serving again", func() error {
		v, _ := inst.get()
		for _, in := range v.All {
			if in.ID == "web-green-1" && in.Serving() {
				return nil
			}
		}
		return fmt.Errorf("instances %+v", v.All)
	})

	// An app that dies fails its health check and stops serving.
	if err := apps["web-green-2"].Kill(); err != nil {
		harness.Fatal(t, err)
	}
	waitFor(t, "web-green-2 failing its check", func() error {
		v, _ := inst.get()
		for _, in := range v.All {
			if in.ID == "web-green-2" && !in.Passing {
				return nil
			}
		}
		return fmt.Errorf("instances %+v", v.All)
	})

	// The state document: absent, then published, then garbage (reported, not fatal).
	waitFor(t, "the state watch reports no state", func() error {
		if v, n := state.get(); n == 0 || v.Exists {
			return fmt.Errorf("view %+v after %d emits", v, n)
		}
		return nil
	})
	doc, _ := json.Marshal(pool.State{Generation: 2, Live: pool.Green, Hidden: []string{"web-blue-1"}})
	if _, err := cc.KV().Put(&consulapi.KVPair{Key: pool.StateKey("web"), Value: doc}, nil); err != nil {
		harness.Fatal(t, err)
	}
	waitFor(t, "the state watch sees generation 2", func() error {
		v, _ := state.get()
		if !v.Exists || v.Err != nil || v.State.Generation != 2 || v.State.Live != pool.Green {
			return fmt.Errorf("view %+v", v)
		}
		return nil
	})
	if _, err := cc.KV().Put(&consulapi.KVPair{Key: pool.StateKey("web"), Value: []byte("{not json")}, nil); err != nil {
		harness.Fatal(t, err)
	}
	waitFor(t, "the state watch reports the broken document", func() error {
		if v, _ := state.get(); v.Err == nil {
			return fmt.Errorf("view %+v", v)
		}
		return nil
	})
}

func waitFor(t *testing.T, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := harness.WaitFor(ctx, what, fn); err != nil {
		harness.Fatal(t, err)
	}
}

package orchestrator

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/raftstore"
	"github.com/cyclerhq/cycler/smoke"
)

// windowFleet is the simulated fleet with one slow host: its install
// waits until every other host of its pool has installed (or a deadline
// passes, which a deploy in batches hits: the batch of the slow host
// waits for it), and the installs in flight are counted.
type windowFleet struct {
	*simWorld
	slow    string
	release chan struct{}
	others  int // hosts of the slow host's pool besides it

	mu        sync.Mutex
	inflight  int
	peak      int
	passedBy  int // installs that finished before the slow one did
	slowDone  bool
	released  bool
	timedOut  bool
	installed int
}

func (f *windowFleet) Install(ctx context.Context, a fleet.Agent, digest string) (agent.InstallResult, error) {
	f.mu.Lock()
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	slow := a.Instance == f.slow
	f.mu.Unlock()
	if slow {
		select {
		case <-f.release:
		case <-time.After(30 * time.Second): // generous: only a batch-at-a-time deploy reaches it
			f.mu.Lock()
			f.timedOut = true
			f.mu.Unlock()
		case <-ctx.Done():
		}
	}
	res, err := f.simWorld.Install(ctx, a, digest)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	f.installed++
	if slow {
		f.slowDone = true
	}
	if !slow && !f.slowDone {
		f.passedBy++
		if f.passedBy == f.others && !f.released {
			f.released = true
			close(f.release)
		}
	}
	return res, err
}

// TestDeployDoesNotWaitForTheSlowestOfABatch checks that deploy keeps
// max_parallel installs going: the other hosts of the pool install while
// one host is slow, and never more than max_parallel run at once.
func TestDeployDoesNotWaitForTheSlowestOfABatch(t *testing.T) {
	tests := []struct {
		name        string
		maxParallel int
		perPool     int
	}{
		{name: "two at a time", maxParallel: 2, perPool: 6},
		{name: "three at a time", maxParallel: 3, perPool: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newSimWorld(t, tt.perPool, tt.perPool)
			spec := simSpec()
			spec.MaxParallel = tt.maxParallel
			f := &windowFleet{simWorld: w, slow: "web-blue-1", release: make(chan struct{}), others: tt.perPool - 1}
			r := &simRig{t: t, c: raftstore.NewTestCluster(t, 3), w: w, orchs: map[*raftstore.Store]*Orchestrator{}}
			for _, s := range r.c.Nodes() {
				o := New(Config{Store: s, Fleet: f, Discovery: w, Services: func() map[string]Spec { return map[string]Spec{"web": spec} },
					Smoke: smoke.New(nil, &http.Client{Timeout: 2 * time.Second}), Retry: 20 * time.Millisecond})
				r.orchs[s] = o
				s.OnLeader("orchestrator", o.Run)
			}
			c := r.deploy("v1", cycle.Done)
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.timedOut || f.passedBy != f.others {
				t.Errorf("%d of the other %d hosts installed while %s was slow (timed out: %t), want all", f.passedBy, f.others, f.slow, f.timedOut)
			}
			if f.peak > tt.maxParallel {
				t.Errorf("%d installs ran at once, more than max_parallel %d", f.peak, tt.maxParallel)
			}
			for _, h := range c.Hosts {
				if h.Deploy == nil || !h.Deploy.OK {
					t.Errorf("host %s: deploy %+v, want ok", h.Instance, h.Deploy)
				}
			}
		})
	}
}

package orchestrator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/lb"
)

// ackFeed is a Discovery (LBs and acks only) whose acks change when the
// test says so, with WatchAcks blocking like a Consul blocking query.
type ackFeed struct {
	Discovery // nil: only LBs, Acks and WatchAcks are called

	mu      sync.Mutex
	index   uint64
	acks    map[string]lb.Ack
	changed chan struct{}
	watches int
}

func newAckFeed(gen uint64) *ackFeed {
	return &ackFeed{index: 10, acks: map[string]lb.Ack{"lb-1": {Generation: gen}}, changed: make(chan struct{})}
}

// set changes the ack of lb-1 and wakes the watchers.
func (f *ackFeed) set(gen uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	f.acks = map[string]lb.Ack{"lb-1": {Generation: gen}}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *ackFeed) LBs(context.Context, string) ([]LBInfo, error) {
	return []LBInfo{{ID: "lb-1", Passing: true}}, nil
}

func (f *ackFeed) Acks(ctx context.Context, service string) (map[string]lb.Ack, error) {
	a, _, err := f.WatchAcks(ctx, service, 0, 0)
	return a, err
}

func (f *ackFeed) WatchAcks(ctx context.Context, _ string, index uint64, wait time.Duration) (map[string]lb.Ack, uint64, error) {
	f.mu.Lock()
	f.watches++
	if index == 0 || index != f.index {
		defer f.mu.Unlock()
		return f.acks, f.index, nil
	}
	ch := f.changed
	f.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(wait):
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acks, f.index, nil
}

func TestReadAcksWaitsForTheAck(t *testing.T) {
	tests := []struct {
		name string
		// ackAfter is when lb-1 acks generation 5; 0 means never.
		ackAfter   time.Duration
		wait       time.Duration
		wantBehind bool
		// wantWatches is the number of WatchAcks calls; 0 means any.
		wantWatches int
		minTook     time.Duration
	}{
		{name: "ack during the wait", ackAfter: 50 * time.Millisecond, wait: 5 * time.Second, wantBehind: false},
		{name: "no wait reads once", ackAfter: 0, wait: 0, wantBehind: true, wantWatches: 1},
		{name: "gives up after the wait", ackAfter: 0, wait: 100 * time.Millisecond, wantBehind: true, minTook: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAckFeed(4)
			o := &Orchestrator{cfg: Config{Discovery: f}}
			if tt.ackAfter > 0 {
				timer := time.AfterFunc(tt.ackAfter, func() { f.set(5) })
				defer timer.Stop()
			}
			start := time.Now()
			_, acks, behind, err := o.readAcks(t.Context(), "web", 5, tt.wait)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if (len(behind) > 0) != tt.wantBehind {
				t.Errorf("behind = %v (acks %v), want behind %t", behind, acks, tt.wantBehind)
			}
			if !tt.wantBehind && took > 2*time.Second {
				t.Errorf("took %s to see an ack sent after %s", took, tt.ackAfter)
			}
			if took < tt.minTook {
				t.Errorf("took %s, want at least the wait %s", took, tt.minTook)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if tt.wantWatches > 0 && f.watches != tt.wantWatches {
				t.Errorf("%d WatchAcks calls, want %d", f.watches, tt.wantWatches)
			}
		})
	}
}

func TestForEachBoundsConcurrency(t *testing.T) {
	tests := []struct{ n, limit int }{{n: 0, limit: 4}, {n: 1, limit: 4}, {n: 100, limit: 7}, {n: 10, limit: 0}}
	for _, tt := range tests {
		var running, peak atomic.Int32
		done := make([]bool, tt.n)
		forEach(tt.n, tt.limit, func(i int) {
			r := running.Add(1)
			for {
				p := peak.Load()
				if r <= p || peak.CompareAndSwap(p, r) {
					break
				}
			}
			time.Sleep(time.Millisecond) // hold the slot so calls overlap
			done[i] = true
			running.Add(-1)
		})
		for i, d := range done {
			if !d {
				t.Errorf("n=%d limit=%d: call %d did not run", tt.n, tt.limit, i)
			}
		}
		if p := int(peak.Load()); p > max(tt.limit, 1) {
			t.Errorf("n=%d limit=%d: %d calls at once", tt.n, tt.limit, p)
		}
	}
}

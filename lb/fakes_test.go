package lb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/pool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeDriver is an LB in memory: Apply stores the set, Applied returns it.
// It can fail applies, lie on read-back, block an apply and forget its set
// (an nginx restart).
type fakeDriver struct {
	mu      sync.Mutex
	gen     uint64
	set     []lbdrivers.Backend
	applies []uint64
	// failApplies makes that many next applies fail.
	failApplies int
	// lie makes Applied report one backend fewer than stored.
	lie bool
	// gate, when set, makes Apply wait for a value (or ctx) before storing.
	gate chan struct{}
	// entered receives the generation of each Apply as it starts, if set.
	entered chan uint64
}

var errApply = errors.New("lb is sulking")

func (d *fakeDriver) Name() string { return "fake" }

func (d *fakeDriver) Apply(ctx context.Context, gen uint64, set []lbdrivers.Backend) error {
	d.mu.Lock()
	gate, entered := d.gate, d.entered
	d.mu.Unlock()
	if entered != nil {
		entered <- gen
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.applies = append(d.applies, gen)
	if len(set) == 0 {
		return errors.New("fake driver: empty set applied; invariant 1 is broken")
	}
	if d.failApplies > 0 {
		d.failApplies--
		return errApply
	}
	d.gen, d.set = gen, lbdrivers.Sorted(set)
	return nil
}

func (d *fakeDriver) Applied(context.Context) (uint64, []lbdrivers.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	set := append([]lbdrivers.Backend(nil), d.set...)
	if d.lie && len(set) > 0 {
		set = set[1:]
	}
	return d.gen, set, nil
}

// forget drops the stored set, as nginx does on a restart.
func (d *fakeDriver) forget() {
	d.mu.Lock()
	d.gen, d.set = 0, nil
	d.mu.Unlock()
}

func (d *fakeDriver) appliedGens() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint64(nil), d.applies...)
}

func (d *fakeDriver) with(f func(d *fakeDriver)) {
	d.mu.Lock()
	f(d)
	d.mu.Unlock()
}

// fakeStore records acks; it can be made to fail like an unreachable Consul.
type fakeStore struct {
	mu     sync.Mutex
	acks   map[string]Ack
	puts   int
	down   bool
	pinged int
}

var errConsulDown = errors.New("consul: connection refused")

func (s *fakeStore) PutAck(_ context.Context, key string, a Ack) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errConsulDown
	}
	if s.acks == nil {
		s.acks = map[string]Ack{}
	}
	s.acks[key], s.puts = a, s.puts+1
	return nil
}

func (s *fakeStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinged++
	if s.down {
		return errConsulDown
	}
	return nil
}

func (s *fakeStore) ack(key string) (Ack, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.acks[key]
	return a, ok
}

func (s *fakeStore) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// instance builds a serving instance of service web.
func instance(id string, p pool.Pool, port int) pool.Instance {
	return pool.Instance{ID: id, Address: "10.0.0.1", Port: port, Pool: p, Version: "v1", Passing: true}
}

// fleet is two blue and two green serving instances.
func fleet() []pool.Instance {
	return []pool.Instance{
		instance("web-blue-1", pool.Blue, 8001), instance("web-blue-2", pool.Blue, 8002),
		instance("web-green-1", pool.Green, 8003), instance("web-green-2", pool.Green, 8004),
	}
}

// stateView is a published state with live pool p at gen.
func stateView(gen uint64, p pool.Pool, hidden ...string) pool.StateView {
	return pool.StateView{Exists: true, State: pool.State{Generation: gen, Live: p, Hidden: hidden}, Index: gen}
}

// harness runs a Reconciler over fakes until the test ends.
type harness struct {
	t     *testing.T
	r     *Reconciler
	d     *fakeDriver
	s     *fakeStore
	key   string
	stop  context.CancelFunc
	doneC chan struct{}
}

func start(t *testing.T, d *fakeDriver, minLive int, verify time.Duration) *harness {
	t.Helper()
	s := &fakeStore{}
	r, err := New(Config{Service: "web", LBID: "lb-1", MinLive: minLive, Driver: d, Store: s,
		VerifyInterval: verify, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, r: r, d: d, s: s, key: pool.AckKey("web", "lb-1"), stop: cancel, doneC: make(chan struct{})}
	go func() {
		defer close(h.doneC)
		r.Run(ctx)
	}()
	t.Cleanup(h.close)
	return h
}

// close stops the loop and waits for it: goleak checks nothing is left.
func (h *harness) close() {
	h.stop()
	<-h.doneC
}

// waitUntil polls cond until it returns nil, failing the test after 10s.
func (h *harness) waitUntil(what string, cond func() error) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waiting for %s: %v\nstatus: %+v", what, err, h.r.Status())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitAck waits for an ack of gen holding exactly ids.
func (h *harness) waitAck(gen uint64, ids ...string) Ack {
	h.t.Helper()
	var got Ack
	h.waitUntil(fmt.Sprintf("ack of generation %d with %v", gen, ids), func() error {
		a, ok := h.s.ack(h.key)
		if !ok {
			return errors.New("no ack")
		}
		got = a
		if a.Generation != gen || len(a.Backends) != len(ids) {
			return fmt.Errorf("ack %+v", a)
		}
		for i, b := range lbdrivers.Sorted(a.Backends) {
			if b.ID != ids[i] {
				return fmt.Errorf("ack %+v", a)
			}
		}
		return nil
	})
	return got
}

package lb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/pool"
)

func TestDesired(t *testing.T) {
	maint := func(in pool.Instance) pool.Instance { in.Maintenance, in.Passing = true, false; return in }
	failing := func(in pool.Instance) pool.Instance { in.Passing = false; return in }
	f := fleet()
	green := inputs{haveState: true, state: pool.State{Generation: 4, Live: pool.Green}, haveInst: true, inst: pool.Instances{All: f}}
	tests := []struct {
		name        string
		give        inputs
		minLive     int
		wantIDs     []string
		wantWaiting string
		wantRefused string
	}{
		{name: "no state", give: inputs{haveInst: true, inst: pool.Instances{All: f}}, minLive: 1,
			wantWaiting: "waiting for the leader to publish cycler/web/state"},
		{name: "no instances yet", give: inputs{haveState: true, state: green.state}, minLive: 1,
			wantWaiting: "waiting for Consul to report the instances"},
		{name: "live pool only", give: green, minLive: 2, wantIDs: []string{"web-green-1", "web-green-2"}},
		{name: "blue live", give: inputs{haveState: true, state: pool.State{Generation: 5, Live: pool.Blue}, haveInst: true, inst: pool.Instances{All: f}},
			minLive: 1, wantIDs: []string{"web-blue-1", "web-blue-2"}},
		{name: "hidden by the state", give: inputs{haveState: true, state: pool.State{Generation: 4, Live: pool.Green, Hidden: []string{"web-green-2"}},
			haveInst: true, inst: pool.Instances{All: f}}, minLive: 1, wantIDs: []string{"web-green-1"}},
		{name: "maintenance and failing left out", give: inputs{haveState: true, state: green.state, haveInst: true,
			inst: pool.Instances{All: []pool.Instance{f[0], f[1], maint(f[2]), f[3]}}}, minLive: 1, wantIDs: []string{"web-green-2"}},
		{name: "too few", give: inputs{haveState: true, state: green.state, haveInst: true,
			inst: pool.Instances{All: []pool.Instance{f[0], f[1], failing(f[2]), f[3]}}}, minLive: 2,
			wantRefused: "generation 4: 1 serving backends in live pool green, fewer than min_live 2 (2 instances in the pool: 0 hidden by the leader, 0 in maintenance, 1 failing checks)"},
		{name: "empty", give: inputs{haveState: true, state: pool.State{Generation: 4, Live: pool.Green, Hidden: []string{"web-green-1"}}, haveInst: true,
			inst: pool.Instances{All: []pool.Instance{f[0], f[1], f[2], maint(f[3])}}}, minLive: 1,
			wantRefused: "generation 4: 0 serving backends in live pool green, fewer than min_live 1 (2 instances in the pool: 1 hidden by the leader, 1 in maintenance, 0 failing checks)"},
		{name: "no instance in the live pool", give: inputs{haveState: true, state: green.state, haveInst: true,
			inst: pool.Instances{All: f[:2]}}, minLive: 1,
			wantRefused: "0 serving backends in live pool green, fewer than min_live 1 (0 instances in the pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := desired("web", tt.minLive, tt.give)
			var ids []string
			for _, b := range p.backends {
				ids = append(ids, b.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("backends %v; want %v", ids, tt.wantIDs)
			}
			if !strings.Contains(p.waiting, tt.wantWaiting) || (tt.wantWaiting == "") != (p.waiting == "") {
				t.Errorf("waiting %q; want it to contain %q", p.waiting, tt.wantWaiting)
			}
			if !strings.Contains(p.refused, tt.wantRefused) || (tt.wantRefused == "") != (p.refused == "") {
				t.Errorf("refused %q; want it to contain %q", p.refused, tt.wantRefused)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want string
	}{
		{"min_live 0", Config{Service: "web", LBID: "lb", Driver: &fakeDriver{}, Store: &fakeStore{}}, "min_live 0"},
		{"no driver", Config{Service: "web", LBID: "lb", MinLive: 1, Store: &fakeStore{}}, "a driver and a store"},
		{"no service", Config{LBID: "lb", MinLive: 1, Driver: &fakeDriver{}, Store: &fakeStore{}}, "must both be set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.give); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNoStateAppliesNothing(t *testing.T) {
	h := start(t, &fakeDriver{}, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(pool.StateView{Exists: false})
	h.waitUntil("the waiting status", func() error {
		if st := h.r.Status(); st.Waiting != "waiting for the leader to publish cycler/web/state" {
			return fmt.Errorf("waiting %q", st.Waiting)
		}
		return nil
	})
	h.close()
	if got := h.d.appliedGens(); len(got) != 0 {
		t.Errorf("applied %v with no state published", got)
	}
	if a, ok := h.s.ack(h.key); ok {
		t.Errorf("acked %+v with no state published", a)
	}
}

func TestApplyVerifyAck(t *testing.T) {
	h := start(t, &fakeDriver{}, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(1, pool.Green, "web-blue-1", "web-blue-2"))
	a := h.waitAck(1, "web-green-1", "web-green-2")
	if a.Driver != "fake" || a.AppliedAt.IsZero() || a.CheckedAt.IsZero() || a.LastError != "" || a.Refused != "" {
		t.Errorf("ack %+v", a)
	}
	st := h.r.Status()
	if !st.InSync || st.Generation != 1 || st.Published != 1 || st.Live != pool.Green || len(st.Backends) != 2 {
		t.Errorf("status %+v", st)
	}

	// The switch back: a new generation moves the LB and the ack.
	h.r.SetState(stateView(2, pool.Blue, "web-green-1", "web-green-2"))
	h.waitAck(2, "web-blue-1", "web-blue-2")

	// A live instance leaving (maintenance) shrinks the set within the generation.
	f := fleet()
	f[1].Maintenance, f[1].Passing = true, false
	h.r.SetInstances(pool.Instances{All: f})
	h.r.SetState(stateView(2, pool.Blue, "web-green-1", "web-green-2"))
	h.waitUntil("the smaller set", func() error {
		a, _ := h.s.ack(h.key)
		if a.Generation != 2 || len(a.Backends) != 1 || a.Backends[0].ID != "web-blue-1" {
			return fmt.Errorf("ack %+v", a)
		}
		return nil
	})
	h.close()
	if got := h.d.appliedGens(); !slices.Equal(got, []uint64{1, 2, 2}) {
		t.Errorf("applied generations %v; want [1 2 2]", got)
	}
}

func TestRefusesTooFewAndKeepsLastGood(t *testing.T) {
	h := start(t, &fakeDriver{}, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(3, pool.Green, "web-blue-1", "web-blue-2"))
	good := h.waitAck(3, "web-green-1", "web-green-2")

	// Every live instance goes into maintenance: zero backends.
	f := fleet()
	for i := 2; i < 4; i++ {
		f[i].Maintenance, f[i].Passing = true, false
	}
	h.r.SetInstances(pool.Instances{All: f})
	h.waitUntil("the refusal in the ack", func() error {
		a, _ := h.s.ack(h.key)
		if a.Refused == "" || !strings.HasPrefix(a.LastError, "refused: generation 3: 0 serving backends") {
			return fmt.Errorf("ack %+v", a)
		}
		if a.Generation != 3 || !sameSet(a.Backends, good.Backends) || !a.AppliedAt.Equal(good.AppliedAt) {
			return fmt.Errorf("the ack moved: %+v, was %+v", a, good)
		}
		return nil
	})
	// A new generation with nothing serving is refused too, and not acked.
	h.r.SetState(stateView(4, pool.Blue, "web-green-1", "web-green-2", "web-blue-1", "web-blue-2"))
	h.waitUntil("the refusal of generation 4", func() error {
		st := h.r.Status()
		if !strings.Contains(st.Refused, "generation 4") || st.Generation != 3 || st.InSync {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if a, _ := h.s.ack(h.key); a.Generation != 3 {
		t.Errorf("acked generation %d during a refusal; want 3", a.Generation)
	}

	// Recovery clears the refusal.
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(5, pool.Blue))
	a := h.waitAck(5, "web-blue-1", "web-blue-2")
	if a.Refused != "" || a.LastError != "" {
		t.Errorf("ack after recovery %+v", a)
	}
	h.close()
	if got := h.d.appliedGens(); !slices.Equal(got, []uint64{3, 5}) {
		t.Errorf("applied generations %v; want [3 5]", got)
	}
}

func TestRefusalBeforeAnyApplyReportsGenerationZero(t *testing.T) {
	h := start(t, &fakeDriver{}, 3, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(1, pool.Green))
	h.waitUntil("an ack reporting the refusal", func() error {
		a, ok := h.s.ack(h.key)
		if !ok || a.Generation != 0 || len(a.Backends) != 0 || a.Backends == nil || !strings.Contains(a.Refused, "fewer than min_live 3") {
			return fmt.Errorf("ack %+v (present %v)", a, ok)
		}
		return nil
	})
}

func TestApplyErrorIsVisibleAndRetried(t *testing.T) {
	d := &fakeDriver{failApplies: 3}
	h := start(t, d, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(7, pool.Green))
	h.waitAck(7, "web-green-1", "web-green-2")
	if got := d.appliedGens(); !slices.Equal(got, []uint64{7, 7, 7, 7}) {
		t.Errorf("applies %v; want three failures and a success", got)
	}
	if st := h.r.Status(); st.LastError != "" || !st.InSync {
		t.Errorf("status after the retry succeeded: %+v", st)
	}

	// While applies fail, the ack keeps generation 7 and carries the error.
	d.with(func(d *fakeDriver) { d.failApplies = 1 << 30 })
	h.r.SetState(stateView(8, pool.Blue))
	h.waitUntil("the error in the ack", func() error {
		a, _ := h.s.ack(h.key)
		if a.Generation != 7 || !strings.Contains(a.LastError, errApply.Error()) || a.LastErrorAt.IsZero() {
			return fmt.Errorf("ack %+v", a)
		}
		return nil
	})
	d.with(func(d *fakeDriver) { d.failApplies = 0 })
	h.waitAck(8, "web-blue-1", "web-blue-2")
}

func TestReadBackMismatchIsNotAcked(t *testing.T) {
	d := &fakeDriver{lie: true}
	h := start(t, d, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(2, pool.Green))
	h.waitUntil("the read-back error", func() error {
		if st := h.r.Status(); !strings.Contains(st.LastError, ErrReadBack.Error()) || st.Generation != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if a, _ := h.s.ack(h.key); a.Generation != 0 {
		t.Fatalf("acked generation %d although the read-back differed", a.Generation)
	}
	d.with(func(d *fakeDriver) { d.lie = false })
	h.waitAck(2, "web-green-1", "web-green-2")
}

func TestDriftRepair(t *testing.T) {
	d := &fakeDriver{}
	h := start(t, d, 1, 5*time.Millisecond)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(9, pool.Green))
	first := h.waitAck(9, "web-green-1", "web-green-2")
	h.waitUntil("checked_at refreshed", func() error {
		if a, _ := h.s.ack(h.key); !a.CheckedAt.After(first.CheckedAt) {
			return errors.New("checked_at did not move")
		}
		return nil
	})

	// nginx restarted: the LB lost its set. The next check applies it again.
	d.forget()
	h.waitUntil("the set restored", func() error {
		if gen, set, _ := d.Applied(t.Context()); gen != 9 || len(set) != 2 {
			return fmt.Errorf("LB holds generation %d with %d backends", gen, len(set))
		}
		return nil
	})

	// While the desired set is refused, a restart restores the last good set.
	f := fleet()
	for i := 2; i < 4; i++ {
		f[i].Maintenance, f[i].Passing = true, false
	}
	h.r.SetInstances(pool.Instances{All: f})
	h.waitUntil("the refusal", func() error {
		if st := h.r.Status(); st.Refused == "" {
			return errors.New("not refused yet")
		}
		return nil
	})
	d.forget()
	h.waitUntil("the last good set restored", func() error {
		gen, set, _ := d.Applied(t.Context())
		if gen != 9 || len(set) != 2 || set[0].ID != "web-green-1" {
			return fmt.Errorf("LB holds generation %d with %v", gen, set)
		}
		return nil
	})
}

func TestBurstsCoalesce(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{}), entered: make(chan uint64, 16)}
	h := start(t, d, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(1, pool.Green))
	if gen := <-d.entered; gen != 1 {
		t.Fatalf("first apply of generation %d; want 1", gen)
	}
	// While generation 1 is being applied, nine more arrive.
	for gen := uint64(2); gen <= 10; gen++ {
		p := pool.Blue
		if gen%2 == 1 {
			p = pool.Green
		}
		h.r.SetState(stateView(gen, p))
	}
	d.gate <- struct{}{}
	if gen := <-d.entered; gen != 10 {
		t.Fatalf("next apply of generation %d; want 10, the newest", gen)
	}
	d.gate <- struct{}{}
	h.waitAck(10, "web-blue-1", "web-blue-2")
	h.close()
	if got := d.appliedGens(); !slices.Equal(got, []uint64{1, 10}) {
		t.Errorf("applied generations %v; want [1 10]", got)
	}
}

func TestConsulDownKeepsTheSetAndReportsStaleness(t *testing.T) {
	h := start(t, &fakeDriver{}, 1, 5*time.Millisecond)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(1, pool.Green))
	h.waitAck(1, "web-green-1", "web-green-2")

	h.s.setDown(true)
	h.r.ConsulError(errConsulDown)
	h.waitUntil("staleness reported", func() error {
		st := h.r.Status()
		if st.ConsulError == "" || st.StalenessSeconds <= 0 || st.LastConsulContact.IsZero() {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if gen, set, _ := h.d.Applied(t.Context()); gen != 1 || len(set) != 2 {
		t.Fatalf("the LB changed while Consul was down: generation %d, %v", gen, set)
	}
	h.s.setDown(false)
	h.waitUntil("consul reachable again", func() error {
		if st := h.r.Status(); st.ConsulError != "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

func TestAdoptsWhatTheLBServesAtStart(t *testing.T) {
	d := &fakeDriver{gen: 6, set: []lbdrivers.Backend{{ID: "web-green-1", Address: "10.0.0.1", Port: 8003}}}
	h := start(t, d, 2, time.Hour)
	// The only published state is refused (min_live 2, one serving): the
	// ack must still name the generation the LB really serves.
	f := fleet()
	f[3].Passing = false
	h.r.SetInstances(pool.Instances{All: f})
	h.r.SetState(stateView(7, pool.Green))
	h.waitUntil("the refusal acked with the adopted generation", func() error {
		a, _ := h.s.ack(h.key)
		if a.Generation != 6 || len(a.Backends) != 1 || a.Refused == "" {
			return fmt.Errorf("ack %+v", a)
		}
		return nil
	})
	h.close()
	if got := d.appliedGens(); len(got) != 0 {
		t.Errorf("applied %v during a refusal", got)
	}
}

func TestBadStateDocumentKeepsTheLastGood(t *testing.T) {
	h := start(t, &fakeDriver{}, 1, time.Hour)
	h.r.SetInstances(pool.Instances{All: fleet()})
	h.r.SetState(stateView(1, pool.Green))
	h.waitAck(1, "web-green-1", "web-green-2")
	h.r.SetState(pool.StateView{Exists: true, Err: errors.New("cycler/web/state: state document: unexpected end of JSON input")})
	h.waitUntil("the state error", func() error {
		if st := h.r.Status(); st.StateError == "" || st.Published != 1 || !st.InSync {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

func TestWatchWithoutConsulReportsAndStops(t *testing.T) {
	// Nothing listens on port 1: every blocking query fails at once.
	c, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1", Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, &fakeDriver{}, 1, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.r.Watch(ctx, c)
	}()
	h.waitUntil("the consul error in the status", func() error {
		st := h.r.Status()
		if !strings.Contains(st.ConsulError, "connection refused") || !st.LastConsulContact.IsZero() || st.StalenessSeconds <= 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	cancel()
	<-done
	if got := h.d.appliedGens(); len(got) != 0 {
		t.Errorf("applied %v without Consul", got)
	}
}

package raftstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

func breakerSettings() gobreaker.Settings {
	return gobreaker.Settings{
		Name:        "web",
		Timeout:     time.Hour, // stays open for the whole test
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
	}
}

func newBreaker(t *testing.T, s *Store) *gobreaker.DistributedCircuitBreaker[struct{}] {
	t.Helper()
	cb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](s.Breakers(), breakerSettings())
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

func TestBreakerSurvivesFailover(t *testing.T) {
	c := NewTestCluster(t, 3)
	old := c.Leader()
	cb := newBreaker(t, old)
	errDeploy := errors.New("deploy failed")
	for range 3 {
		if _, err := cb.Execute(func() (struct{}, error) { return struct{}{}, errDeploy }); !errors.Is(err, errDeploy) {
			t.Fatalf("Execute = %v, want the request's error", err)
		}
	}
	if st, err := cb.State(); err != nil || st != gobreaker.StateOpen {
		t.Fatalf("state on the old leader = %v (%v), want open", st, err)
	}
	c.WaitReplicated()

	c.Kill(old)
	leader := c.WaitLeader()
	cb2 := newBreaker(t, leader)
	if st, err := cb2.State(); err != nil || st != gobreaker.StateOpen {
		t.Fatalf("state on the new leader = %v (%v), want open", st, err)
	}
	ran := false
	_, err := cb2.Execute(func() (struct{}, error) { ran = true; return struct{}{}, nil })
	if !errors.Is(err, gobreaker.ErrOpenState) || ran {
		t.Fatalf("Execute on the new leader = %v (ran %v), want ErrOpenState without running", err, ran)
	}
}

func TestBreakerStoreOnFollower(t *testing.T) {
	c := NewTestCluster(t, 3)
	newBreaker(t, c.Leader()) // creates the shared state
	c.WaitReplicated()
	b := c.Followers()[0].Breakers()

	data, err := b.GetData("gobreaker:state:web")
	if err != nil || len(data) == 0 {
		t.Fatalf("GetData on a follower = %q, %v; want the replicated state", data, err)
	}
	if err := b.SetData("gobreaker:state:web", []byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("SetData on a follower: err = %v, want ErrNotLeader", err)
	}
}

func TestBreakerStoreLocks(t *testing.T) {
	c := NewTestCluster(t, 1)
	b := c.Leader().Breakers()
	if b != c.Leader().Breakers() {
		t.Fatal("Breakers returned a second BreakerStore; locks would not be shared")
	}
	if err := b.Unlock("a"); err == nil || !strings.Contains(err.Error(), "not held") {
		t.Fatalf("Unlock of a free lock: err = %v", err)
	}
	if err := b.Lock("a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock("b"); err != nil {
		t.Fatalf("locks are not per name: %v", err)
	}

	acquired := make(chan error, 1)
	go func() { acquired <- b.Lock("a") }()
	select {
	case err := <-acquired:
		t.Fatalf("second Lock of a held name returned %v before Unlock", err)
	default:
	}
	if err := b.Unlock("a"); err != nil {
		t.Fatal(err)
	}
	if err := <-acquired; err != nil {
		t.Fatalf("waiting Lock: %v", err)
	}
	for _, name := range []string{"a", "b"} {
		if err := b.Unlock(name); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBreakerResetByDeletingData(t *testing.T) {
	c := NewTestCluster(t, 1)
	s := c.Leader()
	cb := newBreaker(t, s)
	for range 3 {
		cb.Execute(func() (struct{}, error) { return struct{}{}, errors.New("boom") })
	}
	if err := s.SetBreakerData(testCtx(t), "gobreaker:state:web", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.BreakerData("gobreaker:state:web"); ok {
		t.Fatal("breaker data still present after delete")
	}
	if st, err := newBreaker(t, s).State(); err != nil || st != gobreaker.StateClosed {
		t.Fatalf("state after reset = %v (%v), want closed", st, err)
	}
}

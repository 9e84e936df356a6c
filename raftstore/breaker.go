package raftstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerTimeout bounds how long a BreakerStore call waits for a per-name
// lock or for a write to commit. gobreaker's SharedDataStore methods take no
// context, so this stands in for one.
const BreakerTimeout = 5 * time.Second

// ErrBreakerLockTimeout is returned by BreakerStore.Lock when the name stays
// locked for BreakerTimeout. gobreaker retries Lock for a few seconds.
var ErrBreakerLockTimeout = errors.New("breaker lock timed out")

// BreakerStore implements gobreaker.SharedDataStore on the replicated state,
// so a gobreaker.DistributedCircuitBreaker's counts and state survive leader
// failover. Get one with Store.Breakers; use it from OnLeader hooks.
//
//   - GetData reads this node's replicated state.
//   - SetData commits a BreakerData command; it fails with ErrNotLeader on a
//     follower.
//   - Lock and Unlock serialise gobreaker's read-modify-write per name with a
//     local lock. That is enough because only the leader can write: a
//     follower's, or a deposed leader's, SetData cannot commit, since Raft
//     commits an entry only with a quorum that follows the current leader.
//     So the only writers that can succeed all run in one process, where the
//     local lock orders them. And the OnLeader Barrier makes the new leader's
//     GetData see every write the old leader committed.
type BreakerStore struct {
	s     *Store
	mu    sync.Mutex
	locks map[string]chan struct{} // a 1-slot semaphore per name
}

// Breakers returns the Store's BreakerStore. There is one per Store so every
// breaker shares the same locks.
func (s *Store) Breakers() *BreakerStore {
	s.breakersOnce.Do(func() {
		s.breakers = &BreakerStore{s: s, locks: map[string]chan struct{}{}}
	})
	return s.breakers
}

func (b *BreakerStore) sem(name string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch, ok := b.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		b.locks[name] = ch
	}
	return ch
}

// Lock implements gobreaker.SharedDataStore. It blocks while another caller
// holds name, up to BreakerTimeout.
func (b *BreakerStore) Lock(name string) error {
	timer := time.NewTimer(BreakerTimeout)
	defer timer.Stop()
	select {
	case b.sem(name) <- struct{}{}:
		return nil
	case <-timer.C:
		return fmt.Errorf("raftstore: breaker %q: %w after %s", name, ErrBreakerLockTimeout, BreakerTimeout)
	case <-b.s.shutdownCh:
		return fmt.Errorf("raftstore: breaker %q: lock: %w", name, ErrShutdown)
	}
}

// Unlock implements gobreaker.SharedDataStore.
func (b *BreakerStore) Unlock(name string) error {
	select {
	case <-b.sem(name):
		return nil
	default:
		return fmt.Errorf("raftstore: breaker %q: unlock of a lock that is not held", name)
	}
}

// GetData implements gobreaker.SharedDataStore. A missing name yields nil
// data, which gobreaker takes as "no shared state yet".
func (b *BreakerStore) GetData(name string) ([]byte, error) {
	data, _ := b.s.BreakerData(name)
	return data, nil
}

// SetData implements gobreaker.SharedDataStore by committing data through
// Raft. On a follower it returns an error wrapping ErrNotLeader.
func (b *BreakerStore) SetData(name string, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), BreakerTimeout)
	defer cancel()
	return b.s.SetBreakerData(ctx, name, data)
}

var _ gobreaker.SharedDataStore = (*BreakerStore)(nil)

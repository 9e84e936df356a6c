package raftstore

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Leader-only work (cycles, cron schedules, breakers) hangs off OnLeader.
//
// Lifecycle of one term of leadership on this node:
//
//  1. raft reports the gain on Config.NotifyCh (not LeaderCh, which is
//     best-effort and can drop transitions).
//  2. A Barrier commits, so this node's state holds every entry committed
//     by earlier leaders before any hook looks at it. A failed barrier is
//     retried until it succeeds or leadership ends.
//  3. Every registered hook starts in its own goroutine with a context that
//     is cancelled the moment raft reports the loss (or Shutdown starts).
//  4. The next term's hooks start only after all of this term's hooks have
//     returned, so two generations of leader loops never overlap on a node.
//
// Hooks must return promptly once ctx is done. A hook may also return early
// (one-shot work); it then runs again on the next term.

// leadershipState is embedded in Store.
type leadershipState struct {
	// mu guards everything below. Never held while waiting on hooks.
	mu     sync.Mutex
	hooks  []leaderHook
	term   *leaderTerm // the current term of leadership, nil when not leading
	want   bool        // latest leadership value raft reported
	epoch  uint64      // incremented on every reported gain
	kickCh chan struct{}
}

type leaderHook struct {
	name string
	fn   func(ctx context.Context)
}

// leaderTerm is one continuous period of leadership.
type leaderTerm struct {
	epoch  uint64
	ctx    context.Context
	cancel context.CancelFunc
	ready  bool           // barrier done and hooks started
	wg     sync.WaitGroup // the establishing goroutine plus running hooks
}

func (l *leadershipState) init() {
	l.kickCh = make(chan struct{}, 1)
}

// OnLeader registers fn to run whenever this node is the leader, after a
// Barrier, with a ctx cancelled when leadership is lost or the store shuts
// down. If this node is leading already, fn starts at once. name appears in
// logs.
func (s *Store) OnLeader(name string, fn func(ctx context.Context)) {
	s.leadershipState.mu.Lock()
	defer s.leadershipState.mu.Unlock()
	h := leaderHook{name: name, fn: fn}
	s.hooks = append(s.hooks, h)
	// runLeadership clears s.term under mu before waiting on its WaitGroup,
	// so adding to a current term's WaitGroup here cannot race that Wait.
	if t := s.term; t != nil && t.ready && t.ctx.Err() == nil {
		s.startHook(t, h)
	}
}

// watchLeadership drains raft's NotifyCh promptly (raft blocks on it) and
// records the latest value. It cancels the current term's ctx right away on a
// loss, so hooks stop at once even while runLeadership is busy, then wakes
// runLeadership to reconcile.
func (s *Store) watchLeadership() {
	defer s.bg.Done()
	for {
		select {
		case isLeader := <-s.notifyCh:
			s.leadershipState.mu.Lock()
			s.want = isLeader
			if isLeader {
				s.epoch++
			} else if s.term != nil {
				s.term.cancel()
			}
			s.leadershipState.mu.Unlock()
			select {
			case s.kickCh <- struct{}{}:
			default: // a wake-up is already pending; it will see this value
			}
		case <-s.shutdownCh:
			return
		}
	}
}

// runLeadership starts and stops terms of leadership to match what raft
// reported. Waiting for a term's hooks to return happens here, off the
// NotifyCh path, so slow hooks never block raft.
func (s *Store) runLeadership() {
	defer s.bg.Done()
	for {
		select {
		case <-s.kickCh:
		case <-s.shutdownCh:
			s.endTerm()
			return
		}
		s.leadershipState.mu.Lock()
		t := s.term
		// A changed epoch means leadership was lost and regained since t
		// began: t's ctx is already cancelled and a new term must start.
		stale := t != nil && (!s.want || t.epoch != s.epoch)
		s.leadershipState.mu.Unlock()
		if stale {
			s.endTerm()
		}
		s.leadershipState.mu.Lock()
		if s.want && s.term == nil {
			s.beginTermLocked()
		}
		s.leadershipState.mu.Unlock()
	}
}

// beginTermLocked starts a term: barrier first, then hooks. Requires mu.
func (s *Store) beginTermLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{epoch: s.epoch, ctx: ctx, cancel: cancel}
	s.term = t
	s.log.Info("leadership gained", zap.Uint64("term", s.raft.CurrentTerm()))
	t.wg.Add(1)
	go s.establish(t)
}

// endTerm cancels the current term and waits for its hooks to return.
func (s *Store) endTerm() {
	s.leadershipState.mu.Lock()
	t := s.term
	s.term = nil
	s.leadershipState.mu.Unlock()
	if t == nil {
		return
	}
	t.cancel()
	t.wg.Wait()
	s.log.Info("leadership relinquished; leader hooks stopped")
}

// establish waits for a successful barrier, then starts the hooks.
func (s *Store) establish(t *leaderTerm) {
	defer t.wg.Done()
	backoff := s.cfg.raftConfig().HeartbeatTimeout
	for {
		err := s.Barrier(t.ctx)
		if err == nil {
			break
		}
		if t.ctx.Err() != nil {
			return
		}
		s.log.Warn("leader barrier failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-t.ctx.Done():
			timer.Stop()
			return
		}
	}
	s.leadershipState.mu.Lock()
	defer s.leadershipState.mu.Unlock()
	if t.ctx.Err() != nil {
		return
	}
	t.ready = true
	for _, h := range s.hooks {
		s.startHook(t, h)
	}
}

// startHook runs h for term t. Requires mu and a live term.
func (s *Store) startHook(t *leaderTerm, h leaderHook) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		log := s.log.With(zap.String("hook", h.name))
		log.Debug("leader hook started")
		h.fn(t.ctx)
		log.Debug("leader hook returned")
	}()
}

// publishNodeMeta is the built-in hook that replicates this node's
// Config.APIAddr when it leads and the stored value differs.
func (s *Store) publishNodeMeta(ctx context.Context) {
	want := NodeMeta{ID: s.cfg.NodeID, APIAddr: s.cfg.APIAddr}
	if got, ok := s.NodeMeta(want.ID); ok && got == want {
		return
	}
	if err := s.SetNodeMeta(ctx, want); err != nil && ctx.Err() == nil {
		s.log.Warn("publish node meta", zap.Error(err))
	}
}

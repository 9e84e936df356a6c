package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

var (
	// ErrNotLeader is wrapped by every write attempted on a server that is
	// not (or stopped being) the leader. Forward the request to Leader() or
	// LeaderAPIAddr() and retry; writes are idempotent by design.
	ErrNotLeader = errors.New("not the leader")
	// ErrShutdown is wrapped by calls made after, or cut short by, Shutdown.
	ErrShutdown = errors.New("raft store is shut down")
)

// Store is the replicated controller state of a cyclerd server: a Raft node,
// its FSM and the leader-only lifecycle. Reads are local and return copies;
// writes go through Raft and only succeed on the leader.
type Store struct {
	cfg   Config
	log   *zap.Logger
	raft  *raft.Raft
	fsm   *fsm
	trans raft.Transport
	owned []io.Closer // components New created and Shutdown closes

	notifyCh     chan bool
	shutdownCh   chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error
	bg           sync.WaitGroup // background goroutines of this Store

	leadershipState // leader.go
	contactState    // membership.go

	breakersOnce sync.Once
	breakers     *BreakerStore // breaker.go
}

// New opens (or creates) the node's Raft state and starts Raft. With
// cfg.Bootstrap and no existing state it bootstraps a single-node cluster.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("raftstore: config: %w", err)
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg: cfg,
		log: cfg.Logger.Named("raftstore").With(zap.String("node_id", cfg.NodeID)),
		// Buffered so raft never waits on us; watchLeadership drains it.
		notifyCh:   make(chan bool, 16),
		shutdownCh: make(chan struct{}),
	}
	s.leadershipState.init()
	s.contactState.init()
	if err := s.start(); err != nil {
		// Close what was opened, so a retry can open it again.
		for _, c := range s.owned {
			c.Close()
		}
		return nil, err
	}
	s.log.Info("raft store started", zap.String("raft_addr", s.Addr()), zap.String("timing", cfg.Timing))
	return s, nil
}

// start opens storage and transport, bootstraps if asked, and starts raft
// and the Store's goroutines. Nothing after NewRaft can fail.
func (s *Store) start() error {
	cfg := s.cfg
	hlog := newHCLogger(cfg.Logger)
	logs, stable, snaps, err := s.openStores(hlog)
	if err != nil {
		return err
	}
	s.trans = cfg.Transport
	if s.trans == nil {
		if s.trans, err = s.openTransport(hlog); err != nil {
			return err
		}
	}
	rc := cfg.raftConfig()
	rc.Logger = hlog
	rc.NotifyCh = s.notifyCh
	if cfg.Bootstrap {
		if err := bootstrap(rc, logs, stable, snaps, s.trans); err != nil {
			return err
		}
	}
	s.fsm = newFSM(s.log)
	if s.raft, err = raft.NewRaft(rc, s.fsm, logs, stable, snaps, s.trans); err != nil {
		return fmt.Errorf("raftstore: start raft: %w", err)
	}
	s.startObserver()
	s.bg.Add(2)
	go s.watchLeadership()
	go s.runLeadership()
	if cfg.APIAddr != "" {
		s.OnLeader("node-meta", s.publishNodeMeta)
	}
	return nil
}

// openStores returns the injected stores, or opens the bolt log/stable store
// and the file snapshot store under DataDir/raft.
func (s *Store) openStores(hlog hclog.Logger) (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	cfg := s.cfg
	dir := filepath.Join(cfg.DataDir, "raft")
	if cfg.LogStore == nil || cfg.SnapshotStore == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, nil, fmt.Errorf("raftstore: create data dir: %w", err)
		}
	}
	var logs raft.LogStore = cfg.LogStore
	var stable raft.StableStore = cfg.StableStore
	if logs == nil {
		path := filepath.Join(dir, "raft.db")
		// The timeout turns "another process holds the file lock" into an
		// error instead of a hang.
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: time.Second}})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("raftstore: open %s: %w (is another cyclerd using data_dir %s?)", path, err, cfg.DataDir)
		}
		s.owned = append(s.owned, bolt)
		stable = bolt
		// The cache keeps recent entries in memory for replication. It is
		// small on purpose: a cycle of a 500-host pool commits records of
		// about 100 KB, and 512 of them held ~50 MB on every server
		// (docs/benchmarks-scale.md). A follower that falls further behind
		// reads from bolt instead, which only costs a disk read.
		logs, err = raft.NewLogCache(logCacheEntries, bolt)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("raftstore: log cache: %w", err)
		}
	}
	snaps := cfg.SnapshotStore
	if snaps == nil {
		fss, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, hlog.Named("snapshots"))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("raftstore: open snapshot store in %s: %w", dir, err)
		}
		snaps = fss
	}
	return logs, stable, snaps, nil
}

// openTransport listens on BindAddr and advertises AdvertiseAddr.
func (s *Store) openTransport(hlog hclog.Logger) (raft.Transport, error) {
	var adv net.Addr
	if s.cfg.AdvertiseAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", s.cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("raftstore: advertise_addr %q: %w", s.cfg.AdvertiseAddr, err)
		}
		adv = a
	}
	t, err := raft.NewTCPTransportWithLogger(s.cfg.BindAddr, adv, 3, 10*time.Second, hlog.Named("transport"))
	if err != nil {
		return nil, fmt.Errorf("raftstore: listen on bind_addr %q (advertise %q): %w", s.cfg.BindAddr, s.cfg.AdvertiseAddr, err)
	}
	s.owned = append(s.owned, t)
	return t, nil
}

// bootstrap forms a single-node cluster unless the node already has state,
// which makes Config.Bootstrap safe to keep on across restarts.
func bootstrap(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("raftstore: check existing state: %w", err)
	}
	if existing {
		return nil
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter,
		ID:       rc.LocalID,
		Address:  trans.LocalAddr(),
	}}}
	if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	return nil
}

// Shutdown stops leader-only work, Raft and the background goroutines, then
// closes what New opened. It is safe to call more than once.
func (s *Store) Shutdown() error {
	s.shutdownOnce.Do(func() {
		s.log.Info("raft store shutting down")
		// Closing shutdownCh first cancels the leader hooks' context and
		// unblocks writers waiting in wait(); raft.Shutdown then fails any
		// Apply a hook is still blocked in, so the hooks can return.
		close(s.shutdownCh)
		err := s.raft.Shutdown().Error()
		s.stopObserver()
		s.bg.Wait()
		for _, c := range s.owned {
			err = errors.Join(err, c.Close())
		}
		s.shutdownErr = err
	})
	return s.shutdownErr
}

// ID returns this node's Raft server ID.
func (s *Store) ID() string { return s.cfg.NodeID }

// Addr returns this node's Raft address, as other servers dial it.
func (s *Store) Addr() string { return string(s.trans.LocalAddr()) }

// IsLeader reports whether this node currently believes it is the leader.
// Only a successful write (or Barrier) proves it.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the Raft address and server ID of the current leader, or
// empty strings when none is known.
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// LeaderAPIAddr returns the leader's API address from replicated NodeMeta, or
// "" when the leader or its metadata is unknown.
func (s *Store) LeaderAPIAddr() string {
	_, id := s.Leader()
	if id == "" {
		return ""
	}
	m, _ := s.NodeMeta(id)
	return m.APIAddr
}

// AppliedIndex returns the Raft index of the last command applied to this
// node's state. Reads made after it returns reflect at least that index.
func (s *Store) AppliedIndex() uint64 {
	i, _ := s.fsm.applied()
	return i
}

// Barrier blocks until every entry committed before the call is applied
// here. Only the leader can issue one.
func (s *Store) Barrier(ctx context.Context) error {
	if err := s.wait(ctx, s.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		return s.raftErr("barrier", err)
	}
	return nil
}

// Stats is a point-in-time view of this node's Raft state.
type Stats struct {
	NodeID string `json:"node_id"`
	// State is "Leader", "Follower", "Candidate" or "Shutdown".
	State             string `json:"state"`
	Term              uint64 `json:"term"`
	LastIndex         uint64 `json:"last_index"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	LeaderID          string `json:"leader_id"`
	LeaderAddr        string `json:"leader_addr"`
}

// Stats returns this node's Raft state.
func (s *Store) Stats() Stats {
	addr, id := s.Leader()
	snapIndex, _ := strconv.ParseUint(s.raft.Stats()["last_snapshot_index"], 10, 64)
	return Stats{
		NodeID:            s.cfg.NodeID,
		State:             s.raft.State().String(),
		Term:              s.raft.CurrentTerm(),
		LastIndex:         s.raft.LastIndex(),
		CommitIndex:       s.raft.CommitIndex(),
		AppliedIndex:      s.AppliedIndex(),
		LastSnapshotIndex: snapIndex,
		LeaderID:          id,
		LeaderAddr:        addr,
	}
}

// apply encodes a command and commits it through Raft.
func (s *Store) apply(ctx context.Context, op string, t CommandType, body any) (any, error) {
	data, err := encodeCommand(t, body)
	if err != nil {
		return nil, fmt.Errorf("raftstore: %s: %w", op, err)
	}
	return s.applyBytes(ctx, op, data)
}

// applyBytes commits an encoded command and returns the FSM's response. An
// error value returned by the command's handler becomes the error.
func (s *Store) applyBytes(ctx context.Context, op string, data []byte) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("raftstore: %s: %w", op, err)
	}
	f := s.raft.Apply(data, enqueueTimeout(ctx))
	if err := s.wait(ctx, f); err != nil {
		return nil, s.raftErr(op, err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, fmt.Errorf("raftstore: %s: %w", op, err)
	}
	return resp, nil
}

// enqueueTimeout is how long raft may take to accept a request: the ctx's
// remaining time, or DefaultApplyTimeout.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return DefaultApplyTimeout
}

// wait blocks until f resolves, ctx ends or the store shuts down. raft futures
// have no channel, so a goroutine waits on Error(). raft resolves a future on
// commit, on leadership loss and on shutdown, so the goroutine normally ends
// soon after; the exception is an entry already queued for the FSM when raft
// shuts down, which raft never resolves, and then only that goroutine is left.
// When ctx ends first the write may still commit: retry idempotently.
func (s *Store) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the outcome is unknown)", ctx.Err())
	case <-s.shutdownCh:
		return ErrShutdown
	}
}

// raftErr maps raft's errors onto this package's sentinels.
func (s *Store) raftErr(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("raftstore: %s: %w%s", op, ErrNotLeader, s.leaderHint())
	case errors.Is(err, raft.ErrLeadershipLost):
		// Keep raft's error too: it means the entry may or may not commit.
		return fmt.Errorf("raftstore: %s: %w: %w%s", op, ErrNotLeader, err, s.leaderHint())
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, ErrShutdown):
		return fmt.Errorf("raftstore: %s: %w", op, ErrShutdown)
	}
	return fmt.Errorf("raftstore: %s: %w", op, err)
}

func (s *Store) leaderHint() string {
	addr, id := s.Leader()
	if id == "" {
		return " (no leader is known yet; retry shortly)"
	}
	return fmt.Sprintf(" (the leader is %s at %s)", id, addr)
}

// logCacheEntries is how many recent log entries each server keeps in
// memory (see New).
const logCacheEntries = 64

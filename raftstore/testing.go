package raftstore

// Test-only helpers, exported for other packages' tests as raft exports its
// own testing.go. Nothing here is used by the daemon.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// TestWaitTimeout bounds every wait in TestCluster. It is generous because
// tests run with -race on shared CPUs; waits end as soon as the condition holds.
const TestWaitTimeout = 15 * time.Second

// TestCluster is a cluster of Stores on raft's in-memory transport and stores
// with TimingFast timeouts. Node i has ID "node<i>", Raft address "node<i>"
// and API address "api.node<i>". Set RAFTSTORE_TEST_LOG=debug|info|warn|error
// to see the nodes' logs in the test output.
type TestCluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*testNode
}

type testNode struct {
	store        *Store
	trans        *raft.InmemTransport
	killed       bool
	disconnected bool
}

// NewTestCluster starts n bootstrapped nodes and waits for a leader that can
// commit. The cluster is closed by t.Cleanup.
func NewTestCluster(t testing.TB, n int) *TestCluster {
	t.Helper()
	c := &TestCluster{t: t}
	t.Cleanup(c.Close)
	var servers []raft.Server
	for i := range n {
		id := fmt.Sprintf("node%d", i)
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		c.nodes = append(c.nodes, &testNode{trans: trans})
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: addr})
	}
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			a.trans.Connect(b.trans.LocalAddr(), b.trans)
		}
	}
	for i, tn := range c.nodes {
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		cfg := Config{
			NodeID:        string(servers[i].ID),
			APIAddr:       "api." + string(servers[i].ID),
			Timing:        TimingFast,
			Logger:        testLogger(t),
			Transport:     tn.trans,
			LogStore:      logs,
			StableStore:   logs,
			SnapshotStore: snaps,
		}
		// Every node starts with the full configuration, as in raft's own
		// tests, so no join round-trips are needed.
		if err := raft.BootstrapCluster(cfg.raftConfig(), logs, logs, snaps, tn.trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatalf("bootstrap %s: %v", cfg.NodeID, err)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", cfg.NodeID, err)
		}
		tn.store = s
	}
	c.WaitLeader()
	return c
}

func testLogger(t testing.TB) *zap.Logger {
	lvl, err := zapcore.ParseLevel(os.Getenv("RAFTSTORE_TEST_LOG"))
	if os.Getenv("RAFTSTORE_TEST_LOG") == "" || err != nil {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

// Nodes returns every node, including killed and disconnected ones.
func (c *TestCluster) Nodes() []*Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Store, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.store
	}
	return out
}

// reachable returns the nodes that are running and connected.
func (c *TestCluster) reachable() []*Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Store
	for _, n := range c.nodes {
		if !n.killed && !n.disconnected {
			out = append(out, n.store)
		}
	}
	return out
}

// Leader returns the running, connected node that believes it leads, or nil.
func (c *TestCluster) Leader() *Store {
	for _, s := range c.reachable() {
		if s.IsLeader() {
			return s
		}
	}
	return nil
}

// Followers returns the running, connected nodes that are not the leader.
func (c *TestCluster) Followers() []*Store {
	var out []*Store
	for _, s := range c.reachable() {
		if !s.IsLeader() {
			out = append(out, s)
		}
	}
	return out
}

// WaitLeader waits until a running, connected node leads, has proved it by
// committing a barrier, and has published its NodeMeta (the one write a new
// leader makes by itself, so tests comparing states are not racing it).
func (c *TestCluster) WaitLeader() *Store {
	c.t.Helper()
	var leader *Store
	c.WaitFor("a leader that can commit", func() bool {
		leader = c.Leader()
		if leader == nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if leader.Barrier(ctx) != nil {
			return false
		}
		m, _ := leader.NodeMeta(leader.ID())
		return m.APIAddr == leader.cfg.APIAddr
	})
	return leader
}

// WaitReplicated waits until every running, connected node has applied the
// leader's applied index.
func (c *TestCluster) WaitReplicated() {
	c.t.Helper()
	target := c.WaitLeader().AppliedIndex()
	c.WaitFor(fmt.Sprintf("all nodes to apply index %d", target), func() bool {
		for _, s := range c.reachable() {
			if s.AppliedIndex() < target {
				return false
			}
		}
		return true
	})
}

// WaitFor polls cond until it holds, failing the test after TestWaitTimeout.
func (c *TestCluster) WaitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.NewTimer(TestWaitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			c.t.Fatalf("timed out after %s waiting for %s", TestWaitTimeout, what)
		case <-tick.C:
		}
	}
}

// node finds s's node. It panics for a foreign store (a bug in the test);
// it cannot t.Fatal because callers hold c.mu, which Close needs.
func (c *TestCluster) node(s *Store) *testNode {
	for _, n := range c.nodes {
		if n.store == s {
			return n
		}
	}
	panic(fmt.Sprintf("raftstore: store %s is not in this test cluster", s.ID()))
}

// Disconnect cuts s off from every other node in both directions.
func (c *TestCluster) Disconnect(s *Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(s)
	n.disconnected = true
	for _, o := range c.nodes {
		if o != n {
			n.trans.Disconnect(o.trans.LocalAddr())
			o.trans.Disconnect(n.trans.LocalAddr())
		}
	}
}

// Reconnect restores the links Disconnect cut.
func (c *TestCluster) Reconnect(s *Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(s)
	n.disconnected = false
	for _, o := range c.nodes {
		if o != n && !o.killed {
			n.trans.Connect(o.trans.LocalAddr(), o.trans)
			o.trans.Connect(n.trans.LocalAddr(), n.trans)
		}
	}
}

// Kill shuts s down, as if its process died.
func (c *TestCluster) Kill(s *Store) {
	c.t.Helper()
	if err := s.Shutdown(); err != nil {
		c.t.Errorf("shut down %s: %v", s.ID(), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(s)
	n.killed = true
	for _, o := range c.nodes {
		o.trans.Disconnect(n.trans.LocalAddr())
	}
	n.trans.DisconnectAll()
}

// Close shuts every node down. It is idempotent and registered with t.Cleanup.
func (c *TestCluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Followers go first: shutting the leader down first lets the followers
	// elect a new leader whose first write is cut off mid-teardown, leaving
	// a goroutine behind that goleak then reports.
	nodes := append([]*testNode(nil), c.nodes...)
	sort.SliceStable(nodes, func(i, j int) bool {
		li := nodes[i].store != nil && !nodes[i].killed && nodes[i].store.IsLeader()
		lj := nodes[j].store != nil && !nodes[j].killed && nodes[j].store.IsLeader()
		return !li && lj
	})
	for _, n := range nodes {
		if n.store != nil && !n.killed {
			if err := n.store.Shutdown(); err != nil {
				c.t.Errorf("shut down %s: %v", n.store.ID(), err)
			}
			n.killed = true
		}
		n.trans.Close()
	}
}

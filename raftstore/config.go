package raftstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// Timing profiles for Config.Timing.
const (
	// TimingProduction suits real deployments on a LAN or loopback.
	TimingProduction = "production"
	// TimingFast uses 200 ms timeouts. It is meant for tests on one machine
	// (in-memory transport or loopback) and would flap on a real network.
	TimingFast = "fast"
)

// Defaults applied by Config.withDefaults.
const (
	// DefaultSnapshotRetain is how many Raft snapshots are kept on disk.
	DefaultSnapshotRetain = 2
	// DefaultApplyTimeout bounds how long a write waits to be enqueued into
	// Raft when the caller's context has no deadline.
	DefaultApplyTimeout = 30 * time.Second
)

// Config configures a Store. NodeID, and either DataDir or the injected
// stores, are required; everything else has a default.
type Config struct {
	// NodeID is this server's stable Raft ID. It must never change for the
	// lifetime of the node's data directory.
	NodeID string

	// DataDir holds the Raft log (DataDir/raft/raft.db) and snapshots
	// (DataDir/raft/snapshots). Unused when LogStore, StableStore and
	// SnapshotStore are all injected.
	DataDir string

	// BindAddr is the host:port the TCP transport listens on, such as
	// "0.0.0.0:7000". Port 0 picks a free port (see Store.Addr).
	// Unused when Transport is injected.
	BindAddr string

	// AdvertiseAddr is the host:port other servers dial to reach this one.
	// Empty means the listener's address, which must then be specific
	// (not 0.0.0.0). Unused when Transport is injected.
	AdvertiseAddr string

	// APIAddr is this node's HTTP API address. It is replicated as NodeMeta
	// whenever this node becomes leader, so `cluster members` can show it
	// and followers can forward writes to the leader's API. Optional.
	APIAddr string

	// Bootstrap makes this node form a single-node cluster when it has no
	// Raft state yet. It is a no-op on restart, so it is safe to leave set.
	Bootstrap bool

	// Timing is TimingProduction (the default when empty) or TimingFast.
	Timing string

	// SnapshotThreshold is how many log entries trigger a Raft snapshot.
	// 0 means raft's default (8192).
	SnapshotThreshold uint64

	// SnapshotRetain is how many Raft snapshots to keep on disk.
	// 0 means DefaultSnapshotRetain.
	SnapshotRetain int

	// Logger receives the store's and raft's logs. nil discards them.
	Logger *zap.Logger

	// Clock stamps times into commands on the leader (never inside Apply).
	// nil means time.Now. Tests inject a fixed clock.
	Clock func() time.Time

	// Transport, LogStore, StableStore and SnapshotStore replace the TCP
	// transport, bolt database and file snapshot store. Tests inject
	// raft's in-memory implementations (see NewTestCluster). The Store does
	// not close injected components; their creator does.
	Transport     raft.Transport
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node_id: must be set"))
	}
	switch c.Timing {
	case "", TimingProduction, TimingFast:
	default:
		errs = append(errs, fmt.Errorf("timing: %q is not %q or %q", c.Timing, TimingProduction, TimingFast))
	}
	if c.SnapshotRetain < 0 {
		errs = append(errs, fmt.Errorf("snapshot_retain: %d must be 0 (default) or more", c.SnapshotRetain))
	}
	storesInjected := c.LogStore != nil && c.StableStore != nil && c.SnapshotStore != nil
	if c.DataDir == "" && !storesInjected {
		errs = append(errs, errors.New("data_dir: must be set"))
	}
	if (c.LogStore == nil) != (c.StableStore == nil) {
		errs = append(errs, errors.New("log_store, stable_store: inject both or neither"))
	}
	if c.Transport == nil && c.BindAddr == "" {
		errs = append(errs, errors.New("bind_addr: must be set"))
	}
	return errors.Join(errs...)
}

// raftConfig builds the raft.Config for the chosen timing profile.
func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	switch c.Timing {
	case TimingFast:
		// raft's own tests use 50 ms, but with -race on a loaded 2-core CI
		// machine a 50 ms lease made leaders step down mid-test. 200 ms
		// still fails over in well under a second.
		rc.HeartbeatTimeout = 200 * time.Millisecond
		rc.ElectionTimeout = 200 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	default:
		// Failover budget: a follower notices a dead leader after
		// HeartbeatTimeout..2×HeartbeatTimeout (its timer is randomised in
		// that range and it only acts once the last contact is older than
		// HeartbeatTimeout). Pre-vote and vote are a few loopback RTTs. So
		// failover takes 0.5–1 s, and even one split vote (another
		// ElectionTimeout..2×ElectionTimeout) stays near 2 s, well under the
		// 3 s target. raft's default of 1 s each could reach ~4 s with a
		// split vote. The leader heartbeats every HeartbeatTimeout/10
		// (50 ms), so 500 ms still tolerates several lost heartbeats or a GC
		// pause. LeaderLeaseTimeout must not exceed HeartbeatTimeout; half of
		// it makes a partitioned leader step down (and stop its leader-only
		// loops) within 250 ms, before the majority can elect a successor.
		rc.HeartbeatTimeout = 500 * time.Millisecond
		rc.ElectionTimeout = 500 * time.Millisecond
		rc.LeaderLeaseTimeout = 250 * time.Millisecond
	}
	if c.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.SnapshotThreshold
	}
	// A removed server stays up as a non-member instead of shutting raft
	// down underneath the Store; the operator stops the process.
	rc.ShutdownOnRemove = false
	return rc
}

func (c Config) withDefaults() Config {
	if c.Timing == "" {
		c.Timing = TimingProduction
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

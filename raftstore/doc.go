// Package raftstore is the replicated controller state of `cyclerd server`:
// a hashicorp/raft node (raft-boltdb/v2 log and stable store, file snapshots,
// TCP transport), its FSM, and the hooks for leader-only work.
//
// # Using a Store
//
//	s, err := raftstore.New(raftstore.Config{
//		NodeID: "s1", DataDir: "/var/lib/cycler", BindAddr: "10.0.0.1:7000",
//		APIAddr: "https://10.0.0.1:7443", Bootstrap: true, Logger: log,
//	})
//	defer s.Shutdown()
//	s.OnLeader("cycles", cycles.Run)     // leader-only loops; see OnLeader
//	st, err := s.SetServiceState(ctx, …) // writes: leader only
//	if errors.Is(err, raftstore.ErrNotLeader) { forward to s.LeaderAPIAddr() }
//	st, ok := s.Service("web")           // reads: any node, returns copies
//
// Reads are local and may trail the leader; AppliedIndex says how far this
// node has applied, for the API's "answered by node X at index N".
//
// # Commands
//
// Every Raft log entry is one CommandType byte followed by a JSON body.
// Apply dispatches through the commandHandlers table and panics on an unknown
// type unless the type has IgnoreUnknownTypeFlag set. Apply is deterministic:
// times are stamped by the leader-side Store method before the entry is
// proposed. See the comment on the CommandType constants for how to add a
// command.
//
// # Snapshots
//
// Raft snapshots copy the state under the FSM read lock and encode it outside
// it. Operator snapshots (SaveSnapshot, RestoreSnapshot) are a separate,
// self-describing file format with a checksum; a restore is verified in full
// and then committed as one command, so it replicates like any write.
//
// # Tests
//
// NewTestCluster (testing.go) runs n Stores on raft's in-memory transport
// for other packages' tests.
package raftstore

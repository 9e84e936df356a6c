package api

import "time"

// Wire types of the server role's API, shared by cyclerd and cyclerctl.

// NodeStats is a server's view of its own Raft state (GET /v1/cluster/self).
type NodeStats struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LeaderID     string `json:"leader_id"`
	// RaftAddr and APIAddr are the addresses other servers use for it.
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Members is the size of the Raft configuration it knows; 0 means it
	// has never been bootstrapped or added to a cluster.
	Members int `json:"members"`
	// MemberIDs lists the ids in that configuration.
	MemberIDs []string `json:"member_ids,omitempty"`
}

// Member is one row of GET /v1/cluster/members.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
	// LastContactMS is the time since the answering server last heard from
	// this member, in milliseconds; -1 when the answering server cannot know.
	LastContactMS int64 `json:"last_contact_ms"`
	// AppliedIndex is the member's own applied Raft index, asked of it
	// directly; 0 with Error set when it did not answer.
	AppliedIndex uint64 `json:"applied_index"`
	State        string `json:"state,omitempty"`
	Error        string `json:"error,omitempty"`
}

// Members is the answer of GET /v1/cluster/members.
type Members struct {
	// AnsweredBy is the node that built the list.
	AnsweredBy string   `json:"answered_by"`
	Members    []Member `json:"members"`
}

// JoinRequest asks the leader to add a server (POST /v1/cluster/join).
type JoinRequest struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// RemoveRequest asks the leader to remove a server (POST /v1/cluster/remove).
type RemoveRequest struct {
	NodeID string `json:"node_id"`
}

// FreezeRequest freezes a service (PUT /v1/services/{service}/freeze).
type FreezeRequest struct {
	Reason string `json:"reason"`
}

// SnapshotRestored answers POST /v1/snapshot.
type SnapshotRestored struct {
	Index     uint64    `json:"index"`
	Term      uint64    `json:"term"`
	NodeID    string    `json:"node_id"`
	CreatedAt time.Time `json:"created_at"`
	SHA256    string    `json:"sha256"`
}

package raftstore

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// LastContactUnknown is Member.LastContact when the answering node cannot
// know it: a follower knows only its own contact with the leader.
const LastContactUnknown time.Duration = -1

// Member is one server of the Raft configuration, as seen by the answering node.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// APIAddr comes from replicated NodeMeta; "" if the node never sent one.
	APIAddr string `json:"api_addr"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	// Self marks the node that answered.
	Self bool `json:"self"`
	// LastContact is how long ago the leader last heard from this member.
	// Answered by the leader: 0 for itself and for members heartbeating
	// normally (every HeartbeatTimeout/10), the time since the last good
	// heartbeat for members it cannot reach. Answered by a follower: the time
	// since its own last contact with the leader, on the leader's and its own
	// entries, and LastContactUnknown for other followers.
	LastContact time.Duration `json:"last_contact"`
}

// contactState is embedded in Store. The leader learns which followers it
// cannot reach from raft's heartbeat observations; raft has no public API for
// per-follower contact times.
type contactState struct {
	observer  *raft.Observer
	obsCh     chan raft.Observation
	obsDone   chan struct{}
	contactMu sync.Mutex
	failing   map[raft.ServerID]time.Time // follower → last successful contact
}

func (c *contactState) init() {
	c.obsCh = make(chan raft.Observation, 64)
	c.obsDone = make(chan struct{})
	c.failing = map[raft.ServerID]time.Time{}
}

func (s *Store) startObserver() {
	s.observer = raft.NewObserver(s.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(s.observer)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		for {
			select {
			case o := <-s.obsCh:
				s.observe(o)
			case <-s.obsDone:
				return
			}
		}
	}()
}

func (s *Store) stopObserver() {
	s.raft.DeregisterObserver(s.observer)
	close(s.obsDone)
}

func (s *Store) observe(o raft.Observation) {
	s.contactMu.Lock()
	defer s.contactMu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		if _, ok := s.failing[d.PeerID]; !ok {
			s.failing[d.PeerID] = d.LastContact
		}
	case raft.ResumedHeartbeatObservation:
		delete(s.failing, d.PeerID)
	case raft.LeaderObservation:
		// Observations from an earlier term say nothing about this one.
		clear(s.failing)
	}
}

// Members returns the servers of the latest Raft configuration, sorted by ID.
// It answers on any node.
func (s *Store) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.raftErr("members", err)
	}
	_, leaderID := s.Leader()
	isLeader := s.IsLeader()
	sinceLeader := LastContactUnknown
	if last := s.raft.LastContact(); !last.IsZero() {
		sinceLeader = time.Since(last)
	}
	now := time.Now()
	apiAddrs := map[string]string{}
	for _, m := range s.NodeMetas() {
		apiAddrs[m.ID] = m.APIAddr
	}

	s.contactMu.Lock()
	defer s.contactMu.Unlock()
	var out []Member
	for _, srv := range f.Configuration().Servers {
		m := Member{
			ID:       string(srv.ID),
			RaftAddr: string(srv.Address),
			Voter:    srv.Suffrage == raft.Voter,
			Leader:   string(srv.ID) == leaderID,
			Self:     string(srv.ID) == s.cfg.NodeID,
		}
		m.APIAddr = apiAddrs[m.ID]
		switch {
		case isLeader && m.Self:
			m.LastContact = 0
		case isLeader:
			if last, failing := s.failing[srv.ID]; failing {
				m.LastContact = LastContactUnknown
				if !last.IsZero() {
					m.LastContact = now.Sub(last)
				}
			}
		case m.Self || m.Leader:
			m.LastContact = sinceLeader
		default:
			m.LastContact = LastContactUnknown
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Join adds a voting server. It runs on the leader only. Joining again with
// the same ID and address is a no-op; a known ID with a new address (or a
// known address under a new ID) is removed first, then added, which is how a
// server that moved, or was rebuilt, rejoins.
func (s *Store) Join(ctx context.Context, nodeID, raftAddr string) error {
	if nodeID == "" || raftAddr == "" {
		return fmt.Errorf("raftstore: join: node id %q and raft address %q must both be set", nodeID, raftAddr)
	}
	if !s.IsLeader() {
		return fmt.Errorf("raftstore: join %s: %w%s", nodeID, ErrNotLeader, s.leaderHint())
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return s.raftErr("join "+nodeID, err)
	}
	id, addr := raft.ServerID(nodeID), raft.ServerAddress(raftAddr)
	for _, srv := range f.Configuration().Servers {
		if srv.ID == id && srv.Address == addr {
			if srv.Suffrage == raft.Voter {
				s.log.Debug("join: already a member", zap.String("id", nodeID))
				return nil
			}
			break // a non-voter: AddVoter promotes it
		}
		if srv.ID == id || srv.Address == addr {
			s.log.Info("join: replacing stale member", zap.String("id", string(srv.ID)), zap.String("raft_addr", string(srv.Address)))
			if err := s.wait(ctx, s.raft.RemoveServer(srv.ID, 0, enqueueTimeout(ctx))); err != nil {
				return s.raftErr("join "+nodeID+": remove stale "+string(srv.ID), err)
			}
		}
	}
	if err := s.wait(ctx, s.raft.AddVoter(id, addr, 0, enqueueTimeout(ctx))); err != nil {
		return s.raftErr("join "+nodeID, err)
	}
	s.log.Info("member joined", zap.String("id", nodeID), zap.String("raft_addr", raftAddr))
	return nil
}

// Remove removes a server from the cluster and forgets its NodeMeta. It runs
// on the leader only and is a no-op for an unknown ID. Removing the leader
// itself makes it step down once the change commits.
func (s *Store) Remove(ctx context.Context, nodeID string) error {
	if !s.IsLeader() {
		return fmt.Errorf("raftstore: remove %s: %w%s", nodeID, ErrNotLeader, s.leaderHint())
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return s.raftErr("remove "+nodeID, err)
	}
	id := raft.ServerID(nodeID)
	member := false
	for _, srv := range f.Configuration().Servers {
		member = member || srv.ID == id
	}
	if member {
		// Metadata first, while this node is surely still the leader.
		if _, ok := s.NodeMeta(nodeID); ok {
			if err := s.DeleteNodeMeta(ctx, nodeID); err != nil {
				return err
			}
		}
		if err := s.wait(ctx, s.raft.RemoveServer(id, 0, enqueueTimeout(ctx))); err != nil {
			return s.raftErr("remove "+nodeID, err)
		}
		s.log.Info("member removed", zap.String("id", nodeID))
		return nil
	}
	if _, ok := s.NodeMeta(nodeID); ok {
		return s.DeleteNodeMeta(ctx, nodeID)
	}
	return nil
}

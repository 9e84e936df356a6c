package raftstore

import (
	"bytes"
	"sort"
)

// The read methods below are local: they answer from this node's state
// (possibly behind the leader's; see AppliedIndex) under the FSM read lock
// and return copies, so callers can never mutate or race with the state.

// Service returns the state of one service.
func (s *Store) Service(name string) (st ServiceState, ok bool) {
	s.fsm.read(func(state *State) {
		st, ok = state.Services[name]
		st = st.clone()
	})
	return st, ok
}

// Services returns the state of every service, sorted by name.
func (s *Store) Services() []ServiceState {
	var out []ServiceState
	s.fsm.read(func(state *State) {
		out = make([]ServiceState, 0, len(state.Services))
		for _, st := range state.Services {
			out = append(out, st.clone())
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Audit returns up to limit audit entries with Seq > afterSeq, oldest first.
// limit <= 0 means no limit. Only the newest AuditRetain entries are kept.
func (s *Store) Audit(afterSeq uint64, limit int) []AuditEntry {
	var out []AuditEntry
	s.fsm.read(func(state *State) {
		for _, e := range state.Audit.entries() {
			if e.Seq <= afterSeq {
				continue
			}
			if limit > 0 && len(out) == limit {
				break
			}
			out = append(out, e)
		}
	})
	return out
}

// LastAuditSeq returns the sequence number of the newest audit entry, 0 if none.
func (s *Store) LastAuditSeq() uint64 {
	var seq uint64
	s.fsm.read(func(state *State) { seq = state.Audit.lastSeq })
	return seq
}

// BreakerData returns the gobreaker shared data stored under name.
func (s *Store) BreakerData(name string) (data []byte, ok bool) {
	s.fsm.read(func(state *State) {
		data, ok = state.Breakers[name]
		data = bytes.Clone(data)
	})
	return data, ok
}

// NodeMeta returns the metadata of server id.
func (s *Store) NodeMeta(id string) (m NodeMeta, ok bool) {
	s.fsm.read(func(state *State) { m, ok = state.Nodes[id] })
	return m, ok
}

// NodeMetas returns the metadata of every server that has some, sorted by ID.
func (s *Store) NodeMetas() []NodeMeta {
	var out []NodeMeta
	s.fsm.read(func(state *State) {
		out = make([]NodeMeta, 0, len(state.Nodes))
		for _, m := range state.Nodes {
			out = append(out, m)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Freeze returns the freeze of service, if it is frozen.
func (s *Store) Freeze(service string) (f Freeze, ok bool) {
	s.fsm.read(func(state *State) { f, ok = state.Freezes[service] })
	return f, ok
}

// Freezes returns every freeze, sorted by service.
func (s *Store) Freezes() []Freeze {
	var out []Freeze
	s.fsm.read(func(state *State) {
		for _, f := range state.Freezes {
			out = append(out, f)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Changed returns a channel that is closed the next time the state changes
// (a command applied or a snapshot restored). Take it before reading, then
// read, then wait on it, so no change falls between the read and the wait.
func (s *Store) Changed() <-chan struct{} {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.changed
}

package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// fsm is the raft.FSM. raft calls Apply, Snapshot and Restore from one
// goroutine; readers on other goroutines go through mu.
type fsm struct {
	log *zap.Logger

	// mu guards state and the applied position. Apply and Restore take it
	// for writing; snapshots and Store reads take it for reading and copy
	// out what they need before releasing it.
	mu           sync.RWMutex
	state        *State
	appliedIndex uint64
	appliedTerm  uint64
	// changed is closed (and replaced) whenever the state changes, so
	// watchers wake without polling; see Store.Changed.
	changed chan struct{}
}

func newFSM(log *zap.Logger) *fsm {
	return &fsm{log: log, state: NewState(), changed: make(chan struct{})}
}

// notifyLocked wakes every watcher. Callers hold mu for writing.
func (f *fsm) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Apply implements raft.FSM. It must be deterministic: the same log gives the
// same state and the same responses on every replica.
func (f *fsm) Apply(l *raft.Log) any {
	// raft only hands the FSM LogCommand entries (this FSM does not implement
	// ConfigurationStore); guard anyway so a no-op can never be misread.
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftstore: empty command at index %d", l.Index))
	}
	t := CommandType(l.Data[0])
	h, ok := commandHandlers[t]
	if !ok {
		if t&IgnoreUnknownTypeFlag != 0 {
			f.log.Warn("skipping unknown optional command", zap.Uint8("type", uint8(t)), zap.Uint64("index", l.Index))
			f.mu.Lock()
			f.setApplied(l)
			f.mu.Unlock()
			return nil
		}
		// See IgnoreUnknownTypeFlag: diverging silently is worse than stopping.
		panic(fmt.Sprintf("raftstore: unknown command type %d at index %d; upgrade this server", uint8(t), l.Index))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := h(f.state, l.Data[1:])
	f.setApplied(l)
	f.notifyLocked()
	return resp
}

func (f *fsm) setApplied(l *raft.Log) {
	f.appliedIndex = l.Index
	f.appliedTerm = l.Term
}

// applied returns the index and term of the last entry applied to the state.
func (f *fsm) applied() (index, term uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.appliedIndex, f.appliedTerm
}

// read runs fn with the read lock held. fn must copy whatever it returns.
func (f *fsm) read(fn func(st *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// copyState returns a deep copy of the state and the position it reflects.
func (f *fsm) copyState() (st *State, index, term uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone(), f.appliedIndex, f.appliedTerm
}

// snapshotPayload is what a Raft snapshot holds: the state plus the position
// it reflects, so AppliedIndex is right straight after a restart or an
// InstallSnapshot.
type snapshotPayload struct {
	Index uint64          `json:"index"`
	Term  uint64          `json:"term"`
	State json.RawMessage `json:"state"`
}

// Snapshot implements raft.FSM. raft runs it on the FSM goroutine, so Apply
// is paused meanwhile: keep it to a copy under the read lock and leave the
// encoding and I/O to Persist, which runs concurrently with Apply.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	st, index, term := f.copyState()
	return &fsmSnapshot{state: st, index: index, term: term}, nil
}

// Restore implements raft.FSM. It replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var p snapshotPayload
	dec := json.NewDecoder(rc)
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("raftstore: restore: decode snapshot: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("raftstore: restore: unexpected data after the snapshot document")
	}
	fresh, err := decodeState(p.State)
	if err != nil {
		return fmt.Errorf("raftstore: restore: state: %w", err)
	}
	// Decode into a fresh State and swap it in under the write lock, never
	// decode into the live one: readers hold the read lock on other
	// goroutines (an unlocked swap is a data race), and a decode that fails
	// halfway must leave the old state intact rather than a mix of the two.
	f.mu.Lock()
	f.state = fresh
	f.appliedIndex, f.appliedTerm = p.Index, p.Term
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

type fsmSnapshot struct {
	state       *State // a private deep copy; nothing else references it
	index, term uint64
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.persist(sink)
	if err != nil {
		// Cancel discards the partial snapshot; raft keeps the previous one.
		return errors.Join(err, sink.Cancel())
	}
	return sink.Close()
}

func (s *fsmSnapshot) persist(w io.Writer) error {
	st, err := encodeState(s.state)
	if err != nil {
		return fmt.Errorf("raftstore: snapshot: encode state: %w", err)
	}
	p := snapshotPayload{Index: s.index, Term: s.term, State: st}
	if err := json.NewEncoder(w).Encode(p); err != nil {
		return fmt.Errorf("raftstore: snapshot: write: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot. The copy is garbage collected.
func (s *fsmSnapshot) Release() {}

var _ raft.FSM = (*fsm)(nil)
var _ raft.FSMSnapshot = (*fsmSnapshot)(nil)

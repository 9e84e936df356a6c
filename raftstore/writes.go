package raftstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The write methods below run on the leader: they validate input, stamp
// leader-side values (times) and commit a command. On a follower they return
// an error wrapping ErrNotLeader. A write whose outcome is unknown (ctx ended,
// leadership lost mid-commit) is safe to retry: each is idempotent.

// SetServiceState commits a new state for st.Service and returns it as
// stored. UpdatedAt is stamped here; Hidden is sorted and deduplicated (nil
// becomes empty).
// Generation must be above the current one (ErrStaleGeneration) unless st
// equals the current state apart from UpdatedAt, which makes a retry succeed
// and return the state stored the first time.
func (s *Store) SetServiceState(ctx context.Context, st ServiceState) (ServiceState, error) {
	st = st.clone()
	if st.Hidden == nil {
		st.Hidden = []string{} // "hidden": [] rather than null in the KV document
	}
	slices.Sort(st.Hidden)
	st.Hidden = slices.Compact(st.Hidden)
	if err := st.validate(); err != nil {
		return ServiceState{}, fmt.Errorf("raftstore: set service state: %w", invalid(ServiceStateCommand, err))
	}
	st.UpdatedAt = s.now()
	resp, err := s.apply(ctx, "set service state", ServiceStateCommand, st)
	if err != nil {
		return ServiceState{}, err
	}
	return resp.(ServiceState), nil
}

// AppendAudit appends e to the audit trail and returns it with its sequence
// number. e.At is stamped with the leader's clock when zero.
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Action == "" {
		return AuditEntry{}, fmt.Errorf("raftstore: append audit: %w", invalid(AuditAppendCommand, errors.New("action: must be set")))
	}
	e.Seq = 0 // assigned by Apply
	if e.At.IsZero() {
		e.At = s.now()
	}
	resp, err := s.apply(ctx, "append audit", AuditAppendCommand, e)
	if err != nil {
		return AuditEntry{}, err
	}
	return resp.(AuditEntry), nil
}

// SetBreakerData stores the gobreaker shared data for name. Empty data
// deletes it, which resets the breaker the next time gobreaker reads it.
// BreakerStore wraps this for gobreaker.
func (s *Store) SetBreakerData(ctx context.Context, name string, data []byte) error {
	if name == "" {
		return fmt.Errorf("raftstore: set breaker data: %w", invalid(BreakerDataCommand, errors.New("name: must be set")))
	}
	_, err := s.apply(ctx, "set breaker data", BreakerDataCommand, breakerDataBody{Name: name, Data: data})
	return err
}

// SetNodeMeta records m for the server m.ID, replacing earlier metadata. The
// API layer calls it when a server joins; the leader publishes its own
// Config.APIAddr on every election.
func (s *Store) SetNodeMeta(ctx context.Context, m NodeMeta) error {
	if m.ID == "" {
		return fmt.Errorf("raftstore: set node meta: %w", invalid(NodeMetaCommand, errors.New("id: must be set")))
	}
	_, err := s.apply(ctx, "set node meta", NodeMetaCommand, nodeMetaBody{NodeMeta: m})
	return err
}

// DeleteNodeMeta forgets the metadata of server id. Remove calls it.
func (s *Store) DeleteNodeMeta(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("raftstore: delete node meta: %w", invalid(NodeMetaCommand, errors.New("id: must be set")))
	}
	_, err := s.apply(ctx, "delete node meta", NodeMetaCommand, nodeMetaBody{NodeMeta: NodeMeta{ID: id}, Delete: true})
	return err
}

// now is the leader's clock, in UTC without a monotonic reading so the value
// that goes into a command equals the value every replica decodes.
func (s *Store) now() time.Time {
	return s.cfg.Clock().UTC().Round(0)
}

// SetFreeze freezes f.Service (frozen true) or lifts its freeze. f.At is
// stamped with the leader's clock. Both directions are idempotent.
func (s *Store) SetFreeze(ctx context.Context, f Freeze, frozen bool) error {
	if f.Service == "" {
		return fmt.Errorf("raftstore: set freeze: %w", invalid(FreezeCommand, errors.New("service: must be set")))
	}
	f.At = s.now()
	_, err := s.apply(ctx, "set freeze", FreezeCommand, freezeBody{Freeze: f, Frozen: frozen})
	return err
}

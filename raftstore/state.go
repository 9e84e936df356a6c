package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cyclerhq/cycler/cycle"
)

// Pool names, as in the Consul contract.
const (
	PoolBlue  = "blue"
	PoolGreen = "green"
)

// AuditRetain is how many audit entries the replicated state keeps. It is a
// constant, not configuration, because Apply must trim identically on every
// replica: changing it is a protocol change that needs one binary everywhere.
const AuditRetain = 10000

// Release is the package a pool runs.
type Release struct {
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// Pools holds the release of each pool.
type Pools struct {
	Blue  Release `json:"blue"`
	Green Release `json:"green"`
}

// ServiceState is the replicated state of one service; it is the document the
// leader publishes to Consul KV cycler/<svc>/state.
type ServiceState struct {
	// Service is the service name.
	Service string `json:"service"`
	// Generation only grows; see ErrStaleGeneration.
	Generation uint64 `json:"generation"`
	// Live is PoolBlue or PoolGreen.
	Live string `json:"live"`
	// Pools is the release of each pool.
	Pools Pools `json:"pools"`
	// Hidden lists the instance ids in maintenance mode, sorted.
	Hidden []string `json:"hidden"`
	// UpdatedAt is stamped by the leader when it proposes the change.
	UpdatedAt time.Time `json:"updated_at"`
}

// AuditEntry is one record of the audit trail.
type AuditEntry struct {
	// Seq is assigned by Apply; it grows by one per entry, forever.
	Seq uint64 `json:"seq"`
	// At is stamped by the leader when the caller leaves it zero.
	At        time.Time `json:"at"`
	TokenName string    `json:"token_name"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Detail    string    `json:"detail"`
}

// NodeMeta is per-node metadata replicated alongside the Raft membership.
type NodeMeta struct {
	ID      string `json:"id"`
	APIAddr string `json:"api_addr"`
}

// State is the whole replicated controller state. Apply mutates the Store's
// only instance under the FSM's write lock; readers get copies from Store
// methods and never see this struct's maps.
type State struct {
	Services map[string]ServiceState `json:"services"`
	// Breakers maps a gobreaker shared-state key to its opaque data.
	Breakers map[string][]byte   `json:"breakers"`
	Nodes    map[string]NodeMeta `json:"nodes"`
	// Freezes maps a service name to its freeze; a frozen service starts
	// no cycle, manual or scheduled, until it is unfrozen.
	Freezes map[string]Freeze `json:"freezes"`
	// Packages maps a package digest ("sha256:<hex>") to its metadata. The
	// blobs themselves live on each server's disk (package pkgstore).
	Packages map[string]PackageMeta `json:"packages"`
	// Cycles maps a service to its cycles, oldest first; at most the last
	// one is active. See CycleRetain.
	Cycles map[string][]cycle.Cycle `json:"cycles"`
	// CycleSeq maps a service to the number of its last cycle id.
	CycleSeq map[string]uint64 `json:"cycle_seq"`
	// ScheduleRuns maps a service to its schedules' runs, oldest first;
	// see ScheduleRunRetain.
	ScheduleRuns map[string][]ScheduleRun `json:"schedule_runs"`
	// LastFires maps "<service>/<schedule>" to the newest fire time
	// recorded for the schedule; fires after it and before now were missed.
	LastFires map[string]time.Time `json:"last_fires"`
	// Staged maps a service to the package its deploy-staged schedules
	// deploy next.
	Staged map[string]Stage `json:"staged"`
	Audit  AuditLog         `json:"audit"`
}

// Freeze records who froze a service, when and why.
type Freeze struct {
	Service string    `json:"service"`
	Reason  string    `json:"reason"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		Services: map[string]ServiceState{},
		Breakers: map[string][]byte{},
		Nodes:    map[string]NodeMeta{},
		Freezes:  map[string]Freeze{},
		Packages: map[string]PackageMeta{},
		Cycles:   map[string][]cycle.Cycle{},
		CycleSeq: map[string]uint64{},

		ScheduleRuns: map[string][]ScheduleRun{},
		LastFires:    map[string]time.Time{},
		Staged:       map[string]Stage{},
	}
}

// AuditLog is a ring of the last AuditRetain entries plus the last sequence
// number handed out. Its JSON form is {"last_seq": n, "entries": [oldest..newest]}.
type AuditLog struct {
	buf     []AuditEntry // grows to AuditRetain, then overwritten at start
	start   int          // index of the oldest entry once buf is full
	lastSeq uint64
}

// append assigns the next sequence number to e and stores it, evicting the
// oldest entry when full.
func (a *AuditLog) append(e AuditEntry) AuditEntry {
	a.lastSeq++
	e.Seq = a.lastSeq
	if len(a.buf) < AuditRetain {
		a.buf = append(a.buf, e)
		return e
	}
	a.buf[a.start] = e
	a.start = (a.start + 1) % len(a.buf)
	return e
}

// entries returns a copy of the entries, oldest first.
func (a *AuditLog) entries() []AuditEntry {
	out := make([]AuditEntry, 0, len(a.buf))
	out = append(out, a.buf[a.start:]...)
	return append(out, a.buf[:a.start]...)
}

type auditJSON struct {
	LastSeq uint64       `json:"last_seq"`
	Entries []AuditEntry `json:"entries"`
}

// MarshalJSON implements json.Marshaler.
func (a AuditLog) MarshalJSON() ([]byte, error) {
	return json.Marshal(auditJSON{LastSeq: a.lastSeq, Entries: a.entries()})
}

// UnmarshalJSON implements json.Unmarshaler. It keeps the newest AuditRetain
// entries and rejects sequence numbers that do not strictly increase or that
// exceed last_seq, so a decoded log keeps the ring's invariants.
func (a *AuditLog) UnmarshalJSON(b []byte) error {
	var v auditJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var prev uint64
	for i, e := range v.Entries {
		if e.Seq <= prev || e.Seq > v.LastSeq {
			return fmt.Errorf("audit entry %d: seq %d out of order (previous %d, last_seq %d)", i, e.Seq, prev, v.LastSeq)
		}
		prev = e.Seq
	}
	if len(v.Entries) > AuditRetain {
		v.Entries = v.Entries[len(v.Entries)-AuditRetain:]
	}
	*a = AuditLog{buf: slices.Clone(v.Entries), lastSeq: v.LastSeq}
	return nil
}

// clone returns a deep copy, so a snapshot or a reader can use it without
// holding the FSM lock while Apply keeps mutating the original.
func (s *State) clone() *State {
	c := &State{
		Services: make(map[string]ServiceState, len(s.Services)),
		Breakers: make(map[string][]byte, len(s.Breakers)),
		Nodes:    make(map[string]NodeMeta, len(s.Nodes)),
		Freezes:  make(map[string]Freeze, len(s.Freezes)),
		Packages: make(map[string]PackageMeta, len(s.Packages)),
		Cycles:   make(map[string][]cycle.Cycle, len(s.Cycles)),
		CycleSeq: make(map[string]uint64, len(s.CycleSeq)),
		Audit:    AuditLog{buf: s.Audit.entries(), lastSeq: s.Audit.lastSeq},
	}
	for k, v := range s.Services {
		c.Services[k] = v.clone()
	}
	for k, v := range s.Breakers {
		c.Breakers[k] = bytes.Clone(v)
	}
	for k, v := range s.Nodes {
		c.Nodes[k] = v
	}
	for k, v := range s.Freezes {
		c.Freezes[k] = v
	}
	for k, v := range s.Packages {
		c.Packages[k] = v // no reference fields: a plain copy is deep
	}
	for k, v := range s.Cycles {
		cs := make([]cycle.Cycle, len(v))
		for i, cy := range v {
			cs[i] = cy.Clone()
		}
		c.Cycles[k] = cs
	}
	for k, v := range s.CycleSeq {
		c.CycleSeq[k] = v
	}
	s.cloneSchedules(c)
	return c
}

func (s ServiceState) clone() ServiceState {
	s.Hidden = slices.Clone(s.Hidden)
	return s
}

// sameAs reports whether two states are equal apart from UpdatedAt, which
// differs between retries of the same transition.
func (s ServiceState) sameAs(o ServiceState) bool {
	return s.Service == o.Service && s.Generation == o.Generation && s.Live == o.Live &&
		s.Pools == o.Pools && slices.Equal(s.Hidden, o.Hidden)
}

// validate checks a service state's own fields. It is pure, so Apply may call it.
func (s ServiceState) validate() error {
	var errs []error
	if s.Service == "" {
		errs = append(errs, errors.New("service: must be set"))
	}
	if s.Generation == 0 {
		errs = append(errs, errors.New("generation: must be 1 or more"))
	}
	if s.Live != PoolBlue && s.Live != PoolGreen {
		errs = append(errs, fmt.Errorf("live: %q is not %q or %q", s.Live, PoolBlue, PoolGreen))
	}
	for i, id := range s.Hidden {
		if id == "" {
			errs = append(errs, fmt.Errorf("hidden[%d]: empty instance id", i))
		}
	}
	return errors.Join(errs...)
}

// check validates a decoded State's cross-field invariants and fills nil maps.
func (s *State) check() error {
	if s.Services == nil {
		s.Services = map[string]ServiceState{}
	}
	if s.Breakers == nil {
		s.Breakers = map[string][]byte{}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]NodeMeta{}
	}
	if s.Freezes == nil {
		s.Freezes = map[string]Freeze{}
	}
	if s.Packages == nil {
		s.Packages = map[string]PackageMeta{}
	}
	if s.Cycles == nil {
		s.Cycles = map[string][]cycle.Cycle{}
	}
	if s.CycleSeq == nil {
		s.CycleSeq = map[string]uint64{}
	}
	errs := s.checkSchedules()
	for k, v := range s.Services {
		if k != v.Service {
			errs = append(errs, fmt.Errorf("services[%q]: service field is %q", k, v.Service))
		}
		if err := v.validate(); err != nil {
			errs = append(errs, fmt.Errorf("services[%q]: %w", k, err))
		}
	}
	for k, v := range s.Nodes {
		if k != v.ID {
			errs = append(errs, fmt.Errorf("nodes[%q]: id field is %q", k, v.ID))
		}
	}
	for k, v := range s.Freezes {
		if k != v.Service {
			errs = append(errs, fmt.Errorf("freezes[%q]: service field is %q", k, v.Service))
		}
	}
	for k, v := range s.Packages {
		if k != v.Digest {
			errs = append(errs, fmt.Errorf("packages[%q]: digest field is %q", k, v.Digest))
		}
		if err := v.validate(); err != nil {
			errs = append(errs, fmt.Errorf("packages[%q]: %w", k, err))
		}
	}
	for k, cs := range s.Cycles {
		for i, c := range cs {
			if c.Service != k {
				errs = append(errs, fmt.Errorf("cycles[%q][%d]: service field is %q", k, i, c.Service))
			}
			if c.Active() && i != len(cs)-1 {
				errs = append(errs, fmt.Errorf("cycles[%q][%d]: active cycle %s is not the newest", k, i, c.ID))
			}
		}
	}
	return errors.Join(errs...)
}

// encodeState is the one serialisation of State, shared by Raft snapshots,
// operator snapshot files and the restore command.
func encodeState(s *State) ([]byte, error) {
	return json.Marshal(s)
}

// decodeState decodes and checks a State. Unknown fields are ignored so an
// older server can still install a newer server's snapshot during a rolling
// upgrade; everything it does read must be consistent.
func decodeState(b []byte) (*State, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var s *State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if s == nil {
		return nil, errors.New("decode: state is null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode: unexpected data after the state document")
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	return s, nil
}

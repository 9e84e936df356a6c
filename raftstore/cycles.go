package raftstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/cyclerhq/cycler/cycle"
)

// CycleRetain is how many cycles of each service the replicated state keeps,
// newest last. Like AuditRetain it is a constant because every replica must
// trim identically.
const CycleRetain = 200

// cyclePutBody creates a cycle (Rev 1, no ID) or replaces revision Rev-1.
type cyclePutBody struct {
	Cycle cycle.Cycle `json:"cycle"`
}

// applyCyclePut creates or updates a cycle. Creation is refused while the
// service has an active cycle: this is the per-service cycle lock, and
// because Apply runs in log order on every replica, two leaders (or two
// racing API calls) can never both start one. An update must name the
// stored revision (compare-and-set), so the orchestrator and an operator's
// abort or pause never overwrite each other.
func applyCyclePut(st *State, body []byte) any {
	var cmd cyclePutBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(CyclePutCommand, err)
	}
	c := cmd.Cycle
	if err := c.Validate(); err != nil {
		return invalid(CyclePutCommand, err)
	}
	list := st.Cycles[c.Service]
	if c.ID == "" {
		if c.Rev != 1 {
			return invalid(CyclePutCommand, fmt.Errorf("a new cycle must have revision 1, not %d", c.Rev))
		}
		if n := len(list); n > 0 && c.RequestID != "" && list[n-1].RequestID == c.RequestID {
			return list[n-1].Clone() // a retry of a start that already committed
		}
		if n := len(list); n > 0 && list[n-1].Active() {
			a := list[n-1]
			return fmt.Errorf("service %q: cycle %s is in phase %s: %w", c.Service, a.ID, a.Phase, cycle.ErrInProgress)
		}
		st.CycleSeq[c.Service]++
		c.ID = fmt.Sprintf("%s-%d", c.Service, st.CycleSeq[c.Service])
		list = append(list, c)
		if len(list) > CycleRetain {
			list = list[len(list)-CycleRetain:]
		}
		st.Cycles[c.Service] = list
		return c.Clone()
	}
	i := len(list) - 1
	for ; i >= 0 && list[i].ID != c.ID; i-- {
	}
	if i < 0 {
		return invalid(CyclePutCommand, fmt.Errorf("cycle %s does not exist", c.ID))
	}
	if err := cycle.CheckChange(list[i], c); err != nil {
		return err
	}
	list[i] = c
	return c.Clone()
}

// CreateCycle commits a new cycle and returns it with its ID. Its times are
// stamped with the leader's clock. It fails with cycle.ErrInProgress while
// the service has an active cycle.
func (s *Store) CreateCycle(ctx context.Context, c cycle.Cycle) (cycle.Cycle, error) {
	c = c.Clone()
	c.ID, c.Rev = "", 1
	now := s.now()
	c.CreatedAt, c.UpdatedAt = now, now
	if len(c.Phases) == 0 {
		c.Phases = []cycle.Span{{Phase: c.Phase, Start: now}}
	}
	resp, err := s.apply(ctx, "create cycle", CyclePutCommand, cyclePutBody{Cycle: c})
	if err != nil {
		return cycle.Cycle{}, err
	}
	return resp.(cycle.Cycle), nil
}

// UpdateCycle commits next as the revision after next.Rev (which must be the
// stored revision) and returns it as stored. UpdatedAt is stamped, and a
// phase change closes the current span and opens the next one (FinishedAt
// too for a terminal phase), so every caller records timings the same way.
// It fails with cycle.ErrConflict when the stored cycle moved on meanwhile.
func (s *Store) UpdateCycle(ctx context.Context, next cycle.Cycle) (cycle.Cycle, error) {
	cur, ok := s.Cycle(next.ID)
	if !ok {
		return cycle.Cycle{}, fmt.Errorf("raftstore: update cycle: %w", invalid(CyclePutCommand, fmt.Errorf("cycle %s does not exist", next.ID)))
	}
	next = next.Clone()
	now := s.now()
	next.UpdatedAt = now
	if next.Phase != cur.Phase {
		if n := len(next.Phases); n > 0 && next.Phases[n-1].End.IsZero() {
			next.Phases[n-1].End = now
		}
		if next.Phase.Terminal() {
			next.FinishedAt = now
		} else {
			next.Phases = append(next.Phases, cycle.Span{Phase: next.Phase, Start: now})
		}
	}
	next.Rev++
	resp, err := s.apply(ctx, "update cycle", CyclePutCommand, cyclePutBody{Cycle: next})
	if err != nil {
		return cycle.Cycle{}, err
	}
	return resp.(cycle.Cycle), nil
}

// Cycle returns the cycle with id.
func (s *Store) Cycle(id string) (c cycle.Cycle, ok bool) {
	s.fsm.read(func(st *State) {
		for _, cs := range st.Cycles {
			for i := len(cs) - 1; i >= 0; i-- {
				if cs[i].ID == id {
					c, ok = cs[i].Clone(), true
					return
				}
			}
		}
	})
	return c, ok
}

// Cycles returns up to limit cycles of service (every service when
// empty), newest first. limit <= 0 means all.
func (s *Store) Cycles(service string, limit int) []cycle.Cycle {
	var out []cycle.Cycle
	s.fsm.read(func(st *State) {
		for svc, cs := range st.Cycles {
			if service != "" && svc != service {
				continue
			}
			for _, c := range cs {
				out = append(out, c.Clone())
			}
		}
	})
	sortCyclesNewestFirst(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// ActiveCycles returns every active cycle, at most one per service.
func (s *Store) ActiveCycles() []cycle.Cycle {
	var out []cycle.Cycle
	s.fsm.read(func(st *State) {
		for _, cs := range st.Cycles {
			if n := len(cs); n > 0 && cs[n-1].Active() {
				out = append(out, cs[n-1].Clone())
			}
		}
	})
	sortCyclesNewestFirst(out)
	return out
}

// LastCycle returns the newest cycle of service.
func (s *Store) LastCycle(service string) (c cycle.Cycle, ok bool) {
	s.fsm.read(func(st *State) {
		if cs := st.Cycles[service]; len(cs) > 0 {
			c, ok = cs[len(cs)-1].Clone(), true
		}
	})
	return c, ok
}

func sortCyclesNewestFirst(cs []cycle.Cycle) {
	// CreatedAt comes from the leader's clock, which may step; ties and
	// steps are broken by service and id so the order is stable.
	sortSlice(cs, func(a, b cycle.Cycle) bool {
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.ID > b.ID
	})
}

func sortSlice[T any](s []T, less func(a, b T) bool) {
	slices.SortStableFunc(s, func(a, b T) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
}

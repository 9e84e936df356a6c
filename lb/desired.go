package lb

import (
	"fmt"
	"slices"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/pool"
)

// plan is what the inputs ask for: a generation and a set to apply, or the
// reason there is nothing to apply (waiting) or the set is refused.
type plan struct {
	gen      uint64
	live     pool.Pool
	backends []lbdrivers.Backend
	// waiting is set when there is no state (or no instance list) yet.
	waiting string
	// refused is set when the set is smaller than min_live; serving is
	// then the size of the refused set.
	refused string
	serving int
}

// inputs is a copy of what the watchers last delivered.
type inputs struct {
	state     pool.State
	haveState bool
	inst      pool.Instances
	haveInst  bool
}

// desired works out the plan for svc from in. It is a pure function of its
// arguments, so the rules are table-tested without Consul or an LB.
func desired(svc string, minLive int, in inputs) plan {
	if !in.haveState {
		return plan{waiting: "waiting for the leader to publish " + pool.StateKey(svc)}
	}
	st := in.state
	p := plan{gen: st.Generation, live: st.Live}
	if !in.haveInst {
		p.waiting = fmt.Sprintf("generation %d published; waiting for Consul to report the instances of service %q", st.Generation, svc)
		return p
	}
	var total, hidden, maint, failing int
	for _, i := range in.inst.All {
		if i.Pool != st.Live {
			continue
		}
		total++
		switch {
		case slices.Contains(st.Hidden, i.ID):
			hidden++
		case i.Maintenance:
			maint++
		case !i.Passing:
			failing++
		default:
			p.backends = append(p.backends, lbdrivers.Backend{ID: i.ID, Address: i.Address, Port: i.Port})
		}
	}
	p.backends = lbdrivers.Sorted(p.backends)
	if len(p.backends) < minLive {
		p.refused = fmt.Sprintf("generation %d: %d serving backends in live pool %s, fewer than min_live %d "+
			"(%d instances in the pool: %d hidden by the leader, %d in maintenance, %d failing checks); the last good set is kept",
			st.Generation, len(p.backends), st.Live, minLive, total, hidden, maint, failing)
		p.serving, p.backends = len(p.backends), nil
	}
	return p
}

// sameSet reports whether a and b hold the same backends, ids included, in
// any order. lbdrivers.Equal compares addresses only, which is what a
// read-back can prove; an ack should also name the right instances.
func sameSet(a, b []lbdrivers.Backend) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := lbdrivers.Sorted(a), lbdrivers.Sorted(b)
	for i := range sa {
		if sa[i] != sb[i] {
			return false
		}
	}
	return true
}

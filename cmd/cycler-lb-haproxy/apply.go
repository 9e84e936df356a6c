package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// maxIDLen bounds a backend id stored in the map.
const maxIDLen = 256

// op is what a step does to a slot.
type op int

const (
	opAddr  op = iota // set server <slot> addr <ip> port <port>
	opReady           // set server <slot> state ready
	opMaint           // set server <slot> state maint
)

// step is one runtime API command on one slot.
type step struct {
	slot string
	op   op
	// to is the address opAddr sets.
	to netip.AddrPort
}

// String renders the step as the command it sends.
func (s step) String() string {
	switch s.op {
	case opAddr:
		return fmt.Sprintf("%s addr %s port %d", s.slot, s.to.Addr(), s.to.Port())
	case opReady:
		return s.slot + " state ready"
	default:
		return s.slot + " state maint"
	}
}

// run sends the step to HAProxy. An address change first waits until the
// slot is quiet (quiesce).
func (s step) run(ctx context.Context, api *runtimeAPI, t target) error {
	server := t.backend + "/" + s.slot
	switch s.op {
	case opAddr:
		if err := quiesce(ctx, api, t, s.slot); err != nil {
			return err
		}
		return api.setAddr(ctx, server, s.to.Addr().String(), strconv.Itoa(int(s.to.Port())))
	case opReady:
		return api.expectEmpty(ctx, "set", "server", server, "state", "ready")
	default:
		return api.expectEmpty(ctx, "set", "server", server, "state", "maint")
	}
}

// quiescePoll is the pause between two looks at a slot's connections.
const quiescePoll = 20 * time.Millisecond

// quiesce puts slot in maint and waits until it has no connection left, so
// that changing its address cannot send a request over a connection to its
// previous address: HAProxy keeps a server's connections when its address
// changes. Entering maint closes the slot's idle connections, but a request
// in flight at that moment puts its connection back in the idle pool when
// it ends; so once nothing is in flight, the idle connections left are
// closed by passing the slot through drain back to maint (it takes no new
// requests in either state). It gives up after t.drain.
func quiesce(ctx context.Context, api *runtimeAPI, t target, slot string) error {
	server := t.backend + "/" + slot
	if err := api.expectEmpty(ctx, "set", "server", server, "state", "maint"); err != nil {
		return err
	}
	deadline := time.Now().Add(t.drain)
	for {
		out, err := api.do(ctx, "show", "servers", "conn", t.backend)
		if err != nil {
			return err
		}
		byServer, err := parseConns(out)
		if err != nil {
			return fmt.Errorf("show servers conn %s: %w", t.backend, err)
		}
		c, ok := byServer[server]
		if !ok {
			return fmt.Errorf("show servers conn %s does not list %s", t.backend, server)
		}
		if c.used == 0 && c.idle == 0 {
			return nil
		}
		if c.used == 0 {
			for _, state := range []string{"drain", "maint"} {
				if err := api.expectEmpty(ctx, "set", "server", server, "state", state); err != nil {
					return err
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slot %s still has %d requests in flight and %d idle connections to its previous address after %s; "+
				"add slots (server-template) so that switches need not reuse busy ones, or raise --drain-timeout",
				slot, c.used, c.idle, t.drain)
		}
		timer := time.NewTimer(quiescePoll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("wait for slot %s to be quiet: %w", slot, ctx.Err())
		case <-timer.C:
		}
	}
}

// checkBackends turns a requested set into addresses in canonical order and
// their ids. HAProxy's `set server addr` takes IP addresses only.
func checkBackends(backends []lbdrivers.Backend) ([]netip.AddrPort, map[netip.AddrPort]string, error) {
	if len(backends) == 0 {
		return nil, nil, errors.New("the request has no backends; an empty set is never applied")
	}
	ids := map[netip.AddrPort]string{}
	var want []netip.AddrPort
	var errs []error
	for _, b := range lbdrivers.Sorted(backends) {
		a, err := netip.ParseAddr(b.Address)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, fmt.Errorf("backend %q: address %q is not an IP address without a zone; HAProxy's runtime API sets IP addresses only", b.ID, b.Address))
			continue
		case b.Port < 1 || b.Port > 65535:
			errs = append(errs, fmt.Errorf("backend %q: port %d is out of range 1-65535", b.ID, b.Port))
			continue
		case b.ID == "" || len(b.ID) > maxIDLen || !utf8.ValidString(b.ID):
			errs = append(errs, fmt.Errorf("backend at %s: id %q must be 1-%d bytes of UTF-8", b.HostPort(), b.ID, maxIDLen))
			continue
		}
		ap := netip.AddrPortFrom(a, uint16(b.Port))
		if other, dup := ids[ap]; dup {
			errs = append(errs, fmt.Errorf("backends %q and %q are both at %s", other, b.ID, ap))
			continue
		}
		ids[ap] = b.ID
		want = append(want, ap)
	}
	return want, ids, errors.Join(errs...)
}

// plan returns the steps that make exactly the addresses in want take
// traffic in slots, keeping slots that already serve a wanted address. It
// fills free slots first (preferring one that already holds the address),
// then reuses retired slots one at a time (maint, addr, ready), and puts the
// remaining retired slots in maint last, so the old set serves until the new
// one does. len(want) must not exceed len(slots).
func plan(slots []server, want []netip.AddrPort) []step {
	wanted := map[netip.AddrPort]bool{}
	for _, ap := range want {
		wanted[ap] = true
	}
	kept := map[netip.AddrPort]bool{}
	var retired, free []server
	for _, s := range slots {
		ap, ok := s.addrPort()
		switch {
		case s.serving() && ok && wanted[ap] && !kept[ap]:
			kept[ap] = true
		case s.serving():
			retired = append(retired, s)
		default:
			free = append(free, s)
		}
	}
	var steps []step
	for _, ap := range want {
		if kept[ap] {
			continue
		}
		if len(free) > 0 {
			i := slices.IndexFunc(free, func(s server) bool { cur, ok := s.addrPort(); return ok && cur == ap })
			if i < 0 {
				i = 0
			}
			s := free[i]
			free = slices.Delete(free, i, i+1)
			if cur, ok := s.addrPort(); !ok || cur != ap {
				steps = append(steps, step{slot: s.name, op: opAddr, to: ap})
			}
			steps = append(steps, step{slot: s.name, op: opReady})
			continue
		}
		s := retired[0]
		retired = retired[1:]
		steps = append(steps, step{slot: s.name, op: opMaint}, step{slot: s.name, op: opAddr, to: ap}, step{slot: s.name, op: opReady})
	}
	for _, s := range retired {
		steps = append(steps, step{slot: s.name, op: opMaint})
	}
	return steps
}

// restorePlan returns the steps that bring the slots in now back to how
// they were in before: first the slots that served (so the previous set is
// whole again), then maint for those that did not. A slot already as it was
// gets no step.
func restorePlan(before, now []server) []step {
	cur := map[string]server{}
	for _, s := range now {
		cur[s.name] = s
	}
	var restore, park []step
	for _, b := range before {
		c := cur[b.name]
		sameAddr := b.addr == c.addr && b.port == c.port
		switch {
		case b.serving() && c.serving() && sameAddr:
		case b.serving():
			if ap, ok := b.addrPort(); ok && !sameAddr {
				if c.serving() {
					restore = append(restore, step{slot: b.name, op: opMaint})
				}
				restore = append(restore, step{slot: b.name, op: opAddr, to: ap})
			}
			restore = append(restore, step{slot: b.name, op: opReady})
		case c.serving():
			park = append(park, step{slot: b.name, op: opMaint})
		}
	}
	return append(restore, park...)
}

// restore puts the slots back as they were in before, after a failed
// apply. It reads the slots again (the failed command may or may not have
// taken effect) and goes on past a failing step, so that as much of the
// previous set as possible serves; it returns every failure.
func restore(ctx context.Context, api *runtimeAPI, t target, before []server) error {
	st, err := readState(ctx, api, t)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range restorePlan(before, st.slots) {
		if err := s.run(ctx, api, t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// apply makes the backend serve exactly backends, tagged gen. See the
// package documentation for the order of the steps. Warnings (a stale id
// record that could not be removed) go to warn.
func apply(ctx context.Context, api *runtimeAPI, t target, gen uint64, backends []lbdrivers.Backend, warn io.Writer) error {
	want, ids, err := checkBackends(backends)
	if err != nil {
		return usageError{err}
	}
	st, err := readState(ctx, api, t)
	if err != nil {
		return err
	}
	if gen < st.gen {
		return fmt.Errorf("%w: backend %s serves generation %d, offered %d; nothing changed", errStale, t.backend, st.gen, gen)
	}
	if un := st.unmanaged(); len(un) > 0 {
		return fmt.Errorf("backend %s: servers %v take traffic but are not %s<n> slots, so the backend would not route only to the set; "+
			"remove them or put them in maint; nothing changed", t.backend, un, t.prefix)
	}
	if len(want) > len(st.slots) {
		return fmt.Errorf("the set has %d backends but backend %s has %d slots (%s1-%s%d); raise the server-template count "+
			"(twice the largest set switches without reusing a slot) and reload haproxy; nothing changed",
			len(want), t.backend, len(st.slots), t.prefix, t.prefix, len(st.slots))
	}

	fail := func(err error) error {
		// The generation is not written yet: put the slots back so HAProxy
		// keeps serving its previous set, as the protocol requires.
		if rerr := restore(ctx, api, t, st.slots); rerr != nil {
			return fmt.Errorf("%w; restoring the previous set also failed: %w", err, rerr)
		}
		return fmt.Errorf("%w; the previous set was restored", err)
	}
	for _, s := range plan(st.slots, want) {
		if err := s.run(ctx, api, t); err != nil {
			return fail(err)
		}
	}
	for _, ap := range want {
		if err := st.setRecord(ctx, api, t.idKey(ap), escapeID(ids[ap])); err != nil {
			return fail(err)
		}
	}
	if err := st.setRecord(ctx, api, t.genKey(), strconv.FormatUint(gen, 10)); err != nil {
		return fail(err)
	}
	// Ids of addresses no longer served are only labels; a failure to
	// remove one does not undo the switch.
	for key := range st.records {
		rest, ok := strings.CutPrefix(key, t.idPrefix())
		if !ok {
			continue
		}
		if ap, err := netip.ParseAddrPort(rest); err == nil && key == t.idKey(ap) && ids[ap] != "" {
			continue
		}
		if err := api.expectEmpty(ctx, "del", "map", t.mapPath, key); err != nil {
			fmt.Fprintf(warn, "cycler-lb-haproxy: warning: remove stale id record: %v\n", err)
		}
	}
	return verify(ctx, api, t, gen, want, ids)
}

// setRecord stores value under key in the map: set map when the key exists
// (every entry with that key changes), add map when it does not, nothing
// when it already holds value.
func (st *state) setRecord(ctx context.Context, api *runtimeAPI, key, value string) error {
	cur, ok := st.records[key]
	switch {
	case ok && cur == value:
		return nil
	case ok:
		return api.expectEmpty(ctx, "set", "map", st.t.mapPath, key, value)
	default:
		return api.expectEmpty(ctx, "add", "map", st.t.mapPath, key, value)
	}
}

// verify reads the backend back and requires exactly gen and the set.
func verify(ctx context.Context, api *runtimeAPI, t target, gen uint64, want []netip.AddrPort, ids map[netip.AddrPort]string) error {
	st, err := readState(ctx, api, t)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	g, got := st.applied()
	var wantSet []lbdrivers.Backend
	for _, ap := range want {
		wantSet = append(wantSet, lbdrivers.Backend{ID: ids[ap], Address: ap.Addr().String(), Port: int(ap.Port())})
	}
	if g != gen || !slices.Equal(got, lbdrivers.Sorted(wantSet)) {
		return fmt.Errorf("read back: backend %s serves generation %d %v after applying %d %v; is something else changing it?",
			t.backend, g, got, gen, lbdrivers.Sorted(wantSet))
	}
	return nil
}

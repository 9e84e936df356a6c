package varnish

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// Admin health values: what backend.set_health takes, and what
// backend.list -j reports in admin_health (varnish 7.1 reports "auto" as
// "probe").
const (
	healthOn    = "healthy"
	healthOff   = "sick"
	healthAuto  = "auto"
	healthProbe = "probe"
)

// state is what varnishd holds for the active cycler VCL.
type state struct {
	// vcls are all loaded VCLs, from vcl.list -j.
	vcls []vclEntry
	// vcl is the active cycler VCL and src its source (vcl.show).
	vcl vclName
	src string
	// gen is the generation the markers hold (legacy: the VCL's).
	gen uint64
	// defs are the VCL's backends, live and hidden, by VCL name.
	defs map[string]lbdrivers.Backend
	// admin is the admin health of every backend and marker, by VCL name.
	admin map[string]string
	// legacy marks a VCL of an older cyclerd: no markers, every backend
	// live, the generation compiled in.
	legacy bool
}

// isUp reports whether admin health lets a backend take traffic (a probed
// one still needs its probe to pass).
func isUp(admin string) bool { return admin != healthOff }

// live returns the backends that take traffic, sorted.
func (s state) live() []lbdrivers.Backend {
	var out []lbdrivers.Backend
	for name, b := range s.defs {
		if s.legacy || isUp(s.admin[name]) {
			out = append(out, b)
		}
	}
	return lbdrivers.Sorted(out)
}

// readState reads the active cycler VCL: its backends from vcl.show, their
// admin health and the generation markers from backend.list -j. ok is false
// when the active VCL is not a cycler VCL (before the first Apply).
func readState(c *cli) (st state, ok bool, err error) {
	if st.vcls, err = listVCLs(c); err != nil {
		return state{}, false, err
	}
	if st.vcl, ok = activeCycler(st.vcls); !ok {
		return st, false, nil
	}
	if st.src, err = c.do("vcl.show", st.vcl.String()); err != nil {
		return state{}, false, err
	}
	info, err := parseVCL(st.src)
	if err != nil {
		return state{}, false, fmt.Errorf("%w: VCL %s: %v", ErrReadBack, st.vcl, err)
	}
	st.defs, st.legacy = info.defs, info.legacy
	// Backends and markers are listed apart, to keep each answer well
	// under varnishd's cli_limit.
	if st.admin, err = listHealth(c, st.vcl.String(), "b_*"); err != nil {
		return state{}, false, err
	}
	for name := range st.admin {
		if _, ok := st.defs[name]; !ok {
			return state{}, false, fmt.Errorf("%w: varnish lists backend %s.%s that the VCL does not define", ErrReadBack, st.vcl, name)
		}
	}
	if len(st.admin) != len(st.defs) {
		return state{}, false, fmt.Errorf("%w: VCL %s defines %d backends, varnish lists %d", ErrReadBack, st.vcl, len(st.defs), len(st.admin))
	}
	if st.legacy {
		st.gen = info.legacyGen
		return st, true, nil
	}
	markers, err := listHealth(c, st.vcl.String(), "cycler_g*")
	if err != nil {
		return state{}, false, err
	}
	for _, name := range markerNames() {
		h, ok := markers[name]
		if !ok {
			return state{}, false, fmt.Errorf("%w: VCL %s has no generation marker %s", ErrReadBack, st.vcl, name)
		}
		st.admin[name] = h
	}
	st.gen = st.markerGen()
	return st, true, nil
}

// markerGen reads the generation out of the selected bank.
func (s state) markerGen() uint64 {
	bank := s.bank()
	var gen uint64
	for k := range genBits {
		if isUp(s.admin[markerBit(bank, k)]) {
			gen |= 1 << k
		}
	}
	return gen
}

// bank returns the bank VCL reads the generation from.
func (s state) bank() byte {
	if isUp(s.admin[genSelect]) {
		return 'b'
	}
	return 'a'
}

// listHealth returns the admin health of the backends of vcl matching glob,
// by unqualified name.
func listHealth(c *cli, vcl, glob string) (map[string]string, error) {
	out, err := c.do("backend.list", "-j", vcl+"."+glob)
	if err != nil {
		return nil, err
	}
	items, err := jsonItems(out)
	if err != nil || len(items) != 1 {
		return nil, fmt.Errorf("parse backend.list -j: %v (%d items)", err, len(items))
	}
	var listed map[string]struct {
		Type  string `json:"type"`
		Admin string `json:"admin_health"`
	}
	if err := json.Unmarshal(items[0], &listed); err != nil {
		return nil, fmt.Errorf("parse backend.list -j: %w", err)
	}
	health := map[string]string{}
	for full, b := range listed {
		if b.Type != "backend" {
			continue // the director
		}
		switch b.Admin {
		case healthOn, healthOff, healthAuto, healthProbe:
		default:
			return nil, fmt.Errorf("%w: backend %s has admin health %q", ErrReadBack, full, b.Admin)
		}
		health[strings.TrimPrefix(full, vcl+".")] = b.Admin
	}
	return health, nil
}

// sameHealth reports whether admin health cur is already want.
func sameHealth(cur, want string) bool {
	if want == healthAuto {
		return cur == healthAuto || cur == healthProbe
	}
	return cur == want
}

// setHealth sets the admin health of one backend of vcl, by its qualified
// name: an unqualified one would reach the active VCL only.
func setHealth(c *cli, vcl, name, want string) error {
	_, err := c.do("backend.set_health", vcl+"."+name, want)
	return err
}

// setBackends makes the backends named in live take traffic and hides the
// other backends of defs. The live ones go first, so that varnish never
// has no healthy backend in the middle of a flip. cur is the health now,
// nil for a VCL that is not active yet (everything is then set).
func (d *Driver) setBackends(c *cli, vcl string, cur map[string]string, defs map[string]lbdrivers.Backend, live map[string]bool) error {
	on := healthOn
	if d.opts.Probe != nil {
		on = healthAuto // the probes decide among the live ones
	}
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, pass := range []bool{true, false} {
		want := on
		if !pass {
			want = healthOff
		}
		for _, n := range names {
			if live[n] != pass || (cur != nil && sameHealth(cur[n], want)) {
				continue
			}
			if err := setHealth(c, vcl, n, want); err != nil {
				return err
			}
		}
	}
	return nil
}

// setGeneration writes gen into the bank VCL does not read, then selects
// that bank with one command, so a request reads one whole generation or
// the other, never a mix of bits. cur is the health now, nil for a VCL
// that is not active yet: all markers are then set sick at once (bank a
// selected) and bank a's bits written.
func setGeneration(c *cli, vcl string, cur map[string]string, gen uint64) error {
	bank, sel := byte('a'), healthOff
	if cur == nil {
		if err := setHealth(c, vcl, "cycler_g*", healthOff); err != nil {
			return err
		}
		cur = map[string]string{}
		for _, n := range markerNames() {
			cur[n] = healthOff
		}
	} else if !isUp(cur[genSelect]) {
		bank, sel = 'b', healthOn
	}
	for k := range genBits {
		want := healthOff
		if gen>>k&1 == 1 {
			want = healthOn
		}
		name := markerBit(bank, k)
		if isUp(cur[name]) == (want == healthOn) {
			continue
		}
		if err := setHealth(c, vcl, name, want); err != nil {
			return err
		}
	}
	if isUp(cur[genSelect]) == (sel == healthOn) {
		return nil
	}
	return setHealth(c, vcl, genSelect, sel)
}

// liveNames returns the VCL names of backends.
func liveNames(backends []lbdrivers.Backend) map[string]bool {
	out := make(map[string]bool, len(backends))
	for _, b := range backends {
		out[backendName(b)] = true
	}
	return out
}

// union returns set and the backends of extra not in it, sorted.
func union(set, extra []lbdrivers.Backend) []lbdrivers.Backend {
	out := slices.Clone(set)
	names := liveNames(set)
	for _, b := range extra {
		if !names[backendName(b)] {
			out = append(out, b)
		}
	}
	return lbdrivers.Sorted(out)
}

package varnish

import (
	"context"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// healthFake starts a fake CLI that accepts every set_health command on vcl
// and returns it with a connection to it.
func healthFake(t *testing.T, vcl string, backends []string) (*fakeCLI, *cli) {
	t.Helper()
	f := &fakeCLI{secret: []byte("s3cret\n"), answers: map[string]string{}}
	for _, n := range append(append(markerNames(), backends...), "cycler_g*") {
		for _, h := range []string{healthOn, healthOff, healthAuto} {
			f.answers["backend.set_health "+vcl+"."+n+" "+h] = "200 "
		}
	}
	startFakeCLI(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	c, err := dialCLI(ctx, f.addr, secretFile(t, "s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return f, c
}

// commands returns the command lines f has seen.
func (f *fakeCLI) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// replay applies the set_health commands in seen to health one by one and
// calls check after each.
func replay(t *testing.T, health map[string]string, seen []string, check func(step int, health map[string]string)) {
	t.Helper()
	for i, line := range seen {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "backend.set_health" {
			t.Fatalf("unexpected command %q", line)
		}
		_, glob, _ := strings.Cut(f[1], ".")
		for name := range health {
			if ok, _ := path.Match(glob, name); ok {
				health[name] = f[2]
			}
		}
		check(i, health)
	}
}

// markers returns marker health holding gen in bank, the selector set so.
func markers(bank byte, gen uint64) map[string]string {
	h := map[string]string{}
	for _, n := range markerNames() {
		h[n] = healthOff
	}
	for k := range genBits {
		if gen>>k&1 == 1 {
			h[markerBit(bank, k)] = healthOn
		}
	}
	if bank == 'b' {
		h[genSelect] = healthOn
	}
	return h
}

func TestSetGenerationNeverMixes(t *testing.T) {
	tests := []struct {
		name     string
		give     map[string]string // nil: a new VCL
		from, to uint64
	}{
		{name: "bank a to b", give: markers('a', 5), from: 5, to: 6},
		{name: "bank b to a", give: markers('b', 6), from: 6, to: 7},
		{name: "many bits", give: markers('a', 1<<47|1), from: 1<<47 | 1, to: 1<<47 | 1<<20 | 2},
		{name: "largest", give: markers('b', 0), from: 0, to: MaxGeneration},
		{name: "new VCL", give: nil, to: 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := healthFake(t, "cycler_1_1", nil)
			if err := setGeneration(c, "cycler_1_1", maps.Clone(tt.give), tt.to); err != nil {
				t.Fatal(err)
			}
			health := maps.Clone(tt.give)
			if health == nil {
				// A new VCL starts with every marker healthy; it is not
				// active yet, so its steps need not be whole generations.
				health = markers('b', MaxGeneration)
			}
			seen := f.commands()
			replay(t, health, seen, func(step int, h map[string]string) {
				s := state{admin: h}
				if g := s.markerGen(); tt.give != nil && g != tt.from && g != tt.to {
					t.Errorf("after %q VCL reads generation %d, want %d or %d", seen[step], g, tt.from, tt.to)
				}
			})
			if g := (state{admin: health}).markerGen(); g != tt.to {
				t.Errorf("markers hold %d after %v, want %d", g, seen, tt.to)
			}
		})
	}
}

func TestSetBackendsLiveFirst(t *testing.T) {
	blue := []lbdrivers.Backend{{ID: "b1", Address: "10.0.0.1", Port: 80}, {ID: "b2", Address: "10.0.0.2", Port: 80}}
	green := []lbdrivers.Backend{{ID: "g1", Address: "10.0.1.1", Port: 80}, {ID: "g2", Address: "10.0.1.2", Port: 80}}
	all := union(blue, green)
	defs := map[string]lbdrivers.Backend{}
	health := map[string]string{}
	for _, b := range all {
		defs[backendName(b)] = b
		health[backendName(b)] = healthOff
	}
	for _, b := range blue {
		health[backendName(b)] = healthOn
	}
	f, c := healthFake(t, "cycler_1_1", slices.Collect(maps.Keys(defs)))
	d := &Driver{}
	if err := d.setBackends(c, "cycler_1_1", maps.Clone(health), defs, liveNames(green)); err != nil {
		t.Fatal(err)
	}
	seen := f.commands()
	if len(seen) != 4 {
		t.Fatalf("commands %v, want 4 (two up, two down)", seen)
	}
	replay(t, health, seen, func(step int, h map[string]string) {
		if !slices.ContainsFunc(slices.Collect(maps.Values(h)), isUp) {
			t.Errorf("after %q no backend is healthy", seen[step])
		}
	})
	got := state{defs: defs, admin: health}.live()
	if !slices.Equal(got, lbdrivers.Sorted(green)) {
		t.Errorf("live after the flip = %v, want %v", got, green)
	}
}

func TestApplyRefusesHugeGeneration(t *testing.T) {
	o := goldenOptions()
	o.AdminAddr = "127.0.0.1:9"
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	set := []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 80}}
	if err := d.Apply(ctx, MaxGeneration+1, set); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Apply(MaxGeneration+1): err %v, want the generation limit before any connection", err)
	}
}

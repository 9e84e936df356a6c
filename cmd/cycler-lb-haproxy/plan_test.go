package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// slot builds a server; admin 5 is how `server-template ... disabled`
// starts (forced and config maintenance), 4 is ready after that.
func slot(name, addr string, port, admin int) server {
	return server{name: name, addr: addr, port: port, admin: admin}
}

const (
	adminReady = 4
	adminMaint = 5
	adminDrain = 4 | 0x08
)

func aps(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

func render(steps []step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.String())
	}
	return out
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		slots []server
		want  []netip.AddrPort
		steps []string
	}{
		{
			name:  "first apply fills free slots",
			slots: []server{slot("s1", "0.0.0.0", 0, adminMaint), slot("s2", "0.0.0.0", 0, adminMaint), slot("s3", "0.0.0.0", 0, adminMaint)},
			want:  aps("10.0.0.1:80", "10.0.0.2:80"),
			steps: []string{"s1 addr 10.0.0.1 port 80", "s1 state ready", "s2 addr 10.0.0.2 port 80", "s2 state ready"},
		},
		{
			name:  "same set sends nothing",
			slots: []server{slot("s1", "10.0.0.1", 80, adminReady), slot("s2", "10.0.0.2", 80, adminReady), slot("s3", "0.0.0.0", 0, adminMaint)},
			want:  aps("10.0.0.2:80", "10.0.0.1:80"),
		},
		{
			name: "switch with room: new set ready before the old leaves",
			slots: []server{slot("s1", "10.0.0.1", 80, adminReady), slot("s2", "10.0.0.2", 80, adminReady),
				slot("s3", "0.0.0.0", 0, adminMaint), slot("s4", "0.0.0.0", 0, adminMaint)},
			want: aps("10.0.1.1:80", "10.0.1.2:80"),
			steps: []string{"s3 addr 10.0.1.1 port 80", "s3 state ready", "s4 addr 10.0.1.2 port 80", "s4 state ready",
				"s1 state maint", "s2 state maint"},
		},
		{
			name:  "switch without room reuses retired slots one at a time",
			slots: []server{slot("s1", "10.0.0.1", 80, adminReady), slot("s2", "10.0.0.2", 80, adminReady)},
			want:  aps("10.0.1.1:80", "10.0.1.2:80"),
			steps: []string{"s1 state maint", "s1 addr 10.0.1.1 port 80", "s1 state ready",
				"s2 state maint", "s2 addr 10.0.1.2 port 80", "s2 state ready"},
		},
		{
			name: "rollback to a parked address only readies its slot",
			slots: []server{slot("s1", "10.0.0.1", 80, adminMaint), slot("s2", "10.0.0.2", 80, adminMaint),
				slot("s3", "10.0.1.1", 80, adminReady)},
			want:  aps("10.0.0.2:80"),
			steps: []string{"s2 state ready", "s3 state maint"},
		},
		{
			name:  "partial overlap keeps the common backend in place",
			slots: []server{slot("s1", "10.0.0.1", 80, adminReady), slot("s2", "10.0.0.2", 80, adminReady), slot("s3", "0.0.0.0", 0, adminMaint)},
			want:  aps("10.0.0.2:80", "10.0.0.3:80"),
			steps: []string{"s3 addr 10.0.0.3 port 80", "s3 state ready", "s1 state maint"},
		},
		{
			name:  "a duplicate serving slot is retired",
			slots: []server{slot("s1", "10.0.0.1", 80, adminReady), slot("s2", "10.0.0.1", 80, adminReady)},
			want:  aps("10.0.0.1:80"),
			steps: []string{"s2 state maint"},
		},
		{
			name:  "a drained slot counts as free",
			slots: []server{slot("s1", "10.0.0.1", 80, adminDrain), slot("s2", "10.0.0.9", 80, adminReady)},
			want:  aps("10.0.0.1:80"),
			steps: []string{"s1 state ready", "s2 state maint"},
		},
		{
			name:  "IPv6",
			slots: []server{slot("s1", "0.0.0.0", 0, adminMaint)},
			want:  aps("[fd00::1]:8080"),
			steps: []string{"s1 addr fd00::1 port 8080", "s1 state ready"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(plan(tt.slots, tt.want)); !slices.Equal(got, tt.steps) {
				t.Fatalf("plan =\n%q\nwant\n%q", got, tt.steps)
			}
		})
	}
}

func TestRestorePlan(t *testing.T) {
	before := []server{slot("s1", "10.0.0.1", 80, adminReady), slot("s2", "0.0.0.0", 0, adminMaint), slot("s3", "10.0.0.3", 80, adminReady)}
	tests := []struct {
		name string
		now  []server
		want []string
	}{
		{name: "nothing changed", now: before, want: nil},
		{
			name: "a free slot was filled",
			now:  []server{before[0], slot("s2", "10.0.1.1", 80, adminReady), before[2]},
			want: []string{"s2 state maint"},
		},
		{
			name: "a serving slot was reused",
			now:  []server{slot("s1", "10.0.1.2", 80, adminReady), slot("s2", "10.0.1.1", 80, adminReady), before[2]},
			want: []string{"s1 state maint", "s1 addr 10.0.0.1 port 80", "s1 state ready", "s2 state maint"},
		},
		{
			name: "a serving slot was retired",
			now:  []server{before[0], before[1], slot("s3", "10.0.0.3", 80, adminMaint)},
			want: []string{"s3 state ready"},
		},
		{
			name: "a slot in maint got a new address",
			now:  []server{before[0], before[1], slot("s3", "10.0.1.3", 80, adminMaint)},
			want: []string{"s3 addr 10.0.0.3 port 80", "s3 state ready"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(restorePlan(before, tt.now)); !slices.Equal(got, tt.want) {
				t.Fatalf("restorePlan =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestCheckBackends(t *testing.T) {
	tests := []struct {
		name     string
		give     []lbdrivers.Backend
		want     []netip.AddrPort
		errMatch []string
	}{
		{
			name: "canonical order",
			give: []lbdrivers.Backend{{ID: "b", Address: "10.0.0.2", Port: 80}, {ID: "a", Address: "10.0.0.1", Port: 80}},
			want: aps("10.0.0.1:80", "10.0.0.2:80"),
		},
		{name: "empty", give: nil, errMatch: []string{"no backends"}},
		{
			name:     "hostname",
			give:     []lbdrivers.Backend{{ID: "a", Address: "app.example", Port: 80}},
			errMatch: []string{`"app.example" is not an IP address`},
		},
		{
			name:     "zone",
			give:     []lbdrivers.Backend{{ID: "a", Address: "fe80::1%eth0", Port: 80}},
			errMatch: []string{"without a zone"},
		},
		{
			name: "every problem at once",
			give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 0}, {ID: "", Address: "10.0.0.2", Port: 80},
				{ID: "c", Address: "10.0.0.3", Port: 80}, {ID: "d", Address: "10.0.0.3", Port: 80}},
			errMatch: []string{"port 0", "id \"\"", `"c" and "d" are both at 10.0.0.3:80`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := checkBackends(tt.give)
			if len(tt.errMatch) == 0 && (err != nil || !slices.Equal(got, tt.want)) {
				t.Fatalf("checkBackends = %v, %v; want %v", got, err, tt.want)
			}
			for _, m := range tt.errMatch {
				if err == nil || !strings.Contains(err.Error(), m) {
					t.Errorf("checkBackends error %v does not contain %q", err, m)
				}
			}
		})
	}
}

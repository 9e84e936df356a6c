package main

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// serversState is `show servers state web` as HAProxy 2.6.12 prints it, for
// a server-template of 4 slots with s1 and s2 filled and s3 drained.
const serversState = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 s1 127.0.0.1 2 4 1 1 93 1 0 0 8 0 0 0 - 18101 - 0 0 - - 0
3 web 2 s2 ::1 2 4 1 1 0 1 0 0 8 0 0 0 - 18102 - 0 0 - - 0
3 web 3 s3 10.0.0.3 2 12 1 1 124 1 0 0 8 0 0 0 - 80 - 0 0 - - 0
3 web 4 s4 0.0.0.0 0 5 1 1 124 1 0 0 8 0 0 0 - 0 - 0 0 - - 0
3 web 5 static 10.9.9.9 0 5 1 1 124 1 0 0 8 0 0 0 - 80 - 0 0 - - 0
`

func TestParseServers(t *testing.T) {
	got, err := parseServers(strings.TrimRight(serversState, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []server{
		slot("s1", "127.0.0.1", 18101, 4), slot("s2", "::1", 18102, 4), slot("s3", "10.0.0.3", 80, 12),
		slot("s4", "0.0.0.0", 0, 5), slot("static", "10.9.9.9", 80, 5),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parseServers =\n%v\nwant\n%v", got, want)
	}
}

func TestParseServersErrors(t *testing.T) {
	tests := []struct {
		name     string
		give     string
		errMatch string
	}{
		{name: "unknown backend", give: "Can't find backend.", errMatch: "Can't find backend. (is the backend in haproxy.cfg? name it with --backend)"},
		{name: "permission", give: "Permission denied", errMatch: `"Permission denied"`},
		{name: "no column", give: "1\n# be_id srv_name\n3 s1", errMatch: "no column srv_addr"},
		{name: "short line", give: "1\n# srv_name srv_addr srv_admin_state srv_port\ns1 10.0.0.1 4", errMatch: "has 3 fields"},
		{name: "not a number", give: "1\n# srv_name srv_addr srv_admin_state srv_port\ns1 10.0.0.1 x 80", errMatch: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServers(tt.give)
			if err == nil || !strings.Contains(err.Error(), tt.errMatch) {
				t.Fatalf("parseServers error = %v, want one containing %q", err, tt.errMatch)
			}
		})
	}
}

func TestPickSlots(t *testing.T) {
	servers, err := parseServers(serversState)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		give     target
		want     []string
		errMatch string
	}{
		{name: "all slots", give: target{backend: "web", prefix: "s"}, want: []string{"s1", "s2", "s3", "s4"}},
		{name: "first three", give: target{backend: "web", prefix: "s", slots: 3}, want: []string{"s1", "s2", "s3"}},
		{name: "too many", give: target{backend: "web", prefix: "s", slots: 6}, errMatch: "has no server s5, s6; --slots 6 needs `server-template s 1-6"},
		{name: "no such prefix", give: target{backend: "web", prefix: "slot"}, errMatch: "no slots named slot<n>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pickSlots(tt.give, servers)
			var names []string
			for _, s := range got {
				names = append(names, s.name)
			}
			if err != nil && (tt.errMatch == "" || !strings.Contains(err.Error(), tt.errMatch)) || err == nil && tt.errMatch != "" {
				t.Fatalf("pickSlots error = %v, want %q", err, tt.errMatch)
			}
			if tt.errMatch == "" && !slices.Equal(names, tt.want) {
				t.Fatalf("pickSlots = %v, want %v", names, tt.want)
			}
		})
	}
}

func TestParseMap(t *testing.T) {
	out := "0x55a3444c6e90 cycler/web/id/[::1]:18102 web-blue%2F1\n" +
		"0x7fb82804e730 cycler/web/generation 7\n" +
		"0x7fb82804e731 cycler/api/generation 9\n" +
		"0x7fb82804e732 other key with spaces\n"
	got, err := parseMap(out, "cycler/web/")
	want := map[string]string{"cycler/web/id/[::1]:18102": "web-blue%2F1", "cycler/web/generation": "7"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("parseMap = %v, %v; want %v", got, err, want)
	}
	if got, err := parseMap("", "cycler/web/"); err != nil || len(got) != 0 {
		t.Fatalf("parseMap of an empty map = %v, %v", got, err)
	}
	_, err = parseMap("Unknown map identifier. Please use #<id> or <file>.", "cycler/web/")
	if err == nil || !strings.Contains(err.Error(), "a map() converter in haproxy.cfg names the file") {
		t.Fatalf("parseMap of an unknown map: %v", err)
	}
}

func TestApplied(t *testing.T) {
	servers, err := parseServers(serversState)
	if err != nil {
		t.Fatal(err)
	}
	st := &state{
		t:       target{backend: "web", prefix: "s"},
		servers: servers,
		gen:     7,
		records: map[string]string{"cycler/web/id/[::1]:18102": "web-blue%2F2", "cycler/web/id/127.0.0.1:18101": "web-blue-1"},
	}
	gen, got := st.applied()
	// s3 is drained and s4 and static are in maint: none takes new traffic.
	want := []lbdrivers.Backend{{ID: "web-blue-1", Address: "127.0.0.1", Port: 18101}, {ID: "web-blue/2", Address: "::1", Port: 18102}}
	if gen != 7 || !slices.Equal(got, lbdrivers.Sorted(want)) {
		t.Fatalf("applied = %d %v, want 7 %v", gen, got, want)
	}
	// A ready server without a stored id is reported under its name.
	st.records = nil
	if _, got := st.applied(); got[0].ID != "s1" || got[1].ID != "s2" {
		t.Fatalf("applied without ids = %v", got)
	}
	st.servers = nil
	if _, got := st.applied(); got == nil || len(got) != 0 {
		t.Fatalf("applied of no servers = %#v, want an empty, non-nil set", got)
	}
}

func TestEscapeID(t *testing.T) {
	for _, id := range []string{"web-blue-1", "a b", "x;y", `back\slash`, "#ref", "ünï", "100%"} {
		e := escapeID(id)
		if strings.ContainsAny(e, " ;\\#\t\n") || unescapeID(e) != id {
			t.Errorf("escapeID(%q) = %q, unescaped %q", id, e, unescapeID(e))
		}
	}
}

func TestParseConns(t *testing.T) {
	// As HAProxy 2.6.12 prints it with 2 threads: idle_per_thr[2] spans two fields.
	out := "# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur idle_per_thr[2]\n" +
		"web/s1 3/1 127.0.0.1 18201 - 5000 1 1 1 0 0 -1 0 0 0\n" +
		"web/s2 3/2 127.0.0.1 18202 - 5000 0 1 1 1 0 -1 1 1 0\n"
	got, err := parseConns(out)
	want := map[string]conns{"web/s1": {used: 1, idle: 0}, "web/s2": {used: 0, idle: 1}}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("parseConns = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"Can't find backend.", "# bkname/svname used_cur\nweb/s1 0", "# bkname/svname used_cur idle_cur\nweb/s1 x 0"} {
		if _, err := parseConns(bad); err == nil {
			t.Errorf("parseConns(%q) accepted it", bad)
		}
	}
}

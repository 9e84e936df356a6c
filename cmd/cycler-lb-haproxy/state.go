package main

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// maxSlots bounds --slots and the slot numbers read from HAProxy.
const maxSlots = 10000

// Server admin state bits of `show servers state` (srv_admin_state, HAProxy's
// SRV_ADMF_*): forced, inherited and resolver maintenance, and forced and
// inherited drain. A server with none of them set takes new traffic; the
// config-maintenance bit (CMAINT, 0x04, the "disabled" keyword) stays set
// after `state ready` and means nothing on its own.
const (
	admMaint = 0x01 | 0x02 | 0x20
	admDrain = 0x08 | 0x10
)

// target is the backend one run works on and where its records live.
type target struct {
	backend string
	mapPath string
	// slots, when not 0, is how many slots <prefix>1..<prefix>N are used.
	slots  int
	prefix string
	// drain bounds how long an address change waits for the slot's
	// connections to its previous address to end.
	drain time.Duration
}

// genKey is the map key that holds the backend's generation.
func (t target) genKey() string { return "cycler/" + t.backend + "/generation" }

// idPrefix starts the map keys that hold backend ids.
func (t target) idPrefix() string { return "cycler/" + t.backend + "/id/" }

// idKey is the map key that holds the id of the backend at ap.
func (t target) idKey(ap netip.AddrPort) string { return t.idPrefix() + ap.String() }

// server is one server of the backend, as `show servers state` reports it.
type server struct {
	name  string
	addr  string
	port  int
	admin int
}

// serving reports whether HAProxy sends new requests to the server (health
// checks aside).
func (s server) serving() bool { return s.admin&(admMaint|admDrain) == 0 }

// addrPort parses the server's address; ok is false for a non-IP address.
func (s server) addrPort() (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(s.addr)
	if err != nil || s.port < 0 || s.port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(s.port)), true
}

// state is what HAProxy holds for the backend.
type state struct {
	t       target
	servers []server
	// slots are the managed slots, in slot-number order.
	slots []server
	// gen is the stored generation, 0 when none is stored.
	gen uint64
	// records are the map entries under cycler/<backend>/.
	records map[string]string
}

// readState reads the backend's servers and the map from HAProxy.
func readState(ctx context.Context, api *runtimeAPI, t target) (*state, error) {
	out, err := api.do(ctx, "show", "servers", "state", t.backend)
	if err != nil {
		return nil, err
	}
	servers, err := parseServers(out)
	if err != nil {
		return nil, fmt.Errorf("show servers state %s: %w", t.backend, err)
	}
	slots, err := pickSlots(t, servers)
	if err != nil {
		return nil, err
	}
	out, err = api.do(ctx, "show", "map", t.mapPath)
	if err != nil {
		return nil, err
	}
	records, err := parseMap(out, "cycler/"+t.backend+"/")
	if err != nil {
		return nil, fmt.Errorf("show map %s: %w", t.mapPath, err)
	}
	st := &state{t: t, servers: servers, slots: slots, records: records}
	if raw, ok := records[t.genKey()]; ok {
		if st.gen, err = strconv.ParseUint(raw, 10, 64); err != nil {
			return nil, fmt.Errorf("map %s: key %s holds %q, not a generation; remove it with `del map %s %s`",
				t.mapPath, t.genKey(), raw, t.mapPath, t.genKey())
		}
	}
	return st, nil
}

// parseServers parses `show servers state <backend>`: a version line "1", a
// "# name name ..." header and one line of space-separated fields per
// server. Anything else is HAProxy's error message.
func parseServers(out string) ([]server, error) {
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" || !strings.HasPrefix(lines[1], "#") {
		msg := strings.Join(strings.Fields(out), " ")
		if strings.Contains(msg, "Can't find backend") {
			msg += " (is the backend in haproxy.cfg? name it with --backend)"
		}
		return nil, fmt.Errorf("haproxy answered %q", msg)
	}
	col := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "#")) {
		col[name] = i
	}
	for _, need := range []string{"srv_name", "srv_addr", "srv_admin_state", "srv_port"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("header %q has no column %s", lines[1], need)
		}
	}
	var servers []server
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < len(col) {
			return nil, fmt.Errorf("line %q has %d fields, the header names %d", line, len(f), len(col))
		}
		admin, err1 := strconv.Atoi(f[col["srv_admin_state"]])
		port, err2 := strconv.Atoi(f[col["srv_port"]])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %q: admin state or port is not a number", line)
		}
		servers = append(servers, server{name: f[col["srv_name"]], addr: f[col["srv_addr"]], port: port, admin: admin})
	}
	return servers, nil
}

// pickSlots returns the managed slots in slot-number order: <prefix>1..N
// when t.slots is set (all must exist), else every server named <prefix><n>.
func pickSlots(t target, servers []server) ([]server, error) {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(t.prefix) + `([1-9][0-9]{0,4})$`)
	byNum := map[int]server{}
	for _, s := range servers {
		if m := re.FindStringSubmatch(s.name); m != nil {
			n, _ := strconv.Atoi(m[1])
			byNum[n] = s
		}
	}
	if t.slots > 0 {
		var out []server
		var missing []string
		for n := 1; n <= t.slots; n++ {
			s, ok := byNum[n]
			if !ok {
				missing = append(missing, t.prefix+strconv.Itoa(n))
			}
			out = append(out, s)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("backend %s has no server %s; --slots %d needs `server-template %s 1-%d 0.0.0.0:0 disabled` in it",
				t.backend, strings.Join(missing, ", "), t.slots, t.prefix, t.slots)
		}
		return out, nil
	}
	nums := make([]int, 0, len(byNum))
	for n := range byNum {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	if len(nums) == 0 {
		return nil, fmt.Errorf("backend %s has no slots named %s<n>; add `server-template %s 1-8 0.0.0.0:0 disabled` to it (or set --slot-prefix)",
			t.backend, t.prefix, t.prefix)
	}
	out := make([]server, 0, len(nums))
	for _, n := range nums {
		out = append(out, byNum[n])
	}
	return out, nil
}

// parseMap parses `show map <file>`, one "<ref> <key> <value>" line per
// entry, and returns the entries whose key starts with prefix. Anything else
// is HAProxy's error message.
func parseMap(out, prefix string) (map[string]string, error) {
	records := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || !strings.HasPrefix(f[0], "0x") {
			msg := strings.Join(strings.Fields(out), " ")
			if strings.Contains(msg, "Unknown map identifier") {
				msg += " (haproxy loads a map only when a map() converter in haproxy.cfg names the file, and the file must exist)"
			}
			return nil, fmt.Errorf("haproxy answered %q", msg)
		}
		if strings.HasPrefix(f[1], prefix) {
			records[f[1]] = f[2]
		}
	}
	return records, nil
}

// conns is what `show servers conn` says about one server's connections.
type conns struct {
	// used counts connections carrying a request; idle counts those kept
	// for reuse.
	used, idle int
}

// parseConns parses `show servers conn <backend>`: a "# name name ..."
// header (whose last column, idle_per_thr[N], spans N fields) and one line
// per server, keyed by "backend/server". Anything else is HAProxy's error
// message.
func parseConns(out string) (map[string]conns, error) {
	lines := strings.Split(out, "\n")
	if len(lines) < 1 || !strings.HasPrefix(lines[0], "#") {
		return nil, fmt.Errorf("haproxy answered %q", strings.Join(strings.Fields(out), " "))
	}
	col := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[0], "#")) {
		col[name] = i
	}
	for _, need := range []string{"bkname/svname", "used_cur", "idle_cur"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("header %q has no column %s", lines[0], need)
		}
	}
	byServer := map[string]conns{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < len(col) {
			return nil, fmt.Errorf("line %q has %d fields, the header names %d", line, len(f), len(col))
		}
		used, err1 := strconv.Atoi(f[col["used_cur"]])
		idle, err2 := strconv.Atoi(f[col["idle_cur"]])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %q: used_cur or idle_cur is not a number", line)
		}
		byServer[f[col["bkname/svname"]]] = conns{used: used, idle: idle}
	}
	return byServer, nil
}

// unmanaged returns the servers that take traffic but are not slots.
func (st *state) unmanaged() []string {
	var out []string
	for _, s := range st.servers {
		if s.serving() && !slices.ContainsFunc(st.slots, func(x server) bool { return x.name == s.name }) {
			out = append(out, s.name)
		}
	}
	return out
}

// applied returns what HAProxy serves: the stored generation and every
// server that takes new traffic, labelled with its stored id (or, without
// one, its server name), in canonical order.
func (st *state) applied() (uint64, []lbdrivers.Backend) {
	backends := []lbdrivers.Backend{}
	for _, s := range st.servers {
		if !s.serving() {
			continue
		}
		b := lbdrivers.Backend{ID: s.name, Address: s.addr, Port: s.port}
		if ap, ok := s.addrPort(); ok {
			b.Address = ap.Addr().String()
			if id, ok := st.records[st.t.idKey(ap)]; ok {
				b.ID = unescapeID(id)
			}
		}
		backends = append(backends, b)
	}
	// Sorted returns nil for an empty set; the protocol wants [], not null.
	if sorted := lbdrivers.Sorted(backends); sorted != nil {
		return st.gen, sorted
	}
	return st.gen, backends
}

// escapeID makes an id one runtime API word: percent-escaped, so it holds
// no space, ';', '\' or '#'.
func escapeID(id string) string { return url.PathEscape(id) }

// unescapeID undoes escapeID; a value that does not unescape is returned
// as it is.
func unescapeID(v string) string {
	if id, err := url.PathUnescape(v); err == nil {
		return id
	}
	return v
}

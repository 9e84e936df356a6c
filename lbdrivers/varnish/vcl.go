package varnish

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// GenerationPath is the URL varnish answers itself with the generation of the
// active cycler VCL (text/plain), so the switch can be checked over HTTP.
const GenerationPath = "/__cycler/generation"

// vclPrefix starts the name of every VCL the driver loads:
// cycler_<generation>_<n>, n counting loads of that generation.
const vclPrefix = "cycler_"

// hashPrefix starts the generation's hash data, which keeps the cache of
// each generation apart when Options.BanOnSwitch is on.
const hashPrefix = "cycler-generation-"

// maxBackends bounds a set, so a runaway catalog cannot make a VCL that
// exceeds varnishd's CLI limits.
const maxBackends = 1024

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrEmptySet is returned when Apply is given no backends; varnish keeps
	// its last good VCL (invariant 1).
	ErrEmptySet = errors.New("empty backend set refused; varnish keeps its last good VCL")
	// ErrStaleGeneration is returned when the active VCL is of a newer
	// generation than the one offered, so a stale writer cannot roll back.
	ErrStaleGeneration = errors.New("generation is older than the one varnish serves")
	// ErrReadBack is returned when what varnish reports differs from what
	// the driver loaded.
	ErrReadBack = errors.New("read-back differs from what was applied")
)

// vclNameRE parses a cycler VCL name.
var vclNameRE = regexp.MustCompile(`^cycler_(\d{1,20})_(\d{1,9})$`)

// vclName is a parsed cycler VCL name.
type vclName struct {
	gen uint64
	n   int
}

func (v vclName) String() string { return fmt.Sprintf("%s%d_%d", vclPrefix, v.gen, v.n) }

// parseVCLName parses cycler_<gen>_<n>; ok is false for any other name.
func parseVCLName(s string) (vclName, bool) {
	m := vclNameRE.FindStringSubmatch(s)
	if m == nil {
		return vclName{}, false
	}
	gen, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return vclName{}, false
	}
	n, _ := strconv.Atoi(m[2])
	return vclName{gen: gen, n: n}, true
}

// less orders cycler VCLs oldest first.
func (v vclName) less(o vclName) bool {
	if v.gen != o.gen {
		return v.gen < o.gen
	}
	return v.n < o.n
}

// checkSet validates a set before anything is rendered and returns it in
// canonical order.
func checkSet(backends []lbdrivers.Backend) ([]lbdrivers.Backend, error) {
	if len(backends) == 0 {
		return nil, ErrEmptySet
	}
	if len(backends) > maxBackends {
		return nil, fmt.Errorf("backend set has %d backends, more than the limit of %d", len(backends), maxBackends)
	}
	var errs []error
	seen := map[string]string{}
	for _, b := range backends {
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if ip, err := netip.ParseAddr(b.Address); err == nil && ip.Zone() != "" {
			errs = append(errs, fmt.Errorf("backend %q: address %q has an IPv6 zone; register a global address", b.ID, b.Address))
			continue
		}
		if other, dup := seen[b.HostPort()]; dup {
			errs = append(errs, fmt.Errorf("backends %q and %q both point at %s; deregister one of them", other, b.ID, b.HostPort()))
			continue
		}
		seen[b.HostPort()] = b.ID
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return lbdrivers.Sorted(backends), nil
}

// backendName derives a VCL backend name from what identifies a backend.
// Hashing keeps the name a valid VCL identifier whatever the ID holds.
func backendName(b lbdrivers.Backend) string {
	sum := sha256.Sum256([]byte(b.ID + "\x00" + b.HostPort()))
	return "b_" + hex.EncodeToString(sum[:8])
}

// escapeID percent-encodes every byte of id outside [A-Za-z0-9._~-], so it
// can sit in a VCL comment; "" is written "-" and "-" is written "%2D".
func escapeID(id string) string {
	switch id {
	case "":
		return "-"
	case "-":
		return "%2D"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// unescapeID reverses escapeID.
func unescapeID(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("id %q: truncated escape", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("id %q: bad escape %q", s, s[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// vclDuration renders d in VCL's duration syntax.
func vclDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// formatLine marks a VCL with generation markers (see the package doc); a
// cycler VCL without it was rendered by an older cyclerd, which compiled
// the generation in (legacyGenRE).
const formatLine = "# cycler-vcl-format 2"

// Marker backends: never in the director and never fetched from, they
// exist for their admin health, which the driver sets and VCL reads with
// std.healthy. genSelect picks the bank (sick: a, healthy: b); bank
// x's bit k is markerBit(x, k).
const (
	genSelect = "cycler_gsel"
	// genBits bounds the generation: VCL integer literals have at most 15
	// digits, so the bit values stop at 2^47.
	genBits = 48
	// MaxGeneration is the largest generation the driver can hold.
	MaxGeneration = 1<<genBits - 1
	// genHeader carries the generation of a request from vcl_recv to
	// vcl_hash and vcl_synth; it is overwritten on every request and not
	// sent to backends.
	genHeader = "x-cycler-generation"
)

// markerBit names bit k of bank ('a' or 'b').
func markerBit(bank byte, k int) string { return fmt.Sprintf("cycler_g%c%d", bank, k) }

// renderVCL renders the VCL 4.1 program for the union of backends sorted
// (live and hidden alike; admin health picks the live ones): one backend per
// instance, a round-robin director over all of them, an optional probe, the
// generation markers and the VCL that reads them, the generation in the
// hash (BanOnSwitch), GenerationPath answered by varnish itself, and the
// operator's include last. The generation is not in the source, so a pool
// flip needs no new VCL.
func renderVCL(o Options, sorted []lbdrivers.Backend) []byte {
	var b strings.Builder
	b.WriteString("vcl 4.1;\n")
	b.WriteString("# Generated by cyclerd's varnish driver. Do not edit: cyclerd sets the admin health of these backends.\n")
	b.WriteString(formatLine + "\n\nimport std;\nimport directors;\n")
	if p := o.Probe; p != nil {
		fmt.Fprintf(&b, "\nprobe cycler_probe {\n    .url = %q;\n    .interval = %s;\n    .timeout = %s;\n",
			p.URL, vclDuration(p.Interval), vclDuration(p.Timeout))
		// initial = threshold: a new VCL's backends start healthy instead of
		// waiting for probes, so a switch does not answer 503 meanwhile.
		fmt.Fprintf(&b, "    .window = %d;\n    .threshold = %d;\n    .initial = %d;\n}\n", p.Window, p.Threshold, p.Threshold)
	}
	for _, be := range sorted {
		fmt.Fprintf(&b, "\n# id %s\nbackend %s {\n", escapeID(be.ID), backendName(be))
		fmt.Fprintf(&b, "    .host = \"%s\";\n    .port = \"%d\";\n", be.Address, be.Port)
		if o.Probe != nil {
			b.WriteString("    .probe = cycler_probe;\n")
		}
		b.WriteString("}\n")
	}
	// The markers point at the discard port of the loopback; nothing ever
	// connects to them.
	b.WriteString("\n# Generation markers: only their admin health matters.\n")
	for _, name := range markerNames() {
		fmt.Fprintf(&b, "backend %s { .host = \"127.0.0.1\"; .port = \"9\"; }\n", name)
	}
	b.WriteString("\nsub vcl_init {\n    new cycler_rr = directors.round_robin();\n")
	for _, be := range sorted {
		fmt.Fprintf(&b, "    cycler_rr.add_backend(%s);\n", backendName(be))
	}
	b.WriteString("}\n\nsub vcl_recv {\n")
	fmt.Fprintf(&b, "    set req.http.%s = \"0\";\n", genHeader)
	fmt.Fprintf(&b, "    if (std.healthy(%s)) {\n", genSelect)
	writeBank(&b, 'b')
	b.WriteString("    } else {\n")
	writeBank(&b, 'a')
	b.WriteString("    }\n")
	fmt.Fprintf(&b, "    if (req.url == \"%s\") {\n        return (synth(200, \"cycler generation\"));\n    }\n", GenerationPath)
	b.WriteString("    set req.backend_hint = cycler_rr.backend();\n}\n")
	fmt.Fprintf(&b, "\nsub vcl_backend_fetch {\n    unset bereq.http.%s;\n}\n", genHeader)
	if o.bans() {
		// Objects are cached per generation: a request of this generation
		// can neither hit nor wait on a fetch begun under another one,
		// which a ban alone (it spares objects inserted after it) cannot
		// promise.
		b.WriteString("\nsub vcl_hash {\n    # Each generation caches apart (ban_on_switch).\n")
		fmt.Fprintf(&b, "    hash_data(\"%s\" + req.http.%s);\n}\n", hashPrefix, genHeader)
	}
	b.WriteString("\nsub vcl_synth {\n")
	b.WriteString("    if (resp.reason == \"cycler generation\") {\n        set resp.http.Content-Type = \"text/plain\";\n")
	fmt.Fprintf(&b, "        set resp.body = req.http.%s;\n        return (deliver);\n    }\n}\n", genHeader)
	if o.Include != "" {
		fmt.Fprintf(&b, "\n# The operator's VCL; its subroutines run after cycler's.\ninclude \"%s\";\n", o.Include)
	}
	return []byte(b.String())
}

// writeBank renders the sum of bank's healthy bits into genHeader.
func writeBank(b *strings.Builder, bank byte) {
	for k := range genBits {
		fmt.Fprintf(b, "        if (std.healthy(%s)) { set req.http.%[2]s = std.integer(req.http.%[2]s, 0) + %[3]d; }\n",
			markerBit(bank, k), genHeader, uint64(1)<<k)
	}
}

// markerNames lists the marker backends: the bank selector, then bank a's
// bits and bank b's.
func markerNames() []string {
	names := []string{genSelect}
	for _, bank := range []byte{'a', 'b'} {
		for k := range genBits {
			names = append(names, markerBit(bank, k))
		}
	}
	return names
}

var (
	// legacyGenRE finds the generation an older cyclerd compiled into its
	// VCL.
	legacyGenRE = regexp.MustCompile(`(?m)^# cycler-generation (\d{1,20})$`)
	// backendRE finds each backend a rendered VCL defines.
	backendRE = regexp.MustCompile(`(?m)^# id (\S+)\nbackend (b_[0-9a-f]{16}) \{\n    \.host = "([^"\n]*)";\n    \.port = "(\d{1,5})";\n`)
)

// vclInfo is what a rendered VCL says about itself.
type vclInfo struct {
	// defs are its backends by VCL name.
	defs map[string]lbdrivers.Backend
	// legacy is set for a VCL of an older cyclerd, which has no markers
	// and whose generation is legacyGen.
	legacy    bool
	legacyGen uint64
}

// parseVCL reads the backends (by VCL name) out of a VCL the driver
// rendered, as varnishd returns it from vcl.show.
func parseVCL(src string) (vclInfo, error) {
	info := vclInfo{defs: map[string]lbdrivers.Backend{}}
	if !strings.Contains(src, "\n"+formatLine+"\n") {
		m := legacyGenRE.FindStringSubmatch(src)
		if m == nil {
			return vclInfo{}, errors.New("no cycler-vcl-format line; it was not rendered by cyclerd")
		}
		gen, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			return vclInfo{}, fmt.Errorf("generation %q: %w", m[1], err)
		}
		info.legacy, info.legacyGen = true, gen
	}
	for _, bm := range backendRE.FindAllStringSubmatch(src, -1) {
		id, err := unescapeID(bm[1])
		if err != nil {
			return vclInfo{}, err
		}
		port, _ := strconv.Atoi(bm[4])
		b := lbdrivers.Backend{ID: id, Address: bm[3], Port: port}
		if err := b.Validate(); err != nil {
			return vclInfo{}, err
		}
		if backendName(b) != bm[2] {
			return vclInfo{}, fmt.Errorf("backend %s does not match its definition %s; the VCL was edited", bm[2], b.HostPort())
		}
		info.defs[bm[2]] = b
	}
	return info, nil
}

// sortedNames returns names oldest first.
func sortedNames(names []vclName) []vclName {
	out := append([]vclName(nil), names...)
	sort.Slice(out, func(i, j int) bool { return out[i].less(out[j]) })
	return out
}

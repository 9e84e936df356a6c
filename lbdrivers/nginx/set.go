package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// setHeader is the first line of every encoded backend set. The number is the
// format version; cycler_lb.lua refuses any other first line.
const setHeader = "cycler-backends 1"

// maxBackends bounds a set, so a runaway Consul catalog cannot produce a body
// the admin location refuses (its client_max_body_size) or a huge config.
// cycler_lb.lua enforces the same limit.
const maxBackends = 4096

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrEmptySet is returned when Apply is given no backends. The LB keeps
	// its last good set (invariant 1).
	ErrEmptySet = errors.New("empty backend set refused; the load balancer keeps its last good set")
	// ErrStaleGeneration is returned when the LB already serves a newer
	// generation than the one offered, so a stale writer cannot roll it back.
	ErrStaleGeneration = errors.New("generation is older than the one the load balancer serves")
	// ErrUnauthorized is returned when the admin location refuses the secret.
	ErrUnauthorized = errors.New("admin location refused the secret")
	// ErrReadBack is returned when what nginx reports differs from what the
	// driver applied or rendered.
	ErrReadBack = errors.New("read-back differs from what was applied")
)

// checkSet validates a backend set before anything is rendered or sent and
// returns it in canonical (lbdrivers.Sorted) order. dynamic is true in dynamic
// mode, where ngx.balancer needs IP addresses.
func checkSet(backends []lbdrivers.Backend, dynamic bool) ([]lbdrivers.Backend, error) {
	if len(backends) == 0 {
		return nil, ErrEmptySet
	}
	if len(backends) > maxBackends {
		return nil, fmt.Errorf("backend set has %d backends, more than the limit of %d; split the service", len(backends), maxBackends)
	}
	var errs []error
	seen := make(map[string]string, len(backends))
	for _, b := range backends {
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		ip, err := netip.ParseAddr(b.Address)
		switch {
		case err == nil && ip.Zone() != "":
			errs = append(errs, fmt.Errorf("backend %q: address %q has an IPv6 zone, which nginx cannot route to; register a global address", b.ID, b.Address))
			continue
		case err != nil && dynamic:
			errs = append(errs, fmt.Errorf("backend %q: address %q is a hostname; dynamic mode routes to IP addresses only, so register the instance with an IP or use mode \"reload\"", b.ID, b.Address))
			continue
		}
		hp := b.HostPort()
		if other, dup := seen[hp]; dup {
			errs = append(errs, fmt.Errorf("backends %q and %q both point at %s; deregister one of them", other, b.ID, hp))
			continue
		}
		seen[hp] = b.ID
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return lbdrivers.Sorted(backends), nil
}

// encodeSet renders the wire and storage form of a backend set, shared by the
// dynamic admin location (PUT and GET bodies) and the reload-mode include:
//
//	cycler-backends 1
//	generation 42
//	backend 10.0.0.1 8080 web-blue-1
//	backend fd00::1 8080 web-blue-2
//
// Lines end in "\n". IDs are escaped with escapeID, so no field holds a space,
// a quote or anything nginx or Lua would read specially. The format needs no
// JSON library: Debian ships no lua-cjson with nginx's lua module, and a line
// format is easier to check strictly in Lua than JSON.
func encodeSet(gen uint64, sorted []lbdrivers.Backend) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\ngeneration %d\n", setHeader, gen)
	for _, be := range sorted {
		fmt.Fprintf(&b, "backend %s %d %s\n", be.Address, be.Port, escapeID(be.ID))
	}
	return b.Bytes()
}

// decodeSet parses encodeSet's output. An empty body means nothing has been
// applied yet and yields generation 0 and no backends.
func decodeSet(body []byte) (uint64, []lbdrivers.Backend, error) {
	if len(body) == 0 {
		return 0, nil, nil
	}
	s := string(body)
	if !strings.HasSuffix(s, "\n") {
		return 0, nil, errors.New("backend set does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 2 || lines[0] != setHeader {
		return 0, nil, fmt.Errorf("backend set does not start with %q", setHeader)
	}
	genText, ok := strings.CutPrefix(lines[1], "generation ")
	if !ok {
		return 0, nil, fmt.Errorf("backend set line 2 %q is not \"generation N\"", lines[1])
	}
	gen, err := strconv.ParseUint(genText, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("backend set generation %q: %w", genText, err)
	}
	var out []lbdrivers.Backend
	for i, line := range lines[2:] {
		f := strings.Split(line, " ")
		if len(f) != 4 || f[0] != "backend" {
			return 0, nil, fmt.Errorf("backend set line %d %q is not \"backend ADDRESS PORT ID\"", i+3, line)
		}
		port, err := strconv.Atoi(f[2])
		if err != nil {
			return 0, nil, fmt.Errorf("backend set line %d: port %q: %w", i+3, f[2], err)
		}
		id, err := unescapeID(f[3])
		if err != nil {
			return 0, nil, fmt.Errorf("backend set line %d: %w", i+3, err)
		}
		b := lbdrivers.Backend{ID: id, Address: f[1], Port: port}
		if err := b.Validate(); err != nil {
			return 0, nil, fmt.Errorf("backend set line %d: %w", i+3, err)
		}
		out = append(out, b)
	}
	return gen, out, nil
}

// escapeID percent-encodes every byte of id outside [A-Za-z0-9._~-]. The empty
// ID is written "-", so a field is never empty; an ID that is exactly "-" is
// written "%2D".
func escapeID(id string) string {
	switch id {
	case "":
		return "-"
	case "-":
		return "%2D"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if idSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
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
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", fmt.Errorf("id %q: truncated escape at byte %d", s, i)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("id %q: bad escape %q", s, s[i:i+3])
			}
			b.WriteByte(byte(v))
			i += 2
		case idSafe(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("id %q: byte %q is not allowed unescaped", s, c)
		}
	}
	return b.String(), nil
}

// idSafe reports whether c may appear unescaped in an encoded ID.
func idSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-'
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// minSecretLen is the shortest secret accepted anywhere: shorter bearer
// secrets are guessable.
const minSecretLen = 16

var (
	// serviceNameRE is a Consul service name cycler accepts: a DNS label
	// that starts with a letter, so it works in Consul DNS and KV keys.
	serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// nodeIDRE is a node or instance ID: host names fit.
	nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	// tokenNameRE is an API token label.
	tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// dnsLabelRE is one label of a host name.
	dnsLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// checker collects validation problems for one configuration.
type checker struct {
	src   *sources
	probs Problems
}

// bad records a problem with a value. value is already quoted or redacted.
func (c *checker) bad(path, value, msg string) {
	pos, line := c.src.valuePos(path)
	c.probs = append(c.probs, Problem{Pos: pos, Line: line, Path: path, Value: value, Msg: msg})
}

// missing records a key that must be set and is not.
func (c *checker) missing(path, msg string) {
	pos, line := c.src.missingPos(path)
	c.probs = append(c.probs, Problem{Pos: pos, Line: line, Path: path, Msg: "is not set; " + msg})
}

// required reports v when it is empty and returns whether it is set.
func (c *checker) required(path, v, what string) bool {
	if v == "" {
		c.missing(path, what)
		return false
	}
	return true
}

// enum checks that v is one of allowed.
func (c *checker) enum(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.bad(path, quote(v), "is not allowed; use one of: "+strings.Join(allowed, ", "))
}

// pattern checks v against re; rule says in words what re allows.
func (c *checker) pattern(path, v string, re *regexp.Regexp, rule string) {
	if !re.MatchString(v) {
		c.bad(path, quote(v), "is not allowed; "+rule)
	}
}

// serviceName checks a Consul service name (also used for lb_id).
func (c *checker) serviceName(path, v string) {
	c.pattern(path, v, serviceNameRE, "use 1-63 lower-case letters, digits and '-', starting with a letter")
}

// nodeID checks a node or instance ID.
func (c *checker) nodeID(path, v string) {
	c.pattern(path, v, nodeIDRE, "use 1-128 letters, digits, '.', '_' and '-', starting with a letter or digit")
}

// duration checks a positive Go duration string.
func (c *checker) duration(path, v string) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		c.bad(path, quote(v), `is not a duration; write a number with a unit, like "10s", "500ms" or "1m30s"`)
	case d <= 0:
		c.bad(path, quote(v), "must be longer than 0")
	}
}

// atLeast checks an integer lower bound.
func (c *checker) atLeast(path string, v, lo int64) {
	if v < lo {
		c.bad(path, strconv.FormatInt(v, 10), fmt.Sprintf("is too small; the minimum is %d", lo))
	}
}

// secret checks a secret's length without ever printing it.
func (c *checker) secret(path, v string) {
	if n := len([]rune(v)); n < minSecretLen {
		c.bad(path, redact(v), fmt.Sprintf("is too short; secrets must be at least %d chars", minSecretLen))
	}
}

// oneOf checks that at most one of two alternative keys is set, and, when
// need is true, that one is. It returns false when both are set.
func (c *checker) oneOf(pathA string, setA bool, pathB string, setB bool, need bool, what string) bool {
	switch {
	case setA && setB:
		c.bad(pathB, "", fmt.Sprintf("cannot be used together with %s; set only one of them", pathA))
		return false
	case need && !setA && !setB:
		c.missing(pathA, fmt.Sprintf("set %s or %s: %s", pathA, pathB, what))
	}
	return true
}

// filePath checks that a path setting, when set, is a plausible path.
func (c *checker) filePath(path, v string) {
	if strings.ContainsRune(v, 0) {
		c.bad(path, quote(v), "contains a NUL byte; paths cannot")
	}
}

// argv checks a command given as a list of arguments.
func (c *checker) argv(path string, argv []string, need bool, what string) {
	if len(argv) == 0 {
		if need {
			c.missing(path, what)
		}
		return
	}
	if strings.TrimSpace(argv[0]) == "" {
		c.bad(indexPath(path, 0), quote(argv[0]), "is empty; the first element must be the program to run")
	}
	for i, a := range argv {
		if strings.ContainsRune(a, 0) {
			c.bad(indexPath(path, i), quote(a), "contains a NUL byte; arguments cannot")
		}
	}
}

// addrRules tunes hostPort for the kind of address.
type addrRules struct {
	// listen allows an empty host (all interfaces) and an unspecified IP.
	listen bool
	// loopback requires a loopback IP or "localhost".
	loopback bool
}

// hostPort checks a "host:port" address. It returns false on a problem.
func (c *checker) hostPort(path, v string, rules addrRules) bool {
	if msg := hostPortProblem(v, rules); msg != "" {
		c.bad(path, quote(v), msg)
		return false
	}
	return true
}

// hostPortProblem returns what is wrong with a "host:port" address, or "".
func hostPortProblem(v string, rules addrRules) string {
	const notAddr = "is not a valid host:port; "
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return notAddr + "write it as host:port, like 127.0.0.1:7400 or [::1]:7400"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return notAddr + "the port must be 1-65535"
	}
	if host == "" {
		if rules.listen && !rules.loopback {
			return ""
		}
		return notAddr + "the host is missing"
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil && !validHostname(host):
		return notAddr + "the host must be an IP address or a DNS name"
	case rules.loopback && !(host == "localhost" || (ip != nil && ip.IsLoopback())):
		return "is not a loopback address; use 127.0.0.1, [::1] or localhost"
	case ip != nil && ip.IsUnspecified() && !rules.listen:
		return "is not an address others can connect to; use a specific IP address or host name instead of " + host
	}
	return ""
}

// serverAddr checks the address of a cyclerd server API: "host:port" or an
// http(s) URL.
func (c *checker) serverAddr(path, v string) {
	if !strings.Contains(v, "://") {
		c.hostPort(path, v, addrRules{})
		return
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		c.bad(path, quote(v), "is not a valid URL; use host:port or http(s)://host:port")
	case u.Scheme != "http" && u.Scheme != "https":
		c.bad(path, quote(v), "has an unsupported scheme; use http:// or https://")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		c.bad(path, quote(v), "must hold only a scheme, a host and a port, like https://10.0.0.5:7400")
	case u.Port() == "":
		if u.Hostname() == "" || (net.ParseIP(u.Hostname()) == nil && !validHostname(u.Hostname())) {
			c.bad(path, quote(v), "has no valid host; use http(s)://host:port")
		}
	default:
		if msg := hostPortProblem(u.Host, addrRules{}); msg != "" {
			c.bad(path, quote(v), msg)
		}
	}
}

// validHostname reports whether h is a DNS name.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// unique reports repeated entries of a string list.
func (c *checker) unique(path string, vs []string) {
	first := make(map[string]int, len(vs))
	for i, v := range vs {
		if j, dup := first[v]; dup {
			c.bad(indexPath(path, i), quote(v), fmt.Sprintf("is listed twice; remove it or %s", indexPath(path, j)))
			continue
		}
		first[v] = i
	}
}

// parseDurationOr parses a duration string, falling back to def when the
// string is not a valid positive duration. Validate reports such values, so
// the fallback only matters for configurations that skipped validation.
func parseDurationOr(v string, def time.Duration) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return def
	}
	return d
}

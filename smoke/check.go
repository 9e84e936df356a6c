// Package smoke runs smoke checks (HTTP, TCP connect and commands) against
// one app host directly, with a timeout per attempt and retries with
// backoff, and reports a JSON-serialisable result per check. The cycle runs
// it against every hidden host before a switch; bake checks through an LB use
// the same checks with the LB as the target.
package smoke

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Kind is what a check does.
type Kind string

// The check kinds.
const (
	// KindHTTP sends one HTTP request and checks the response.
	KindHTTP Kind = "http"
	// KindTCP opens a TCP connection and closes it.
	KindTCP Kind = "tcp"
	// KindCommand runs a program; exit status 0 passes.
	KindCommand Kind = "command"
)

// Defaults and limits applied to checks.
const (
	// DefaultTimeout bounds one attempt when Check.Timeout is zero.
	DefaultTimeout = 5 * time.Second
	// DefaultBackoffInitial is the first delay between attempts when
	// Backoff.Initial is zero.
	DefaultBackoffInitial = 500 * time.Millisecond
	// DefaultBackoffMax caps the delay between attempts when Backoff.Max is
	// zero.
	DefaultBackoffMax = 10 * time.Second
	// DefaultMaxBodyBytes is how much of an HTTP body is read when
	// HTTPSpec.MaxBodyBytes is zero.
	DefaultMaxBodyBytes = 1 << 20
	// MaxRetries is the largest Check.Retries accepted.
	MaxRetries = 100
	// OutputTailBytes is how much of a command's combined output (the end
	// of it) is kept in the result.
	OutputTailBytes = 4 << 10
)

// Check is one smoke check. Kind selects which of HTTP and Command applies;
// setting the fields of another kind is a validation error, so a typo in
// the kind cannot silently drop the expectations.
type Check struct {
	// Name identifies the check in results and logs; unique within a list.
	Name string
	// Kind is KindHTTP, KindTCP or KindCommand.
	Kind Kind
	// Port, when set, replaces the target's port for this check (for
	// example an admin port). Zero uses Target.Port.
	Port int
	// Timeout bounds each attempt. Zero means DefaultTimeout.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one (0 to
	// MaxRetries). Zero means a single attempt.
	Retries int
	// Backoff spaces the retries.
	Backoff Backoff
	// HTTP holds the request and expectations of a KindHTTP check.
	HTTP HTTPSpec
	// Command holds the program of a KindCommand check.
	Command CommandSpec
}

// Backoff is the delay before each retry: Initial, doubling after every
// attempt up to Max, with jitter so that many hosts do not retry in step.
type Backoff struct {
	// Initial is the first delay. Zero means DefaultBackoffInitial.
	Initial time.Duration
	// Max caps the delay. Zero means DefaultBackoffMax.
	Max time.Duration
}

// HTTPSpec is the request and the expectations of a KindHTTP check. Every
// expectation that is set must hold.
type HTTPSpec struct {
	// Method is the request method. Empty means GET.
	Method string
	// Path is the request path, with an optional query, starting with "/".
	Path string
	// Host, when set, is sent as the Host header instead of host:port.
	Host string
	// Status lists the accepted status codes: one code or several. Empty
	// means 200.
	Status []int
	// BodyContains, when set, must occur in the body.
	BodyContains string
	// BodyMatches, when set, is a regular expression (RE2 syntax) that must
	// match the body.
	BodyMatches string
	// Headers maps response header names to the value one of that header's
	// values must equal exactly.
	Headers map[string]string
	// FollowRedirects makes the check follow redirects and judge the final
	// response. By default a redirect is the response that is judged.
	FollowRedirects bool
	// MaxBodyBytes bounds how much of the body is read and matched. Zero
	// means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// CommandSpec is the program of a KindCommand check. It runs with the
// daemon's environment plus CYCLER_HOST, CYCLER_PORT, CYCLER_VERSION,
// CYCLER_INSTANCE_ID, CYCLER_SCHEME and CYCLER_CHECK describing the target.
type CommandSpec struct {
	// Argv is the program and its arguments. It is never given to a shell;
	// to use one, say so: ["/bin/sh", "-c", "script"].
	Argv []string
}

// Validate reports every problem with c, each naming the check and the
// offending value, joined into one error. It returns nil for a check that
// Run will accept.
func (c Check) Validate() error {
	_, probs := c.compile()
	return joinProblems(fmt.Sprintf("check %q", c.Name), probs)
}

// ValidateAll validates every check and also rejects duplicate names. Each
// problem names the check's index and name.
func ValidateAll(checks []Check) error {
	var errs []error
	seen := make(map[string]int, len(checks))
	for i, c := range checks {
		_, probs := c.compile()
		if j, dup := seen[c.Name]; dup && c.Name != "" {
			probs = append(probs, fmt.Sprintf("name %q is already used by check %d; names must be unique", c.Name, j))
		} else {
			seen[c.Name] = i
		}
		if err := joinProblems(fmt.Sprintf("check %d %q", i, c.Name), probs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// joinProblems turns problems into one error, each prefixed with who.
func joinProblems(who string, probs []string) error {
	errs := make([]error, 0, len(probs))
	for _, p := range probs {
		errs = append(errs, fmt.Errorf("%s: %s", who, p))
	}
	return errors.Join(errs...)
}

// compiled is a validated check with its defaults applied and its regular
// expression compiled, so that attempts never re-parse anything.
type compiled struct {
	Check
	bodyRE *regexp.Regexp
}

// compile validates c and returns it ready to run, or the problems found.
func (c Check) compile() (compiled, []string) {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	if strings.TrimSpace(c.Name) == "" {
		add("name is empty; give every check a name")
	}
	if c.Port < 0 || c.Port > 65535 {
		add("port %d is out of range; use 1-65535, or 0 for the target's port", c.Port)
	}
	if c.Timeout < 0 {
		add("timeout %s is negative; use a positive duration, or 0 for %s", c.Timeout, DefaultTimeout)
	}
	if c.Retries < 0 || c.Retries > MaxRetries {
		add("retries %d is out of range; use 0-%d", c.Retries, MaxRetries)
	}
	if c.Backoff.Initial < 0 {
		add("backoff initial %s is negative", c.Backoff.Initial)
	}
	if c.Backoff.Max < 0 {
		add("backoff max %s is negative", c.Backoff.Max)
	}
	if c.Backoff.Initial > 0 && c.Backoff.Max > 0 && c.Backoff.Max < c.Backoff.Initial {
		add("backoff max %s is below backoff initial %s", c.Backoff.Max, c.Backoff.Initial)
	}

	out := compiled{Check: c}
	switch c.Kind {
	case KindHTTP:
		out.bodyRE = c.HTTP.validate(add)
	case KindTCP, KindCommand:
		if !c.HTTP.isZero() {
			add("http settings are set but kind is %q; remove them or use kind %q", c.Kind, KindHTTP)
		}
	default:
		add("kind %q is not known; use %q, %q or %q", c.Kind, KindHTTP, KindTCP, KindCommand)
	}
	if c.Kind == KindCommand {
		c.Command.validate(add)
	} else if len(c.Command.Argv) > 0 && c.Kind.known() {
		add("argv is set but kind is %q; remove it or use kind %q", c.Kind, KindCommand)
	}
	if len(probs) > 0 {
		return compiled{}, probs
	}
	out.applyDefaults()
	return out, nil
}

// known reports whether k is one of the check kinds.
func (k Kind) known() bool {
	return k == KindHTTP || k == KindTCP || k == KindCommand
}

// applyDefaults fills in every zero value that has a default.
func (c *compiled) applyDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = DefaultBackoffInitial
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = max(DefaultBackoffMax, c.Backoff.Initial)
	}
	if c.Kind != KindHTTP {
		return
	}
	if c.HTTP.Method == "" {
		c.HTTP.Method = "GET"
	}
	if len(c.HTTP.Status) == 0 {
		c.HTTP.Status = []int{200}
	}
	if c.HTTP.MaxBodyBytes == 0 {
		c.HTTP.MaxBodyBytes = DefaultMaxBodyBytes
	}
}

// validate reports the problems of an HTTP spec through add and returns
// the compiled body expression (nil when unset or invalid).
func (h HTTPSpec) validate(add func(string, ...any)) *regexp.Regexp {
	if h.Method != "" && !isToken(h.Method) {
		add("http method %q is not valid; use a method such as GET or HEAD", h.Method)
	}
	switch {
	case h.Path == "":
		add("http path is empty; use an absolute path such as \"/health\"")
	case !strings.HasPrefix(h.Path, "/") || strings.HasPrefix(h.Path, "//"):
		add("http path %q must start with a single \"/\", like \"/health\"", h.Path)
	case strings.ContainsFunc(h.Path, isSpaceOrControl):
		add("http path %q contains spaces or control characters; percent-encode them", h.Path)
	default:
		if _, err := url.ParseRequestURI(h.Path); err != nil {
			add("http path %q is not a valid request path: %v", h.Path, err)
		}
	}
	if strings.ContainsFunc(h.Host, isSpaceOrControl) {
		add("http host header %q contains spaces or control characters", h.Host)
	}
	for _, s := range h.Status {
		if s < 100 || s > 599 {
			add("http status %d is out of range; use 100-599", s)
		}
	}
	for name, want := range h.Headers {
		if !isToken(name) {
			add("http header name %q is not a valid header name", name)
		}
		if strings.ContainsFunc(want, isControlNotTab) {
			add("http header %q value %q contains control characters", name, want)
		}
	}
	if h.MaxBodyBytes < 0 {
		add("http max body bytes %d is negative; use a positive size, or 0 for %d", h.MaxBodyBytes, DefaultMaxBodyBytes)
	}
	if h.BodyMatches == "" {
		return nil
	}
	re, err := regexp.Compile(h.BodyMatches)
	if err != nil {
		add("http body regexp %q does not compile: %v", h.BodyMatches, err)
		return nil
	}
	return re
}

// isZero reports whether no HTTP setting is set.
func (h HTTPSpec) isZero() bool {
	return h.Method == "" && h.Path == "" && h.Host == "" && len(h.Status) == 0 &&
		h.BodyContains == "" && h.BodyMatches == "" && len(h.Headers) == 0 &&
		!h.FollowRedirects && h.MaxBodyBytes == 0
}

// validate reports the problems of a command spec through add.
func (s CommandSpec) validate(add func(string, ...any)) {
	switch {
	case len(s.Argv) == 0:
		add("argv is empty; give the program and its arguments, like [\"/usr/local/bin/check\", \"--quick\"]")
	case s.Argv[0] == "":
		add("argv[0] is empty; it must name the program")
	}
	for i, a := range s.Argv {
		if strings.ContainsRune(a, 0) {
			add("argv[%d] %q contains a NUL byte", i, a)
		}
	}
}

// isToken reports whether s is an RFC 9110 token, the syntax of methods
// and header names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isSpaceOrControl reports whether r is whitespace or a control character.
func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// isControlNotTab reports whether r is a control character other than a
// horizontal tab, which header values may not hold.
func isControlNotTab(r rune) bool {
	return (r < ' ' && r != '\t') || r == 0x7f
}

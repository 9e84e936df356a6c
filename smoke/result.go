package smoke

import (
	"fmt"
	"net"
	"strconv"
)

// Target is the host the checks run against: an app instance reached
// directly in the smoke phase, or an LB in the bake phase.
type Target struct {
	// Host is the IP address or host name to connect to. Required.
	Host string `json:"host"`
	// Port is the TCP port (1-65535). Required.
	Port int `json:"port"`
	// Version is the app version expected there; commands see it as
	// CYCLER_VERSION.
	Version string `json:"version,omitempty"`
	// InstanceID is the Consul service instance ID, for logs and results.
	InstanceID string `json:"instance_id,omitempty"`
	// Scheme is "http" or "https" for HTTP checks. Empty means "http".
	Scheme string `json:"scheme,omitempty"`
}

// validate returns the problem with t, if any, as one user-facing message.
func (t Target) validate() string {
	switch {
	case t.Host == "":
		return "target host is empty"
	case t.Port < 1 || t.Port > 65535:
		return fmt.Sprintf("target %s port %d is out of range 1-65535", t.Host, t.Port)
	case t.Scheme != "" && t.Scheme != "http" && t.Scheme != "https":
		return fmt.Sprintf("target %s scheme %q is not valid; use http or https", t.Host, t.Scheme)
	}
	return ""
}

// addr returns host:port for a check, honouring the check's port override.
func (t Target) addr(port int) string {
	if port == 0 {
		port = t.Port
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// scheme returns the URL scheme for HTTP checks.
func (t Target) scheme() string {
	if t.Scheme == "" {
		return "http"
	}
	return t.Scheme
}

// Reason classifies why a check failed, for callers that branch on it (and
// for tests); Error carries the full story.
type Reason string

// The failure reasons.
const (
	// ReasonInvalid means the check or the target did not validate; the
	// check never ran.
	ReasonInvalid Reason = "invalid"
	// ReasonTimeout means the last attempt ran out of its Timeout.
	ReasonTimeout Reason = "timeout"
	// ReasonCanceled means the run's context ended before the check passed.
	ReasonCanceled Reason = "canceled"
	// ReasonConnect means the connection could not be made.
	ReasonConnect Reason = "connect"
	// ReasonStatus means the HTTP status was not one of those accepted.
	ReasonStatus Reason = "status"
	// ReasonHeader means an expected HTTP header was missing or different.
	ReasonHeader Reason = "header"
	// ReasonBody means the HTTP body did not contain or match what was
	// expected.
	ReasonBody Reason = "body"
	// ReasonExit means the command exited with a non-zero status.
	ReasonExit Reason = "exit"
	// ReasonError is any other error: a failed read, a program not found.
	ReasonError Reason = "error"
)

// CheckResult is the outcome of one check against one target.
type CheckResult struct {
	// Name is the check's name.
	Name string `json:"name"`
	// Kind is the check's kind.
	Kind Kind `json:"kind"`
	// Passed is true when an attempt passed.
	Passed bool `json:"passed"`
	// Attempts is how many attempts ran (0 when the check never started).
	Attempts int `json:"attempts"`
	// DurationMS is the time spent on the check, backoff included, in
	// milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Reason classifies the failure; empty when Passed.
	Reason Reason `json:"reason,omitempty"`
	// Error says what was expected and what was seen at the last attempt;
	// empty when Passed.
	Error string `json:"error,omitempty"`
	// Output is the end of a command's combined stdout and stderr from the
	// last attempt, at most OutputTailBytes.
	Output string `json:"output,omitempty"`
}

// Result is the outcome of every check against one target.
type Result struct {
	// Passed is true when every check passed (and so for no checks).
	Passed bool `json:"passed"`
	// DurationMS is the time the whole run took, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Checks holds one result per check, in the order given.
	Checks []CheckResult `json:"checks"`
}

// Failed returns the results of the checks that did not pass.
func (r Result) Failed() []CheckResult {
	var out []CheckResult
	for _, c := range r.Checks {
		if !c.Passed {
			out = append(out, c)
		}
	}
	return out
}

// HostResult is a Result with the target it belongs to, as RunAll returns.
type HostResult struct {
	// Target is the host the checks ran against.
	Target Target `json:"target"`
	Result
}

package execdriver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// ProtocolVersion is the version of the exec protocol this package speaks.
const ProtocolVersion = 1

// The verbs cyclerd appends to the configured argv.
const (
	// VerbInfo asks the program for its protocol version and name.
	VerbInfo = "info"
	// VerbApply hands the program a generation and backend set to apply.
	VerbApply = "apply"
	// VerbApplied asks the program what the LB itself serves.
	VerbApplied = "applied"
)

// ExitStale is the exit status with which apply says the LB holds a newer
// generation than the one offered; Apply reports it as ErrStaleGeneration.
const ExitStale = 3

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrEmptySet is returned when Apply is given no backends. No process
	// runs, so the LB keeps its last good set.
	ErrEmptySet = errors.New("empty backend set refused; the LB keeps its last good set")
	// ErrProtocolVersion is returned by New when the program speaks another
	// version of the exec protocol.
	ErrProtocolVersion = errors.New("driver program speaks another exec protocol version")
	// ErrBadOutput is returned when the program's stdout is not a valid
	// answer: not JSON, a required field missing, an invalid backend, more
	// than MaxStdout bytes.
	ErrBadOutput = errors.New("driver program's output is not a valid answer")
	// ErrTimeout is returned when the program did not finish within
	// Options.Timeout; its process group was killed.
	ErrTimeout = errors.New("driver program timed out and was killed")
	// ErrStaleGeneration is returned when apply exits with ExitStale: the
	// LB holds a newer generation, so a stale writer cannot roll it back.
	ErrStaleGeneration = errors.New("generation is older than the one the LB serves")
	// ErrReadBack is returned when, after a successful apply, applied
	// reports another generation or set than the one applied.
	ErrReadBack = errors.New("read-back differs from what was applied")
)

// Info is what `<argv...> info` prints on stdout.
type Info struct {
	// Protocol is the exec protocol version the program speaks.
	Protocol int `json:"protocol"`
	// Name names the load balancer ("haproxy"): lower-case letters,
	// digits, '.', '_' and '-', up to 64 characters.
	Name string `json:"name"`
}

// ApplyRequest is what `<argv...> apply` reads on stdin.
type ApplyRequest struct {
	// Protocol is ProtocolVersion.
	Protocol int `json:"protocol"`
	// Service is the service whose backends these are.
	Service string `json:"service"`
	// Generation tags the set; it never decreases for a service.
	Generation uint64 `json:"generation"`
	// Backends is the whole set the LB must route to, in canonical order
	// (lbdrivers.Sorted), never empty.
	Backends []lbdrivers.Backend `json:"backends"`
}

// AppliedRequest is what `<argv...> applied` reads on stdin.
type AppliedRequest struct {
	// Protocol is ProtocolVersion.
	Protocol int `json:"protocol"`
	// Service is the service to report on.
	Service string `json:"service"`
}

// AppliedResponse is what `<argv...> applied` prints on stdout.
type AppliedResponse struct {
	// Protocol is optional in an answer; if present it must be
	// ProtocolVersion.
	Protocol int `json:"protocol,omitempty"`
	// Generation is the generation the LB serves, 0 before the first apply.
	Generation uint64 `json:"generation"`
	// Backends is the set the LB routes to, empty before the first apply.
	Backends []lbdrivers.Backend `json:"backends"`
}

// nameRE is what an Info.Name may be.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// parseInfo reads the answer to info.
func parseInfo(out []byte) (Info, error) {
	var raw struct {
		Protocol *int    `json:"protocol"`
		Name     *string `json:"name"`
	}
	if err := decodeOne(out, &raw); err != nil {
		return Info{}, err
	}
	if raw.Protocol == nil {
		return Info{}, fmt.Errorf("%w: info: no protocol field in %s", ErrBadOutput, preview(out))
	}
	if *raw.Protocol != ProtocolVersion {
		return Info{}, fmt.Errorf("%w: the program speaks protocol %d, cyclerd speaks %d; use a driver release for protocol %d",
			ErrProtocolVersion, *raw.Protocol, ProtocolVersion, ProtocolVersion)
	}
	if raw.Name == nil || !nameRE.MatchString(*raw.Name) {
		return Info{}, fmt.Errorf("%w: info: name must be 1-64 of a-z, 0-9, '.', '_', '-' starting with a letter or digit; got %s",
			ErrBadOutput, preview(out))
	}
	return Info{Protocol: *raw.Protocol, Name: *raw.Name}, nil
}

// parseApplied reads the answer to applied. Unknown fields are allowed, so
// a newer program can add some; generation and backends are required, and
// every backend must pass Validate and have an id.
func parseApplied(out []byte) (uint64, []lbdrivers.Backend, error) {
	var raw struct {
		Protocol   *int                 `json:"protocol"`
		Generation *uint64              `json:"generation"`
		Backends   *[]lbdrivers.Backend `json:"backends"`
	}
	if err := decodeOne(out, &raw); err != nil {
		return 0, nil, err
	}
	if raw.Protocol != nil && *raw.Protocol != ProtocolVersion {
		return 0, nil, fmt.Errorf("%w: applied: answer is for protocol %d, want %d", ErrBadOutput, *raw.Protocol, ProtocolVersion)
	}
	if raw.Generation == nil {
		return 0, nil, fmt.Errorf("%w: applied: no generation field in %s", ErrBadOutput, preview(out))
	}
	if raw.Backends == nil {
		return 0, nil, fmt.Errorf("%w: applied: no backends array in %s (use [] for none)", ErrBadOutput, preview(out))
	}
	var errs []error
	for i, b := range *raw.Backends {
		if b.ID == "" {
			errs = append(errs, fmt.Errorf("backend %d (%s): id is empty", i, b.HostPort()))
			continue
		}
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, nil, fmt.Errorf("%w: applied: %w", ErrBadOutput, err)
	}
	return *raw.Generation, lbdrivers.Sorted(*raw.Backends), nil
}

// decodeOne decodes exactly one JSON value from out into v; anything but
// white space after it is an error.
func decodeOne(out []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v in %s", ErrBadOutput, err, preview(out))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: more than one JSON value in %s", ErrBadOutput, preview(out))
	}
	return nil
}

// preview quotes the start of a program's output for an error message.
func preview(out []byte) string {
	const n = 200
	if len(out) > n {
		return fmt.Sprintf("%q...", out[:n])
	}
	return fmt.Sprintf("%q", out)
}

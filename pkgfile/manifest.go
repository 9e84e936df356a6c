// Package pkgfile reads and safely unpacks cycler packages.
//
// A package is a .tar.gz with a manifest at its root, cycler.hcl or
// cycler.json (see Manifest). ReadManifest checks a whole package without
// writing anything, as the server does on upload; Extract unpacks one into
// a new release directory, as the agent does on install. Both apply the
// same rules (see Extract), so a package the server accepted unpacks on
// every agent with the same limits.
package pkgfile

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Manifest file names, looked for at the archive root.
const (
	// ManifestHCL is the HCL manifest's file name.
	ManifestHCL = "cycler.hcl"
	// ManifestJSON is the JSON manifest's file name.
	ManifestJSON = "cycler.json"
)

// DefaultHealthTimeout is the health timeout of a manifest whose health
// check does not set one.
const DefaultHealthTimeout = 30 * time.Second

// MaxHealthTimeout is the longest health timeout a manifest may set.
const MaxHealthTimeout = time.Hour

// Manifest describes a package: what it is, and optionally how the agent
// starts it, checks its health and prepares a switch to it.
//
// In cycler.hcl:
//
//	name    = "web"
//	version = "2.4.1"
//	start {
//	  command = ["./bin/web", "--listen", "${CYCLER_ADDR}"]
//	  env     = { LOG_LEVEL = "info" }
//	}
//	health {
//	  http_path = "/health"   # or: tcp = true
//	  timeout   = "30s"
//	}
//	hooks {
//	  pre_switch  = [["./bin/migrate", "--check"]]
//	  post_switch = []
//	}
//
// cycler.json has the same fields with the same names:
// {"name": "web", "version": "2.4.1", "start": {"command": [...], "env": {...}},
// "health": {"http_path": "/health", "timeout": "30s"}, "hooks": {"pre_switch": [[...]]}}.
// Unknown fields are errors in both formats.
//
// Commands are argv lists, never shell strings: the agent runs them
// directly, in the release directory. Before it does, it expands references
// to the variables it provides (see EnvAddr and the other Env constants) in
// start.command, in the values of start.env and in every hook argument,
// with ExpandArgs and ExpandString:
//
//   - "$NAME" or "${NAME}", as a whole argument or inside one
//     ("127.0.0.1:${CYCLER_PORT}"), becomes the variable's value;
//   - "$$" is a literal "$";
//   - a "$" followed by anything else is left as it is.
//
// Only those CYCLER_* variables may be referenced: Validate rejects any
// other name, so a typo fails on upload and not at install time. The
// agent also sets the variables in the child's environment. In HCL,
// "${CYCLER_ADDR}" is written as it reads: the decoder keeps the
// reference for the agent instead of interpolating it.
type Manifest struct {
	// Name is the package's name, the service it deploys: 1 to 63
	// lowercase letters, digits and hyphens, starting with a letter.
	Name string
	// Version is the release's version, part of its directory's name: 1
	// to 64 characters of A-Z a-z 0-9 . _ + -, not only dots.
	Version string
	// Start is how the agent starts the app as a supervised child; nil
	// when the agent is configured with a restart command instead.
	Start *Start
	// Health is the local health check the agent waits for after a
	// restart. When nil, the agent waits for a TCP connect to the
	// instance port, the same check it registers in Consul.
	Health *Health
	// Hooks are commands the agent runs around the switch of `current`.
	Hooks Hooks
}

// Start is the app's start command.
type Start struct {
	// Command is the argv to run; Command[0] is the program, found
	// relative to the release directory when it contains a "/". Required
	// and non-empty when Start is set.
	Command []string
	// Env is added to the child's environment. Keys are environment
	// variable names and may not be one of the variables the agent sets.
	Env map[string]string
}

// Health is the app's local health check: an HTTP GET of HTTPPath on the
// instance's address answering 2xx, or, with TCP, a TCP connect. Exactly
// one of the two is set.
type Health struct {
	// HTTPPath is the path to GET, starting with "/".
	HTTPPath string
	// TCP checks that the instance's port accepts connections.
	TCP bool
	// Timeout is how long the agent waits for the app to become healthy
	// after a restart: more than 0, at most MaxHealthTimeout. The parsers
	// set DefaultHealthTimeout when the manifest does not give one.
	Timeout time.Duration
}

// Hooks are argv lists the agent runs in the new release's directory. A
// hook that fails (non-zero exit) fails the install.
type Hooks struct {
	// PreSwitch run after unpacking, before `current` points at the
	// release; a failure leaves the running release untouched.
	PreSwitch [][]string
	// PostSwitch run after the switch, before the app is restarted.
	PostSwitch [][]string
}

// ParseManifest parses and validates a manifest. name is the manifest's
// file name or path; its extension picks the format (".hcl" or ".json")
// and it prefixes every problem's position ("cycler.hcl:3"). Parsing is
// strict: unknown keys, wrong types and HCL expressions other than plain
// values are errors. Every problem is reported at once, wrapped in
// ErrBadManifest.
func ParseManifest(name string, b []byte) (Manifest, error) {
	var (
		m     Manifest
		pos   func(field string) string
		probs []problem
	)
	switch path.Ext(name) {
	case ".hcl":
		m, pos, probs = parseHCL(name, b)
	case ".json":
		m, pos, probs = parseJSON(name, b)
	default:
		return Manifest{}, manifestError{{pos: name, msg: fmt.Sprintf("a manifest is named %s or %s", ManifestHCL, ManifestJSON)}}
	}
	if len(probs) > 0 {
		return Manifest{}, manifestError(probs)
	}
	probs = m.check()
	if len(probs) > 0 {
		for i := range probs {
			probs[i].pos = pos(probs[i].field)
		}
		return Manifest{}, manifestError(probs)
	}
	return m, nil
}

// Validate checks every field and returns every problem, wrapped in
// ErrBadManifest, or nil.
func (m Manifest) Validate() error {
	if probs := m.check(); len(probs) > 0 {
		return manifestError(probs)
	}
	return nil
}

var (
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,64}$`)
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// maxHTTPPath bounds health.http_path.
const maxHTTPPath = 1024

// check returns every problem with m, without positions.
func (m Manifest) check() []problem {
	var probs []problem
	add := func(field, value, format string, args ...any) {
		probs = append(probs, problem{field: field, value: value, msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case m.Name == "":
		add("name", "", "is required: the package's service name, like \"web\"")
	case !nameRE.MatchString(m.Name):
		add("name", quote(m.Name), "must be 1 to 63 lowercase letters, digits and hyphens, starting with a letter")
	}
	switch {
	case m.Version == "":
		add("version", "", "is required, like \"2.4.1\"")
	case !versionRE.MatchString(m.Version):
		add("version", quote(m.Version), "must be 1 to 64 characters of A-Z a-z 0-9 . _ + -")
	case strings.Trim(m.Version, ".") == "":
		add("version", quote(m.Version), "must not be only dots; it is part of a directory name")
	}
	if m.Start != nil {
		if len(m.Start.Command) == 0 {
			add("start.command", "", "is required when start is set: the argv to run, like [\"./bin/web\", \"--listen\", \"${CYCLER_ADDR}\"]")
		}
		probs = append(probs, checkArgv("start.command", m.Start.Command)...)
		keys := make([]string, 0, len(m.Start.Env))
		for k := range m.Start.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			field := "start.env." + k
			switch {
			case !envKeyRE.MatchString(k):
				add(field, "", "is not an environment variable name; use letters, digits and underscores, not starting with a digit")
			case slices.Contains(variables, k):
				add(field, "", "is set by the agent; reference it as ${%s} in a value instead", k)
			}
			probs = append(probs, checkString(field, m.Start.Env[k])...)
		}
	}
	if h := m.Health; h != nil {
		switch {
		case h.HTTPPath != "" && h.TCP:
			add("health", "", "sets both http_path and tcp; choose one")
		case h.HTTPPath == "" && !h.TCP:
			add("health", "", "needs http_path = \"/health\" (an HTTP check) or tcp = true (a TCP connect)")
		case h.HTTPPath != "" && !validHTTPPath(h.HTTPPath):
			add("health.http_path", quote(h.HTTPPath), "must start with \"/\" and be at most %d printable characters without spaces", maxHTTPPath)
		}
		if h.Timeout <= 0 || h.Timeout > MaxHealthTimeout {
			add("health.timeout", quote(h.Timeout.String()), "must be more than 0s and at most %s", MaxHealthTimeout)
		}
	}
	for i, argv := range m.Hooks.PreSwitch {
		probs = append(probs, checkHook(fmt.Sprintf("hooks.pre_switch[%d]", i), argv)...)
	}
	for i, argv := range m.Hooks.PostSwitch {
		probs = append(probs, checkHook(fmt.Sprintf("hooks.post_switch[%d]", i), argv)...)
	}
	return probs
}

// checkHook checks one hook's argv.
func checkHook(field string, argv []string) []problem {
	if len(argv) == 0 {
		return []problem{{field: field, msg: "is an empty command; give the argv to run, like [\"./bin/migrate\"]"}}
	}
	return checkArgv(field, argv)
}

// checkArgv checks each argument of an argv: the program is not empty, no
// argument holds a NUL byte, and every variable reference is one the
// agent provides.
func checkArgv(field string, argv []string) []problem {
	var probs []problem
	if len(argv) > 0 && argv[0] == "" {
		probs = append(probs, problem{field: field + "[0]", value: `""`, msg: "is the program to run and must not be empty"})
	}
	for i, a := range argv {
		probs = append(probs, checkString(fmt.Sprintf("%s[%d]", field, i), a)...)
	}
	return probs
}

// checkString checks one string the agent expands.
func checkString(field, s string) []problem {
	var probs []problem
	if strings.IndexByte(s, 0) >= 0 {
		probs = append(probs, problem{field: field, value: quote(s), msg: "contains a NUL byte"})
	}
	for _, msg := range badRefs(s) {
		probs = append(probs, problem{field: field, value: quote(s), msg: msg})
	}
	return probs
}

// validHTTPPath reports whether p is an absolute request path of
// printable ASCII.
func validHTTPPath(p string) bool {
	if len(p) > maxHTTPPath || !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f || p[i] == '#' {
			return false
		}
	}
	return true
}

// quote quotes a value for a problem message, shortening a long one.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

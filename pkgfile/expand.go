package pkgfile

import (
	"fmt"
	"slices"
	"strings"
)

// The variables the agent provides to a package's commands, both in the
// child's environment and for expansion in the manifest (see Manifest).
const (
	// EnvAddr is the "host:port" the app must listen on.
	EnvAddr = "CYCLER_ADDR"
	// EnvHost is the host part of EnvAddr.
	EnvHost = "CYCLER_HOST"
	// EnvPort is the port part of EnvAddr.
	EnvPort = "CYCLER_PORT"
	// EnvVersion is the release's version, the manifest's version.
	EnvVersion = "CYCLER_VERSION"
	// EnvInstance is the app instance's Consul service id.
	EnvInstance = "CYCLER_INSTANCE"
	// EnvPool is the instance's pool, blue or green.
	EnvPool = "CYCLER_POOL"
	// EnvReleaseDir is the absolute path of the release directory.
	EnvReleaseDir = "CYCLER_RELEASE_DIR"
)

// variables is every variable a manifest may reference.
var variables = []string{EnvAddr, EnvHost, EnvPort, EnvVersion, EnvInstance, EnvPool, EnvReleaseDir}

// Variables returns the names of every variable a manifest may reference:
// the Env constants, in the order they are documented.
func Variables() []string { return slices.Clone(variables) }

// ExpandArgs returns a copy of args with ExpandString applied to each
// argument. It is what the agent runs on start.command and on each hook
// before executing it; nothing is ever passed to a shell.
func ExpandArgs(args []string, env map[string]string) []string {
	if args == nil {
		return nil
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = ExpandString(a, env)
	}
	return out
}

// ExpandString replaces "$NAME" and "${NAME}" in s with env[NAME] (the
// empty string when env has no NAME) for every NAME in Variables(), and "$$"
// with "$". Other variable names are not expanded, even when env has them,
// and everything else is copied as it is. A manifest that passed Validate
// references no other names.
func ExpandString(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	scanRefs(s, func(lit string, ref varRef) {
		b.WriteString(lit)
		switch {
		case ref.escape:
			b.WriteByte('$')
		case ref.text == "":
		case ref.err == "" && slices.Contains(variables, ref.name):
			b.WriteString(env[ref.name])
		default:
			b.WriteString(ref.text)
		}
	})
	return b.String()
}

// varRef is one "$" construct in a string.
type varRef struct {
	// text is the construct as written ("${CYCLER_ADDR}", "$$"), or ""
	// for the trailing literal of the string.
	text string
	// name is the referenced variable's name.
	name string
	// escape is set for "$$".
	escape bool
	// err says why a "${...}" is malformed.
	err string
}

// scanRefs splits s into literal text and "$" constructs and calls fn for
// each construct with the literal text before it, and a final time with
// the trailing literal and a zero varRef. A "$" that starts no construct
// ("$1", "5$") stays in the literal text.
func scanRefs(s string, fn func(lit string, ref varRef)) {
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			continue
		}
		var ref varRef
		next := s[i+1]
		switch {
		case next == '$':
			ref = varRef{text: "$$", escape: true}
		case next == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				ref = varRef{text: s[i:], err: "has a ${ without a closing }; write $$ for a literal $"}
				break
			}
			ref = varRef{text: s[i : i+3+end], name: s[i+2 : i+2+end]}
			if !isName(ref.name) {
				ref.err = fmt.Sprintf("has %s, which is not a variable reference; write $$ for a literal $", ref.text)
			}
		case isNameStart(next):
			j := i + 2
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			ref = varRef{text: s[i:j], name: s[i+1 : j]}
		default:
			continue
		}
		fn(s[start:i], ref)
		i += len(ref.text) - 1
		start = i + 1
	}
	fn(s[start:], varRef{})
}

// badRefs returns a message for every reference in s that the agent
// cannot expand.
func badRefs(s string) []string {
	if !strings.Contains(s, "$") {
		return nil
	}
	var msgs []string
	scanRefs(s, func(_ string, ref varRef) {
		switch {
		case ref.err != "":
			msgs = append(msgs, ref.err)
		case ref.name != "" && !slices.Contains(variables, ref.name):
			msgs = append(msgs, fmt.Sprintf("references $%s, which the agent does not set; a manifest may reference only %s (write $$ for a literal $)",
				ref.name, strings.Join(variables, ", ")))
		}
	})
	return msgs
}

// isName reports whether s is a variable name: [A-Za-z_][A-Za-z0-9_]*.
func isName(s string) bool {
	if s == "" || !isNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

func isNameStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isNameChar(c byte) bool { return isNameStart(c) || '0' <= c && c <= '9' }

package config

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Problem is one thing wrong with a configuration: a syntax error, an
// unknown key, a value of the wrong type or a value that fails validation.
// Parse errors and validation problems share this type so that
// `cyclerd config check` can print them the same way.
type Problem struct {
	// Pos says where the value came from: "file:line" for a value written
	// in the file, the file name alone for a key the file is missing,
	// "(default)" for a built-in default and "(flag)" for a value set by
	// a command-line flag.
	Pos string
	// Line is the line number inside Pos, or 0 when Pos names no line.
	// Problems are ordered by it.
	Line int
	// Path is the key the problem is about, for example "raft.bind" or
	// "api.token[ops].secret". It is empty for syntax errors.
	Path string
	// Value is the offending value, already quoted for printing. Secret
	// values are never stored here, only "(redacted, N chars)". It is
	// empty when the key is missing.
	Value string
	// Msg says what is wrong and what is allowed.
	Msg string
}

// String formats the problem as one line: "pos: path: value msg".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Pos)
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	if p.Value != "" {
		b.WriteString(p.Value)
		b.WriteString(" ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one configuration. It implements
// error; use errors.As to get at the individual problems.
type Problems []Problem

// Error prints one problem per line, in line order.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// err returns the problems sorted by line, or nil when there are none, so
// that callers never get a non-nil error holding an empty list.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps.sorted()
}

// sorted returns a copy ordered by line. Problems without a line (missing
// keys, defaults, flags) come first; the sort is stable so problems on the
// same line keep the order they were found in.
func (ps Problems) sorted() Problems {
	out := append(Problems(nil), ps...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// merge appends the validation problems in more to ps, leaving out those
// about a key that already has a parse problem: a value that failed to
// decode keeps its default, and reporting that default too would only
// confuse. Problems inside a block with a parse problem are kept; they are
// about other keys.
func (ps Problems) merge(more Problems) Problems {
	bad := make(map[string]bool, len(ps))
	for _, p := range ps {
		if p.Path != "" {
			bad[p.Path] = true
		}
	}
	out := ps
	for _, p := range more {
		if !sameKey(p.Path, bad) {
			out = append(out, p)
		}
	}
	return out
}

// sameKey reports whether path, or the list it is an element of, is in set.
func sameKey(path string, set map[string]bool) bool {
	for p, ok := path, true; ok; p, ok = trimIndex(p) {
		if set[p] {
			return true
		}
	}
	return false
}

// coveredBy reports whether path or one of its ancestors is in set.
func coveredBy(path string, set map[string]bool) bool {
	for p := path; p != ""; p = parentPath(p) {
		if set[p] {
			return true
		}
	}
	return false
}

// quote formats a string value for a problem message.
func quote(s string) string {
	const limit = 80
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit]) + "..."
	}
	return fmt.Sprintf("%q", s)
}

// redact stands in for a secret value in a problem message. Only the length
// is shown, which is what the operator needs to fix a too-short secret.
func redact(s string) string {
	return fmt.Sprintf("(redacted, %d chars)", utf8.RuneCountInString(s))
}

// Problems is returned as an error.
var _ error = Problems(nil)

package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// sources remembers where each value of a configuration came from, so that
// a problem can point at the line to fix. The zero value describes a
// configuration built in code: every value is a default.
type sources struct {
	// file is the name the configuration was parsed from, or "".
	file string
	// ranges holds the source range of every attribute and block the file
	// set, keyed by field path ("raft.bind", "api.token[ops]",
	// "servers[1]").
	ranges map[string]hcl.Range
	// flags holds the paths a command-line flag has overridden.
	flags map[string]bool
}

// setFlag records that a flag set the value at path. It wins over the file:
// the value in the struct is no longer the one the file holds.
func (s *sources) setFlag(path string) {
	if s.flags == nil {
		s.flags = make(map[string]bool)
	}
	s.flags[path] = true
}

// valuePos says where the value at path came from: "(flag)", "file:line"
// or "(default)". An element of a list ("servers[1]") without a range of
// its own takes the range of the list.
func (s *sources) valuePos(path string) (string, int) {
	if s.flagged(path) {
		return "(flag)", 0
	}
	for p := path; p != ""; {
		if r, ok := s.ranges[p]; ok {
			return formatRange(r), r.Start.Line
		}
		parent, ok := trimIndex(p)
		if !ok {
			break
		}
		p = parent
	}
	return "(default)", 0
}

// missingPos says where a missing key should have been: the line of the
// closest enclosing block the file has, else the file itself.
func (s *sources) missingPos(path string) (string, int) {
	if s.flagged(path) {
		return "(flag)", 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if r, ok := s.ranges[p]; ok {
			return formatRange(r), r.Start.Line
		}
	}
	if s.file != "" {
		return s.file, 0
	}
	return "(default)", 0
}

// flagged reports whether a flag set path or one of its ancestors.
func (s *sources) flagged(path string) bool {
	return len(s.flags) > 0 && coveredBy(path, s.flags)
}

// formatRange prints the start of r as "file:line".
func formatRange(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

// parentPath strips the last segment of a field path: "api.token[ops].secret"
// becomes "api.token[ops]", which becomes "api.token", then "api", then "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// trimIndex strips a trailing list index: "servers[1]" becomes "servers".
// It leaves block labels ("token[ops]") alone.
func trimIndex(p string) (string, bool) {
	if !strings.HasSuffix(p, "]") {
		return "", false
	}
	i := strings.LastIndexByte(p, '[')
	if i < 0 || i+1 >= len(p)-1 {
		return "", false
	}
	for _, r := range p[i+1 : len(p)-1] {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return p[:i], true
}

// joinPath appends a key to a field path.
func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// indexPath names element i of the list at path.
func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// labelPath names the block at path with the given label.
func labelPath(path, label string) string {
	return path + "[" + label + "]"
}

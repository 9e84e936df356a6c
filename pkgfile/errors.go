package pkgfile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Sentinel errors. Every error this package returns about a package's
// content wraps exactly one of them, so callers can branch with errors.Is;
// the message itself names the offending entry or manifest field.
var (
	// ErrUnsafePath means an entry's path or link target would reach
	// outside the release directory: an absolute path, a ".." component,
	// a symlink or hardlink that escapes, a path through a symlink, or a
	// path that appears twice.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrTooLarge means the package is over one of its Limits: the
	// compressed archive, the unpacked bytes, the number of entries or
	// the manifest's size.
	ErrTooLarge = errors.New("package too large")
	// ErrBadManifest means the manifest does not parse or does not
	// validate, is not a regular file, or there are two of them.
	ErrBadManifest = errors.New("invalid package manifest")
	// ErrNoManifest means the archive has no cycler.hcl or cycler.json at
	// its root.
	ErrNoManifest = errors.New("no package manifest")
	// ErrUnsupportedEntry means an entry's type cannot be part of a
	// release: a device file, a FIFO or another special tar entry.
	ErrUnsupportedEntry = errors.New("unsupported entry type")
	// ErrCorrupt means the input is not a complete, well-formed .tar.gz:
	// not gzip, not tar, a bad checksum, or truncated.
	ErrCorrupt = errors.New("corrupt package archive")
)

// problem is one thing wrong with a manifest.
type problem struct {
	// pos is "file:line", "file" or "" when the manifest was built in code.
	pos string
	// field is the manifest field, like "start.command[0]", or "" for a
	// syntax error.
	field string
	// value is the offending value, already quoted, or "".
	value string
	// msg says what is wrong and what is allowed.
	msg string
}

// String formats the problem as one line: `pos: field value: msg`.
func (p problem) String() string {
	var b strings.Builder
	if p.pos != "" {
		b.WriteString(p.pos)
		b.WriteString(": ")
	}
	if p.field != "" {
		field := p.field
		if strings.IndexFunc(field, unicode.IsControl) >= 0 {
			// Map keys from a JSON manifest can hold anything.
			field = strconv.Quote(field)
		}
		b.WriteString(field)
		if p.value != "" {
			b.WriteString(" ")
			b.WriteString(p.value)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.msg)
	return b.String()
}

// manifestError is every problem found in one manifest. It matches
// ErrBadManifest with errors.Is.
type manifestError []problem

// Error lists the problems, one per line when there is more than one.
func (e manifestError) Error() string {
	if len(e) == 1 {
		return ErrBadManifest.Error() + ": " + e[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d problems):", ErrBadManifest, len(e))
	for _, p := range e {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is ErrBadManifest.
func (e manifestError) Is(target error) bool { return target == ErrBadManifest }

// entryError builds the error for one archive entry, wrapping sentinel:
// `package entry "../etc/passwd": unsafe path: ".." escapes the release directory`.
func entryError(name string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("package entry %q: %w: %s", name, sentinel, fmt.Sprintf(format, args...))
}

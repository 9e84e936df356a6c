package pkgfile

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"strings"
	"time"
)

// kind is what the walker created at a path.
type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindSymlink
)

// sink receives the entries the walker accepted. Extract writes them to
// disk; ReadManifest discards them. Paths are cleaned, slash-separated and
// relative to the release root; parents always exist as directories.
type sink interface {
	// dir creates the directory p, or sets its mode if it exists.
	dir(p string, mode fs.FileMode) error
	// file creates the regular file p from r.
	file(p string, mode fs.FileMode, mtime time.Time, r io.Reader) error
	// symlink creates p pointing at target (relative, already checked).
	symlink(p, target string) error
	// link creates p as a hardlink of the earlier regular file target.
	link(p, target string) error
}

// walker reads a package and applies every rule to each entry before
// handing it to a sink.
type walker struct {
	lim  Limits
	in   *meteredReader
	out  sink
	seen map[string]kind
	// entries and unpacked count against lim.MaxFiles and
	// lim.MaxUnpackedBytes.
	entries  int
	unpacked int64
	// at says where in the archive the walker is (` (at entry "x")`),
	// for errors that surface mid-stream.
	at string
	// streamCap bounds the decompressed stream, tar headers included.
	streamCap int64
	manifest  *Manifest
	mfile     string
}

// walk reads the whole .tar.gz from r into out and returns its manifest.
func walk(ctx context.Context, r io.Reader, lim Limits, out sink) (Manifest, error) {
	lim = lim.withDefaults()
	// tar headers, PAX records and padding are not file content, but a
	// hostile archive could hold gigabytes of them; bound the whole
	// decompressed stream too, allowing 8 KiB of tar overhead per entry.
	overhead := satAdd(int64(min(lim.MaxFiles, math.MaxInt32))*8192, 1<<20)
	w := &walker{
		lim:       lim,
		in:        &meteredReader{ctx: ctx, r: r, left: satAdd(lim.MaxArchiveBytes, 1)},
		out:       out,
		seen:      make(map[string]kind),
		streamCap: satAdd(lim.MaxUnpackedBytes, overhead),
	}
	return w.run(ctx)
}

func (w *walker) run(ctx context.Context) (Manifest, error) {
	gz, err := gzip.NewReader(w.in)
	if err != nil {
		return Manifest{}, w.readErr(err)
	}
	stream := &meteredReader{ctx: ctx, r: gz, left: satAdd(w.streamCap, 1)}
	tr := tar.NewReader(stream)
	for prev := ""; ; {
		if err := ctx.Err(); err != nil {
			return Manifest{}, fmt.Errorf("package: stopped%s: %w", w.at, err)
		}
		if prev != "" {
			w.at = fmt.Sprintf(" (after entry %q)", prev)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// ErrInsecurePath (only with GODEBUG=tarinsecurepath=0) comes
		// with a valid header; the walker's own path checks explain it.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return Manifest{}, w.streamErr(stream, err)
		}
		prev, w.at = hdr.Name, fmt.Sprintf(" (at entry %q)", hdr.Name)
		w.entries++
		if w.entries > w.lim.MaxFiles {
			return Manifest{}, entryError(hdr.Name, ErrTooLarge, "the package has more than %d entries", w.lim.MaxFiles)
		}
		if err := w.entry(hdr, tr); err != nil {
			return Manifest{}, w.streamErr(stream, err)
		}
	}
	if w.manifest == nil {
		return Manifest{}, fmt.Errorf("package: %w: the archive root has no %q or %q; build the package from inside its directory (tar -czf pkg.tar.gz -C dir .)", ErrNoManifest, ManifestHCL, ManifestJSON)
	}
	// Read to the end of the gzip stream so its checksum is verified and
	// a truncated file is caught even when only the trailer is missing.
	w.at = afterLast
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return Manifest{}, w.streamErr(stream, err)
	}
	return *w.manifest, nil
}

// entry checks one header and passes it to the sink.
func (w *walker) entry(hdr *tar.Header, body io.Reader) error {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global metadata, as `git archive` writes
	}
	p, why := cleanPath(name)
	if why != "" {
		return entryError(name, ErrUnsafePath, "%s", why)
	}
	if p == ManifestHCL || p == ManifestJSON {
		return w.manifestEntry(hdr, p, body)
	}
	if p == "" {
		if hdr.Typeflag != tar.TypeDir {
			return entryError(name, ErrUnsafePath, "names the release directory itself but is not a directory")
		}
		return w.out.dir("", dirMode(hdr.Mode))
	}
	if err := w.parents(name, p); err != nil {
		return err
	}
	if k, ok := w.seen[p]; ok && !(k == kindDir && hdr.Typeflag == tar.TypeDir) {
		return entryError(name, ErrUnsafePath, "the path appears twice in the archive")
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		if err := w.reserve(name, hdr.Size); err != nil {
			return err
		}
		w.seen[p] = kindFile
		return w.out.file(p, fileMode(hdr.Mode), hdr.ModTime, body)
	case tar.TypeDir:
		w.seen[p] = kindDir
		return w.out.dir(p, dirMode(hdr.Mode))
	case tar.TypeSymlink:
		if why := checkSymlink(p, hdr.Linkname); why != "" {
			return entryError(name, ErrUnsafePath, "symlink to %q %s", hdr.Linkname, why)
		}
		w.seen[p] = kindSymlink
		return w.out.symlink(p, hdr.Linkname)
	case tar.TypeLink:
		target, why := cleanPath(hdr.Linkname)
		if why == "" && w.seen[target] != kindFile {
			why = "is not an earlier regular file in the package"
		}
		if why != "" {
			return entryError(name, ErrUnsafePath, "hardlink target %q %s", hdr.Linkname, why)
		}
		w.seen[p] = kindFile
		return w.out.link(p, target)
	}
	return entryError(name, ErrUnsupportedEntry, "%s; a package holds only regular files, directories and links", typeName(hdr.Typeflag))
}

// manifestEntry reads, parses and passes on the root manifest.
func (w *walker) manifestEntry(hdr *tar.Header, p string, body io.Reader) error {
	name := hdr.Name
	if w.manifest != nil {
		return entryError(name, ErrBadManifest, "the package already has %s; it must have exactly one of %s and %s", w.mfile, ManifestHCL, ManifestJSON)
	}
	if hdr.Typeflag != tar.TypeReg {
		return entryError(name, ErrBadManifest, "is a %s; the manifest must be a regular file", typeName(hdr.Typeflag))
	}
	if _, ok := w.seen[p]; ok {
		return entryError(name, ErrUnsafePath, "the path appears twice in the archive")
	}
	if hdr.Size > w.lim.MaxManifestBytes {
		return entryError(name, ErrTooLarge, "the manifest is %d bytes; the limit is %d", hdr.Size, w.lim.MaxManifestBytes)
	}
	if err := w.reserve(name, hdr.Size); err != nil {
		return err
	}
	src, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	m, err := ParseManifest(p, src)
	if err != nil {
		return fmt.Errorf("package entry %q: %w", name, err)
	}
	w.manifest, w.mfile = &m, p
	w.seen[p] = kindFile
	return w.out.file(p, fileMode(hdr.Mode), hdr.ModTime, bytes.NewReader(src))
}

// parents checks that every parent of p is a directory, not a symlink or
// a file, creating the missing ones. A parent that is a symlink is
// refused even when it points inside the release: writing through links
// is how "link -> /etc, then link/passwd" attacks work.
func (w *walker) parents(name, p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		dir := p[:i]
		switch w.seen[dir] {
		case kindDir:
		case kindSymlink:
			return entryError(name, ErrUnsafePath, "the path goes through the symlink %q", dir)
		case kindFile:
			return entryError(name, ErrUnsafePath, "the path goes through the file %q", dir)
		default:
			if err := w.out.dir(dir, 0o755); err != nil {
				return err
			}
			w.seen[dir] = kindDir
		}
	}
	return nil
}

// reserve counts size bytes against MaxUnpackedBytes before they are
// read, so an oversized entry fails before any of it is written.
func (w *walker) reserve(name string, size int64) error {
	if size > w.lim.MaxUnpackedBytes-w.unpacked {
		return entryError(name, ErrTooLarge, "its %d bytes would take the unpacked package past the limit of %d bytes", size, w.lim.MaxUnpackedBytes)
	}
	w.unpacked += size
	return nil
}

// streamErr explains an error from reading the archive. The limits and the
// context are checked first, because the gzip and tar readers report
// them as whatever error they ran into.
func (w *walker) streamErr(stream *meteredReader, err error) error {
	switch {
	case w.in.err != nil:
		return w.readErr(err)
	case errors.Is(stream.err, errArchiveTooLarge):
		return fmt.Errorf("package: %w: the archive unpacks to more than %d bytes of tar data%s", ErrTooLarge, w.streamCap, w.at)
	case stream.err != nil:
		return fmt.Errorf("package: stopped%s: %w", w.at, stream.err)
	case errors.Is(err, ErrUnsafePath), errors.Is(err, ErrTooLarge), errors.Is(err, ErrBadManifest),
		errors.Is(err, ErrUnsupportedEntry), errors.Is(err, ErrNoManifest), errors.Is(err, errWrite):
		return err
	}
	return w.readErr(err)
}

// readErr explains an error from the compressed input or the decoders.
func (w *walker) readErr(err error) error {
	at := w.at
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(w.in.err, errArchiveTooLarge):
		return fmt.Errorf("package: %w: the archive is larger than the limit of %d bytes%s", ErrTooLarge, w.lim.MaxArchiveBytes, at)
	case w.in.err != nil:
		return fmt.Errorf("package: stopped%s: %w", at, w.in.err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("package: %w: the archive ends early%s; the file is truncated", ErrCorrupt, at)
	case errors.Is(err, gzip.ErrHeader) && at == afterLast:
		return fmt.Errorf("package: %w: there is data after the end of the gzip stream", ErrCorrupt)
	case errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("package: %w: not a gzip file; a package is a .tar.gz", ErrCorrupt)
	case errors.Is(err, gzip.ErrChecksum), errors.As(err, &corrupt):
		return fmt.Errorf("package: %w: bad gzip data%s: %v", ErrCorrupt, at, err)
	case errors.Is(err, tar.ErrHeader), errors.Is(err, tar.ErrFieldTooLong), errors.Is(err, tar.ErrInsecurePath):
		return fmt.Errorf("package: %w: bad tar data%s: %v", ErrCorrupt, at, err)
	}
	return fmt.Errorf("package: reading archive%s: %w", at, err)
}

// afterLast is where the walker is while it reads the gzip trailer.
const afterLast = " (after the last entry)"

// errArchiveTooLarge is the meteredReader's error for reading past its
// limit; the walker turns it into an ErrTooLarge with the limit.
var errArchiveTooLarge = errors.New("archive too large")

// errWrite marks errors from the sink writing to disk.
var errWrite = errors.New("writing the release")

// meteredReader stops reading after a number of bytes or once ctx is done,
// and remembers why it stopped.
type meteredReader struct {
	ctx context.Context
	r   io.Reader
	// left is how many more bytes may be read; reading the last one is
	// already an error, so left starts at the limit plus one.
	left int64
	err  error
}

func (m *meteredReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if err := m.ctx.Err(); err != nil {
		m.err = err
		return 0, err
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left <= 0 {
		m.err = errArchiveTooLarge
		return n, m.err
	}
	return n, err
}

// Path length limits, well inside Linux's NAME_MAX (255) and PATH_MAX
// (4096) once the release directory's own path is added, so that a
// package ReadManifest accepts does not fail to extract.
const (
	maxPathBytes      = 2048
	maxComponentBytes = 255
)

// cleanPath turns an entry name into a clean relative path ("" for the
// root), or says why it is unsafe. "." and empty components are dropped;
// ".." anywhere is refused, even where it would stay inside.
func cleanPath(name string) (string, string) {
	switch {
	case name == "":
		return "", "the name is empty"
	case len(name) > maxPathBytes:
		return "", fmt.Sprintf("the name is longer than %d bytes", maxPathBytes)
	case strings.IndexByte(name, 0) >= 0:
		return "", "the name contains a NUL byte"
	case strings.HasPrefix(name, "/"):
		return "", "is an absolute path; package paths are relative to the release directory"
	}
	parts := strings.Split(name, "/")
	kept := parts[:0]
	for _, part := range parts {
		switch part {
		case "", ".":
		case "..":
			return "", "\"..\" escapes the release directory"
		default:
			if len(part) > maxComponentBytes {
				return "", fmt.Sprintf("a path component is longer than %d bytes", maxComponentBytes)
			}
			kept = append(kept, part)
		}
	}
	return strings.Join(kept, "/"), ""
}

// checkSymlink says why a symlink at p pointing at target could resolve
// outside the release, or returns "". The target must be relative, and
// all of its ".." components must come first, no more of them than p has
// parent directories. Since no entry's path goes through a symlink, the
// directory holding any symlink is a real directory, so resolving such a
// target stays inside the release, through any chain of symlinks. (A ".."
// after a name could undo a symlink's jump: with l -> ".", "a/b/../../l/.."
// looks like "." but resolves to the release's parent.)
func checkSymlink(p, target string) string {
	switch {
	case target == "":
		return "has an empty target"
	case len(target) > maxPathBytes:
		return fmt.Sprintf("has a target longer than %d bytes", maxPathBytes)
	case strings.IndexByte(target, 0) >= 0:
		return "has a target with a NUL byte"
	case strings.HasPrefix(target, "/"):
		return "is absolute; links must be relative and stay inside the release directory"
	}
	depth := strings.Count(p, "/")
	ups, named := 0, false
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
		case "..":
			if named {
				return "has \"..\" after a name; write the target without it"
			}
			ups++
			if ups > depth {
				return "escapes the release directory"
			}
		default:
			named = true
		}
	}
	return ""
}

// satAdd adds two non-negative numbers, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// fileMode keeps a file's permission bits and drops setuid, setgid and
// sticky: a release must not grant privileges.
func fileMode(mode int64) fs.FileMode { return fs.FileMode(mode) & fs.ModePerm }

// dirMode is fileMode plus owner rwx, so the agent can always add to and
// delete an old release.
func dirMode(mode int64) fs.FileMode { return fileMode(mode) | 0o700 }

// typeName names a tar entry type for error messages.
func typeName(t byte) string {
	switch t {
	case tar.TypeReg:
		return "regular file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO (named pipe)"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

package pkgfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Limits bound what a package may hold. A zero or negative field means
// the DefaultLimits value.
type Limits struct {
	// MaxArchiveBytes bounds the compressed .tar.gz read from the input.
	MaxArchiveBytes int64
	// MaxUnpackedBytes bounds the sum of the sizes of the package's
	// regular files. It is checked against each entry's size before the
	// entry is read, so a gzip bomb fails before it fills the disk.
	MaxUnpackedBytes int64
	// MaxFiles bounds the number of entries: files, directories and links.
	MaxFiles int
	// MaxManifestBytes bounds the manifest file.
	MaxManifestBytes int64
}

// DefaultLimits returns limits that fit real applications with room to
// spare: a 1 GiB archive unpacking to at most 4 GiB in at most 100,000
// entries, with a manifest of at most 64 KiB.
func DefaultLimits() Limits {
	return Limits{
		MaxArchiveBytes:  1 << 30,
		MaxUnpackedBytes: 4 << 30,
		MaxFiles:         100_000,
		MaxManifestBytes: 64 << 10,
	}
}

// withDefaults replaces zero and negative fields with the defaults.
func (l Limits) withDefaults() Limits {
	def := DefaultLimits()
	if l.MaxArchiveBytes <= 0 {
		l.MaxArchiveBytes = def.MaxArchiveBytes
	}
	if l.MaxUnpackedBytes <= 0 {
		l.MaxUnpackedBytes = def.MaxUnpackedBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = def.MaxFiles
	}
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = def.MaxManifestBytes
	}
	return l
}

// ReadManifest reads a whole package from r and returns its validated
// manifest. It applies every rule Extract applies, and reads to the end
// of the archive, without writing anything: a package ReadManifest
// accepts extracts under the same limits unless the disk fails.
func ReadManifest(r io.Reader, lim Limits) (Manifest, error) {
	return walk(context.Background(), r, lim, discardSink{})
}

// Extract unpacks the package read from r into the new directory dest and
// returns its manifest. dest must not exist; its parent must.
//
// The package is unpacked into a temporary directory next to dest, on the
// same file system, which is renamed to dest only when every entry was
// accepted and written. On any error the temporary directory is removed,
// so dest's parent is left as it was. Nothing is ever written outside the
// temporary directory.
//
// The rules, each failing with an error that names the entry:
//   - paths are relative, with no ".." component (ErrUnsafePath); "./"
//     prefixes and empty components are ignored;
//   - the manifest is a regular file at the root, cycler.hcl or
//     cycler.json, exactly one, and it validates (ErrBadManifest,
//     ErrNoManifest);
//   - regular files, directories, symlinks and hardlinks only: device
//     files, FIFOs and other special entries are refused
//     (ErrUnsupportedEntry);
//   - a symlink's target is relative and resolves inside the release:
//     its ".." components come first and do not climb above the root
//     (ErrUnsafePath);
//   - no entry's path goes through a symlink or appears twice, so no
//     entry can write through a link (ErrUnsafePath);
//   - a hardlink points at an earlier regular file of the package
//     (ErrUnsafePath);
//   - the Limits hold (ErrTooLarge); an archive that is not a complete
//     .tar.gz is refused (ErrCorrupt).
//
// Permission bits are kept, except that setuid, setgid and sticky bits are
// dropped and directories always get owner rwx (so the agent can delete
// an old release). Owners are not restored: files belong to the caller.
// Regular files keep their modification time (between 1970 and 2200).
//
// ctx stops the extraction between reads; the error then wraps ctx.Err().
func Extract(ctx context.Context, r io.Reader, dest string, lim Limits) (Manifest, error) {
	if _, err := os.Lstat(dest); err == nil {
		return Manifest{}, fmt.Errorf("package: extracting into %s: %w; remove it or choose another release directory", dest, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("package: extracting into %s: %w", dest, err)
	}
	parent, base := filepath.Split(filepath.Clean(dest))
	if parent == "" {
		parent = "."
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".extract-")
	if err != nil {
		return Manifest{}, fmt.Errorf("package: extracting into %s: %w", dest, err)
	}
	m, err := extractTo(ctx, r, tmp, lim)
	if err == nil {
		// rename(2) refuses to replace a directory that is not empty, and
		// a package always holds its manifest, so a dest created in the
		// meantime is never overwritten.
		if err = os.Rename(tmp, dest); err != nil {
			err = fmt.Errorf("package: extracting into %s: %w", dest, err)
		}
	}
	if err != nil {
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("package: removing %s: %w", tmp, rmErr))
		}
		return Manifest{}, err
	}
	return m, nil
}

// extractTo unpacks into the existing, empty directory root.
func extractTo(ctx context.Context, r io.Reader, root string, lim Limits) (Manifest, error) {
	d := &diskSink{root: root, buf: make([]byte, 64<<10), rootMode: 0o755}
	m, err := walk(ctx, r, lim, d)
	if err != nil {
		return Manifest{}, err
	}
	if err := os.Chmod(root, d.rootMode); err != nil {
		return Manifest{}, fmt.Errorf("package: %w: %w", errWrite, err)
	}
	return m, nil
}

// Modification times outside (minMtime, maxMtime) are not restored: the
// nanosecond count os.Chtimes passes to the kernel cannot hold them.
var (
	minMtime = time.Unix(0, 0)
	maxMtime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// diskSink writes entries under root.
type diskSink struct {
	root     string
	buf      []byte
	rootMode fs.FileMode
}

func (d *diskSink) path(p string) string { return filepath.Join(d.root, filepath.FromSlash(p)) }

func (d *diskSink) dir(p string, mode fs.FileMode) error {
	if p == "" {
		// The root's mode is set last, so a read-only mode in the archive
		// does not stop the extraction.
		d.rootMode = mode
		return nil
	}
	full := d.path(p)
	if err := os.Mkdir(full, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return writeError(p, err)
	}
	// Mkdir's mode is filtered by the umask; the archive's is not.
	return writeError(p, os.Chmod(full, mode))
}

func (d *diskSink) file(p string, mode fs.FileMode, mtime time.Time, r io.Reader) error {
	full := d.path(p)
	// O_EXCL and O_NOFOLLOW: the walker already refused duplicates and
	// links in the path; this makes sure of it at the file system too.
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return writeError(p, err)
	}
	src := &readTracker{r: r}
	_, err = io.CopyBuffer(f, src, d.buf)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if src.err != nil {
		return src.err // the archive's problem, not the disk's
	}
	if err == nil && mtime.After(minMtime) && mtime.Before(maxMtime) {
		err = os.Chtimes(full, time.Time{}, mtime)
	}
	return writeError(p, err)
}

func (d *diskSink) symlink(p, target string) error {
	return writeError(p, os.Symlink(target, d.path(p)))
}

func (d *diskSink) link(p, target string) error {
	return writeError(p, os.Link(d.path(target), d.path(p)))
}

// writeError wraps a file system error, or returns nil.
func writeError(p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("package entry %q: %w: %w", p, errWrite, err)
}

// readTracker remembers the error of the reader it wraps, so a copy's
// error can be told to come from the archive or from the disk.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// discardSink checks without writing; the tar reader skips the bodies.
type discardSink struct{}

func (discardSink) dir(string, fs.FileMode) error                        { return nil }
func (discardSink) file(string, fs.FileMode, time.Time, io.Reader) error { return nil }
func (discardSink) symlink(string, string) error                         { return nil }
func (discardSink) link(string, string) error                            { return nil }

var (
	_ sink = (*diskSink)(nil)
	_ sink = discardSink{}
)

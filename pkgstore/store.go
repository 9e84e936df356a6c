// Package pkgstore is the package blob store of `cyclerd server`: uploaded
// package files on disk, addressed by their sha256.
//
// Layout: <dir>/sha256/<64 hex> holds one package file each. Uploads and
// fetches are streamed into a temporary file in the same directory
// (".tmp-*") while being hashed, and renamed into place only once complete
// and verified, so a blob path always holds a whole, verified package. The
// Raft state (raftstore.PackageMeta) says which packages exist; this store
// only keeps bytes. Sync makes the disk follow the state: it fetches blobs
// this server lacks from other servers, verifying the digest, and removes
// blobs the state no longer lists. GC decides which packages the state
// stops listing.
package pkgstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/pkgfile"
)

// DigestPrefix starts every digest: the only algorithm is sha256.
const DigestPrefix = "sha256:"

// Defaults used when the corresponding Config field is zero.
const (
	DefaultKeep           = 5
	DefaultMaxUploadBytes = 1 << 30 // 1 GiB
)

var (
	// ErrBadDigest means a digest is not "sha256:" and 64 lower-case hex digits.
	ErrBadDigest = errors.New("malformed digest")
	// ErrNotFound means the blob is not stored on this server.
	ErrNotFound = errors.New("blob not found")
	// ErrTooLarge means an upload or a fetched blob is over its size limit.
	ErrTooLarge = errors.New("package too large")
	// ErrInvalidPackage wraps what pkgfile found wrong with an uploaded
	// package (a hostile entry, a missing or bad manifest, a corrupt
	// archive); the pkgfile sentinel is wrapped too.
	ErrInvalidPackage = errors.New("invalid package")
	// ErrDigestMismatch means fetched bytes do not hash to the digest asked for.
	ErrDigestMismatch = errors.New("digest mismatch")
)

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseDigest checks a digest and returns its hex part.
func ParseDigest(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, DigestPrefix)
	if !ok || !hexRE.MatchString(h) {
		return "", fmt.Errorf("%w %q: want %q and 64 lower-case hex digits", ErrBadDigest, digest, DigestPrefix)
	}
	return h, nil
}

// ShortDigest returns the first 12 hex digits of a digest, for tables and
// logs; a malformed digest is returned as it is.
func ShortDigest(digest string) string {
	if h, err := ParseDigest(digest); err == nil {
		return h[:12]
	}
	return digest
}

// Config configures a Store.
type Config struct {
	// Dir is the store's root directory; it is created if missing.
	Dir string
	// Keep is how many packages per name GC keeps (default DefaultKeep).
	Keep int
	// MaxUploadBytes caps one upload (default DefaultMaxUploadBytes).
	MaxUploadBytes int64
	// Limits are the package checks run on every upload; the zero value
	// means pkgfile.DefaultLimits. Their archive size limit is raised to
	// the upload's size limit.
	Limits *pkgfile.Limits
	// Logger is the store's logger; nil discards logs.
	Logger *zap.Logger
}

// Meta describes a stored blob.
type Meta struct {
	// Digest is "sha256:<hex>" of the file.
	Digest string
	// Size is the file's size in bytes.
	Size int64
	// Manifest is the package's manifest, read when it was uploaded.
	Manifest pkgfile.Manifest
}

// Store is the blob store. It is safe for concurrent use.
type Store struct {
	dir     string // <Config.Dir>/sha256
	keep    int
	maxSize int64
	lim     pkgfile.Limits
	log     *zap.Logger

	// mu guards the maps below. fetches allows one fetch per digest at a
	// time, the others wait for its outcome (see Fetch). holds counts the
	// Puts whose metadata is not committed yet (see Release). seen holds
	// the digests this process knows the state has listed (see Sync).
	mu      sync.Mutex
	fetches map[string]*fetchCall
	holds   map[string]int
	seen    map[string]bool
}

// New opens (creating if needed) the store under cfg.Dir. Temporary files
// left by an earlier process that died mid-upload are removed: no upload or
// fetch can still be writing them.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pkgstore: no directory configured")
	}
	s := &Store{dir: filepath.Join(cfg.Dir, "sha256"), keep: cfg.Keep, maxSize: cfg.MaxUploadBytes,
		log: cfg.Logger, fetches: map[string]*fetchCall{},
		holds: map[string]int{}, seen: map[string]bool{}}
	if s.keep == 0 {
		s.keep = DefaultKeep
	}
	if s.maxSize == 0 {
		s.maxSize = DefaultMaxUploadBytes
	}
	if s.keep < 1 || s.maxSize < 1 {
		return nil, fmt.Errorf("pkgstore: keep %d and max upload bytes %d must be positive", s.keep, s.maxSize)
	}
	s.lim = pkgfile.DefaultLimits()
	if cfg.Limits != nil {
		s.lim = *cfg.Limits
	}
	s.lim.MaxArchiveBytes = max(s.lim.MaxArchiveBytes, s.maxSize)
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("pkgstore: %w", err)
	}
	tmps, err := filepath.Glob(filepath.Join(s.dir, ".tmp-*"))
	if err != nil {
		return nil, fmt.Errorf("pkgstore: %w", err)
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pkgstore: removing a leftover temporary file: %w", err)
		}
	}
	return s, nil
}

// Keep is how many packages per name GC keeps.
func (s *Store) Keep() int { return s.keep }

// MaxUploadBytes caps one upload.
func (s *Store) MaxUploadBytes() int64 { return s.maxSize }

// path returns the blob file of a digest.
func (s *Store) path(digest string) (string, error) {
	h, err := ParseDigest(digest)
	if err != nil {
		return "", fmt.Errorf("pkgstore: %w", err)
	}
	return filepath.Join(s.dir, h), nil
}

// Put streams r into the store, at most maxBytes of it, hashing as it
// writes, then checks the whole package with pkgfile.ReadManifest and
// renames it into place. On any error (r failing or ending early, the size
// limit, a package pkgfile rejects, ctx ending) nothing is stored. Putting
// bytes that are already stored succeeds and returns the same Meta; two
// concurrent Puts of the same bytes both succeed.
//
// A successful Put holds the blob: Sync does not remove it, even if the
// state dropped the digest a moment ago, until the caller calls Release
// once it has committed the metadata or given up. Without the hold, a sweep
// between storing a re-upload of a just-deleted package and committing its
// metadata would remove the only copy.
func (s *Store) Put(ctx context.Context, r io.Reader, maxBytes int64) (Meta, error) {
	tmp, n, sum, err := s.receive(ctx, r, maxBytes)
	if err != nil {
		return Meta{}, err
	}
	// Whatever happens below, the temporary file goes; after a successful
	// rename this finds nothing.
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Meta{}, fmt.Errorf("pkgstore: put: %w", err)
	}
	lim := s.lim
	lim.MaxArchiveBytes = max(lim.MaxArchiveBytes, maxBytes)
	m, err := pkgfile.ReadManifest(tmp, lim)
	if err != nil {
		return Meta{}, fmt.Errorf("%w: %w", ErrInvalidPackage, err)
	}
	meta := Meta{Digest: DigestPrefix + hex.EncodeToString(sum), Size: n, Manifest: m}
	s.hold(meta.Digest)
	if err := s.commit(tmp, meta.Digest); err != nil {
		s.Release(meta.Digest, false)
		return Meta{}, err
	}
	s.log.Debug("blob stored", zap.String("digest", meta.Digest), zap.Int64("size", n))
	return meta, nil
}

// receive copies at most maxBytes of r into a new temporary file, synced,
// and returns it open with its size and sha256. On error the file is gone.
func (s *Store) receive(ctx context.Context, r io.Reader, maxBytes int64) (_ *os.File, _ int64, _ []byte, err error) {
	if maxBytes <= 0 {
		return nil, 0, nil, fmt.Errorf("pkgstore: size limit %d is not positive", maxBytes)
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("pkgstore: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, r}, maxBytes+1))
	if err != nil {
		return nil, n, nil, fmt.Errorf("pkgstore: receiving the package after %d bytes: %w", n, err)
	}
	if n > maxBytes {
		return nil, n, nil, fmt.Errorf("pkgstore: %w: the package is over the limit of %d bytes", ErrTooLarge, maxBytes)
	}
	if err := tmp.Sync(); err != nil {
		return nil, n, nil, fmt.Errorf("pkgstore: %w", err)
	}
	return tmp, n, sumOf(h), nil
}

// commit renames a complete, verified temporary file to digest's path.
func (s *Store) commit(tmp *os.File, digest string) error {
	dst, err := s.path(digest)
	if err != nil {
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		return fmt.Errorf("pkgstore: %w", err)
	}
	// A rename over an existing blob replaces it with identical bytes, so
	// concurrent writers of one digest need no lock; a reader that opened
	// the old file keeps reading it.
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("pkgstore: %w", err)
	}
	now := time.Now()
	if err := os.Chtimes(dst, now, now); err != nil {
		return fmt.Errorf("pkgstore: %w", err)
	}
	return syncDir(s.dir)
}

// Has reports whether the blob of digest is stored here.
func (s *Store) Has(digest string) bool {
	p, err := s.path(digest)
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// Open opens the blob of digest for reading and returns its size. The
// caller closes the file. A missing blob wraps ErrNotFound.
func (s *Store) Open(digest string) (*os.File, int64, error) {
	p, err := s.path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("pkgstore: %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("pkgstore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("pkgstore: %w", err)
	}
	return f, fi.Size(), nil
}

// Verify re-reads the blob of digest and checks that it still hashes to
// digest, catching corruption on disk.
func (s *Store) Verify(digest string) error {
	f, _, err := s.Open(digest)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("pkgstore: verify %s: %w", digest, err)
	}
	if got := DigestPrefix + hex.EncodeToString(sumOf(h)); got != digest {
		return fmt.Errorf("pkgstore: verify %s: %w: the file hashes to %s", digest, ErrDigestMismatch, got)
	}
	return nil
}

// Delete removes the blob of digest. Removing a missing blob succeeds.
func (s *Store) Delete(digest string) error {
	p, err := s.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pkgstore: %w", err)
	}
	return nil
}

// Blob is one stored blob as List reports it.
type Blob struct {
	Digest  string
	Size    int64
	ModTime time.Time
}

// List returns the stored blobs, skipping temporary and foreign files.
func (s *Store) List() ([]Blob, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("pkgstore: %w", err)
	}
	var out []Blob
	for _, e := range ents {
		if !e.Type().IsRegular() || !hexRE.MatchString(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		out = append(out, Blob{Digest: DigestPrefix + e.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// ctxReader stops a copy once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func sumOf(h hash.Hash) []byte { return h.Sum(nil) }

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pkgstore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pkgstore: sync %s: %w", dir, err)
	}
	return nil
}

var _ io.Reader = ctxReader{}

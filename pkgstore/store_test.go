package pkgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newStore returns a Store in a fresh directory.
func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pkg builds a valid package of name and version with one extra file.
func pkg(t *testing.T, name, version string) []byte {
	t.Helper()
	return pkgtest.Package(t,
		pkgtest.Manifest(pkgfile.Manifest{Name: name, Version: version}),
		pkgtest.Entry{Name: "bin/app", Body: []byte("app " + name + " " + version), Mode: 0o755})
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// dirEntries lists every file in the store's blob directory, temporary
// files included, so tests can prove nothing was left behind.
func dirEntries(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestPutOpenVerifyDelete(t *testing.T) {
	s := newStore(t)
	data := pkg(t, "web", "1.0")
	meta, err := s.Put(context.Background(), bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	s.Release(meta.Digest, true)
	if want := digestOf(data); meta.Digest != want || meta.Size != int64(len(data)) {
		t.Fatalf("meta = %s %d, want %s %d", meta.Digest, meta.Size, want, len(data))
	}
	if meta.Manifest.Name != "web" || meta.Manifest.Version != "1.0" {
		t.Errorf("manifest = %+v", meta.Manifest)
	}
	if !s.Has(meta.Digest) {
		t.Fatal("Has = false after Put")
	}
	if got := dirEntries(t, s); len(got) != 1 || got[0] != strings.TrimPrefix(meta.Digest, DigestPrefix) {
		t.Errorf("blob dir holds %q, want only the blob", got)
	}
	f, size, err := s.Open(meta.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, data) || size != int64(len(data)) {
		t.Fatalf("Open read %d bytes (size %d, err %v), want the %d uploaded", len(got), size, err, len(data))
	}
	if err := s.Verify(meta.Digest); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// The same bytes again: same answer, one blob.
	again, err := s.Put(context.Background(), bytes.NewReader(data), int64(len(data)))
	if err != nil || again.Digest != meta.Digest {
		t.Fatalf("second Put = %s, %v", again.Digest, err)
	}
	s.Release(again.Digest, true)

	// Corruption on disk is caught by Verify.
	p, _ := s.path(meta.Digest)
	corrupt := append([]byte(nil), data...)
	corrupt[len(corrupt)/2] ^= 0xff
	if err := os.WriteFile(p, corrupt, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(meta.Digest); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Verify of a corrupted blob: err = %v, want ErrDigestMismatch", err)
	}

	if err := s.Delete(meta.Digest); err != nil {
		t.Fatal(err)
	}
	if s.Has(meta.Digest) {
		t.Error("Has = true after Delete")
	}
	if err := s.Delete(meta.Digest); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, _, err := s.Open(meta.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Delete: err = %v, want ErrNotFound", err)
	}
}

// failingReader returns its data, then err instead of io.EOF: a client
// that disconnects mid-upload.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestPutRejectsAndStoresNothing(t *testing.T) {
	good := pkg(t, "web", "1.0")
	manifest := pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0"})
	tests := []struct {
		name     string
		give     io.Reader
		max      int64
		wantErr  []error
		wantText string
	}{
		{name: "path escapes", give: bytes.NewReader(pkgtest.Package(t, manifest, pkgtest.Entry{Name: "../etc/passwd", Body: []byte("x")})),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrUnsafePath}, wantText: `"../etc/passwd"`},
		{name: "absolute path", give: bytes.NewReader(pkgtest.Package(t, manifest, pkgtest.Entry{Name: "/etc/cron.d/x", Body: []byte("x")})),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrUnsafePath}, wantText: `"/etc/cron.d/x"`},
		{name: "symlink out", give: bytes.NewReader(pkgtest.Package(t, manifest, pkgtest.Entry{Name: "evil", Type: '2', Linkname: "/etc"})),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrUnsafePath}, wantText: `"evil"`},
		{name: "fifo", give: bytes.NewReader(pkgtest.Package(t, manifest, pkgtest.Entry{Name: "pipe", Type: '6'})),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrUnsupportedEntry}, wantText: `"pipe"`},
		{name: "no manifest", give: bytes.NewReader(pkgtest.Package(t, pkgtest.Entry{Name: "app", Body: []byte("x")})),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrNoManifest}},
		{name: "bad manifest", give: bytes.NewReader(pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "Web!", Version: "1"}))),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrBadManifest}},
		{name: "not gzip", give: strings.NewReader("this is not a package"),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrCorrupt}},
		{name: "cut short", give: bytes.NewReader(good[:len(good)/2]),
			wantErr: []error{ErrInvalidPackage, pkgfile.ErrCorrupt}},
		{name: "over the size limit", give: bytes.NewReader(good), max: int64(len(good) - 1),
			wantErr: []error{ErrTooLarge}},
		{name: "client went away", give: &failingReader{r: bytes.NewReader(good[:100]), err: io.ErrUnexpectedEOF},
			wantErr: []error{io.ErrUnexpectedEOF}, wantText: "after 100 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			limit := tt.max
			if limit == 0 {
				limit = 1 << 20
			}
			_, err := s.Put(context.Background(), tt.give, limit)
			if err == nil {
				t.Fatal("Put accepted the upload")
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v; want it to match %v", err, want)
				}
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %v; want it to mention %s", err, tt.wantText)
			}
			if got := dirEntries(t, s); len(got) != 0 {
				t.Errorf("blob dir holds %q after a rejected upload, want nothing", got)
			}
		})
	}
}

func TestPutCancelled(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, bytes.NewReader(pkg(t, "web", "1")), 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := dirEntries(t, s); len(got) != 0 {
		t.Errorf("blob dir holds %q", got)
	}
}

func TestPutSameBytesConcurrently(t *testing.T) {
	s := newStore(t)
	data := pkg(t, "web", "2.0")
	const n = 8
	var wg sync.WaitGroup
	digests := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := s.Put(context.Background(), bytes.NewReader(data), 1<<20)
			digests[i], errs[i] = m.Digest, err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || digests[i] != digestOf(data) {
			t.Errorf("put %d = %s, %v", i, digests[i], errs[i])
		}
		s.Release(digests[i], true)
	}
	if got := dirEntries(t, s); len(got) != 1 {
		t.Errorf("blob dir holds %q, want exactly one blob", got)
	}
	if err := s.Verify(digestOf(data)); err != nil {
		t.Error(err)
	}
}

func TestNewRemovesLeftoverTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data := pkg(t, "web", "1")
	m, err := s.Put(context.Background(), bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(s.dir, ".tmp-123")
	if err := os.WriteFile(leftover, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temporary file survived: %v", err)
	}
	if !s2.Has(m.Digest) {
		t.Error("a stored blob was removed")
	}
}

func TestParseDigest(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		give    string
		wantErr bool
	}{
		{give: "sha256:" + hex64},
		{give: hex64, wantErr: true},
		{give: "sha512:" + hex64, wantErr: true},
		{give: "sha256:" + strings.ToUpper(hex64), wantErr: true},
		{give: "sha256:" + hex64[:63], wantErr: true},
		{give: "sha256:../../etc/passwd", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.give), func(t *testing.T) {
			h, err := ParseDigest(tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && h != hex64 {
				t.Errorf("hex = %q", h)
			}
			if err != nil && !errors.Is(err, ErrBadDigest) {
				t.Errorf("err = %v, want ErrBadDigest", err)
			}
		})
	}
	if got := ShortDigest("sha256:" + hex64); got != hex64[:12] {
		t.Errorf("ShortDigest = %q", got)
	}
}

// TestPutRejectsHostilePackages runs every hostile archive through Put under
// pkgtest.SmallLimits: each is refused with an error naming the offending
// entry, and nothing is left in the store.
func TestPutRejectsHostilePackages(t *testing.T) {
	lim := pkgtest.SmallLimits()
	s, err := New(Config{Dir: t.TempDir(), Limits: &lim, MaxUploadBytes: lim.MaxArchiveBytes})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pkgtest.HostileCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			_, err := s.Put(context.Background(), bytes.NewReader(c.Archive), s.MaxUploadBytes())
			if err == nil {
				t.Fatal("Put accepted a hostile package")
			}
			// An archive over the upload limit is cut off before pkgfile
			// sees it whole.
			if errors.Is(err, ErrTooLarge) && c.SizeLimited {
				return
			}
			if !errors.Is(err, ErrInvalidPackage) || !errors.Is(err, c.Err) {
				t.Errorf("err = %v; want ErrInvalidPackage and %v", err, c.Err)
			}
			if c.Entry != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.Entry)) {
				t.Errorf("err = %v; want it to name entry %q", err, c.Entry)
			}
			if got := dirEntries(t, s); len(got) != 0 {
				t.Errorf("blob dir holds %q after a rejected upload", got)
			}
		})
	}
}

package pkgtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cyclerhq/cycler/pkgfile"
)

// SmallLimits are the limits under which the size cases of HostileCases
// are over a limit: a 1 MiB archive, 8 MiB unpacked, 100 entries and a
// 16 KiB manifest. Configure the code under test with them (or smaller
// ones that still admit a normal package) to exercise those cases.
func SmallLimits() pkgfile.Limits {
	return pkgfile.Limits{
		MaxArchiveBytes:  1 << 20,
		MaxUnpackedBytes: 8 << 20,
		MaxFiles:         100,
		MaxManifestBytes: 16 << 10,
	}
}

// HostileCase is an archive pkgfile.Extract and pkgfile.ReadManifest must
// refuse.
type HostileCase struct {
	// Name says what is wrong, like "symlink-escape".
	Name string
	// Archive is the .tar.gz (or, for "not-gzip", a plain tar).
	Archive []byte
	// Err is the sentinel the error wraps.
	Err error
	// Entry is the archive entry the error names, quoted as by %q, or ""
	// when the problem is the file as a whole ("not-gzip").
	Entry string
	// SizeLimited is true when the archive is over SmallLimits but within
	// pkgfile.DefaultLimits; every other case is refused under any limits.
	SizeLimited bool
}

var (
	hostileOnce  sync.Once
	hostileCases []HostileCase
	hostileErr   error
)

// HostileCases returns every hostile archive, built once per process (the
// gzip bombs take a moment to compress). Each call returns fresh copies.
func HostileCases(tb testing.TB) []HostileCase {
	tb.Helper()
	hostileOnce.Do(func() { hostileCases, hostileErr = buildHostile() })
	if hostileErr != nil {
		tb.Fatalf("pkgtest: building hostile packages: %v", hostileErr)
	}
	out := make([]HostileCase, len(hostileCases))
	for i, c := range hostileCases {
		c.Archive = bytes.Clone(c.Archive)
		out[i] = c
	}
	return out
}

// Hostile returns every hostile archive by name (see HostileCases for
// what each must fail with).
func Hostile(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := make(map[string][]byte)
	for _, c := range HostileCases(tb) {
		out[c.Name] = c.Archive
	}
	return out
}

// hostileManifest is the valid manifest the hostile archives carry, so
// that each fails for its one planted reason.
var hostileManifest = pkgfile.Manifest{Name: "web", Version: "1.0.0"}

// buildHostile builds every case.
func buildHostile() ([]HostileCase, error) {
	man := Manifest(hostileManifest)
	app := Entry{Name: "app.txt", Body: []byte("hello\n")}
	rng := rand.New(rand.NewPCG(4, 2))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// 32 MiB of zeros compress to about 40 KiB: four times SmallLimits'
	// unpacked limit in a few percent of its archive limit.
	zeros := make([]byte, 32<<20)

	type spec struct {
		name    string
		entries []Entry
		err     error
		entry   string
		sized   bool
	}
	specs := []spec{
		{"dotdot", []Entry{man, {Name: "../evil", Body: []byte("x")}}, pkgfile.ErrUnsafePath, "../evil", false},
		{"dotdot-inner", []Entry{man, {Name: "app/../../evil", Body: []byte("x")}}, pkgfile.ErrUnsafePath, "app/../../evil", false},
		{"absolute", []Entry{man, {Name: "/tmp/cycler-evil", Body: []byte("x")}}, pkgfile.ErrUnsafePath, "/tmp/cycler-evil", false},
		{"symlink-escape", []Entry{man, {Name: "sub/escape", Type: tar.TypeSymlink, Linkname: "../../outside"}}, pkgfile.ErrUnsafePath, "sub/escape", false},
		{"symlink-absolute", []Entry{man, {Name: "etc", Type: tar.TypeSymlink, Linkname: "/etc"}}, pkgfile.ErrUnsafePath, "etc", false},
		{"symlink-dotdot-after-name", []Entry{man, {Name: "l", Type: tar.TypeSymlink, Linkname: "."},
			{Name: "x/y/t", Type: tar.TypeSymlink, Linkname: "../../l/.."}}, pkgfile.ErrUnsafePath, "x/y/t", false},
		{"symlink-write-through", []Entry{man, {Name: "data", Type: tar.TypeDir},
			{Name: "lnk", Type: tar.TypeSymlink, Linkname: "data"}, {Name: "lnk/evil", Body: []byte("x")}}, pkgfile.ErrUnsafePath, "lnk/evil", false},
		{"hardlink-escape", []Entry{man, {Name: "hl", Type: tar.TypeLink, Linkname: "../../etc/passwd"}}, pkgfile.ErrUnsafePath, "hl", false},
		{"hardlink-absolute", []Entry{man, {Name: "hl", Type: tar.TypeLink, Linkname: "/etc/passwd"}}, pkgfile.ErrUnsafePath, "hl", false},
		{"hardlink-through-symlink", []Entry{man, app, {Name: "lnk", Type: tar.TypeSymlink, Linkname: "."},
			{Name: "hl", Type: tar.TypeLink, Linkname: "lnk/app.txt"}}, pkgfile.ErrUnsafePath, "hl", false},
		{"duplicate-entry", []Entry{man, app, {Name: "./app.txt", Body: []byte("again\n")}}, pkgfile.ErrUnsafePath, "./app.txt", false},
		{"char-device", []Entry{man, {Name: "null", Type: tar.TypeChar, Mode: 0o666}}, pkgfile.ErrUnsupportedEntry, "null", false},
		{"block-device", []Entry{man, {Name: "sda", Type: tar.TypeBlock, Mode: 0o660}}, pkgfile.ErrUnsupportedEntry, "sda", false},
		{"fifo", []Entry{man, {Name: "pipe", Type: tar.TypeFifo}}, pkgfile.ErrUnsupportedEntry, "pipe", false},
		{"oversize-archive", []Entry{man, {Name: "blob.bin", Body: noise(2 << 20)}}, pkgfile.ErrTooLarge, "blob.bin", true},
		{"gzip-bomb", []Entry{man, {Name: "zeros.bin", Body: zeros}}, pkgfile.ErrTooLarge, "zeros.bin", true},
		{"gzip-bomb-split", append([]Entry{man}, splitZeros(zeros[:18<<20], 3<<20)...), pkgfile.ErrTooLarge, "zeros-02.bin", true},
		{"too-many-files", append(manyFiles(SmallLimits().MaxFiles+50), man), pkgfile.ErrTooLarge, fmt.Sprintf("f/%03d", SmallLimits().MaxFiles), true},
		{"missing-manifest", []Entry{app}, pkgfile.ErrNoManifest, pkgfile.ManifestHCL, false},
		{"manifest-not-at-root", []Entry{{Name: "app/cycler.json", Body: man.Body}, app}, pkgfile.ErrNoManifest, pkgfile.ManifestHCL, false},
		{"invalid-manifest", []Entry{Manifest(pkgfile.Manifest{Name: "Bad Name", Version: "1.0.0"}), app}, pkgfile.ErrBadManifest, pkgfile.ManifestJSON, false},
		{"unparseable-manifest", []Entry{{Name: pkgfile.ManifestHCL, Body: []byte("name = \"web\"\nversion =\n")}}, pkgfile.ErrBadManifest, pkgfile.ManifestHCL, false},
		{"two-manifests", []Entry{man, {Name: pkgfile.ManifestHCL, Body: []byte("name = \"web\"\nversion = \"1.0.0\"\n")}}, pkgfile.ErrBadManifest, pkgfile.ManifestHCL, false},
		{"manifest-symlink", []Entry{{Name: pkgfile.ManifestJSON, Type: tar.TypeSymlink, Linkname: "../../etc/cycler.json"}}, pkgfile.ErrBadManifest, pkgfile.ManifestJSON, false},
		{"manifest-too-large", []Entry{{Name: pkgfile.ManifestJSON, Body: append(bytes.Clone(man.Body), bytes.Repeat([]byte(" "), 100<<10)...)}}, pkgfile.ErrTooLarge, pkgfile.ManifestJSON, false},
	}

	var cases []HostileCase
	for _, s := range specs {
		var buf bytes.Buffer
		// BestSpeed: the bombs take seconds to compress under -race
		// otherwise, and zeros still shrink 800-fold.
		if err := build(&buf, s.entries, gzip.BestSpeed); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		cases = append(cases, HostileCase{Name: s.name, Archive: buf.Bytes(), Err: s.err, Entry: s.entry, SizeLimited: s.sized})
	}

	// A package cut off in the middle of its one big file.
	var buf bytes.Buffer
	if err := Build(&buf, []Entry{man, {Name: "blob.bin", Body: noise(256 << 10)}}); err != nil {
		return nil, fmt.Errorf("truncated-gzip: %w", err)
	}
	cases = append(cases, HostileCase{Name: "truncated-gzip", Archive: bytes.Clone(buf.Bytes()[:buf.Len()/2]), Err: pkgfile.ErrCorrupt, Entry: "blob.bin"})

	// A valid package followed by junk.
	buf.Reset()
	if err := Build(&buf, []Entry{man, app}); err != nil {
		return nil, fmt.Errorf("trailing-garbage: %w", err)
	}
	buf.WriteString(strings.Repeat("junk", 64))
	cases = append(cases, HostileCase{Name: "trailing-garbage", Archive: bytes.Clone(buf.Bytes()), Err: pkgfile.ErrCorrupt})

	// A tar that was never compressed.
	buf.Reset()
	if err := writeTar(&buf, []Entry{man, app}); err != nil {
		return nil, fmt.Errorf("not-gzip: %w", err)
	}
	cases = append(cases, HostileCase{Name: "not-gzip", Archive: bytes.Clone(buf.Bytes()), Err: pkgfile.ErrCorrupt})
	return cases, nil
}

// splitZeros cuts zeros into files of at most n bytes named
// zeros-00.bin, zeros-01.bin, ...; with SmallLimits the third is over.
func splitZeros(zeros []byte, n int) []Entry {
	var out []Entry
	for i := 0; i*n < len(zeros); i++ {
		out = append(out, Entry{Name: fmt.Sprintf("zeros-%02d.bin", i), Body: zeros[i*n : min((i+1)*n, len(zeros))]})
	}
	return out
}

// manyFiles returns n small files f/000, f/001, ...
func manyFiles(n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Name: fmt.Sprintf("f/%03d", i), Body: []byte("x")}
	}
	return out
}

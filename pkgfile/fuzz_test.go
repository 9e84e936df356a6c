package pkgfile_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// FuzzParseManifest feeds arbitrary bytes to both manifest parsers.
// Nothing may panic; a refused manifest gets an ErrBadManifest whose every
// line says something; an accepted one validates and survives a round
// trip through its JSON encoding unchanged. The seed corpus is in
// testdata/fuzz/FuzzParseManifest.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(fullHCL), false)
	f.Add([]byte(fullJSON), true)
	f.Fuzz(func(t *testing.T, src []byte, asJSON bool) {
		name := pkgfile.ManifestHCL
		if asJSON {
			name = pkgfile.ManifestJSON
		}
		m, err := pkgfile.ParseManifest(name, src)
		if err != nil {
			if !errors.Is(err, pkgfile.ErrBadManifest) {
				t.Fatalf("error does not wrap ErrBadManifest: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.TrimSpace(line) == "" {
					t.Fatalf("error has a blank line: %q", err)
				}
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseManifest accepted a manifest Validate refuses: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := pkgfile.ParseManifest(pkgfile.ManifestJSON, b)
		if err != nil {
			t.Fatalf("the JSON encoding %s of an accepted manifest is refused: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", b, b2)
		}
	})
}

// fuzzLimits keep each FuzzExtract run small.
var fuzzLimits = pkgfile.Limits{MaxArchiveBytes: 1 << 20, MaxUnpackedBytes: 4 << 20, MaxFiles: 200, MaxManifestBytes: 16 << 10}

// FuzzExtract extracts arbitrary bytes into a fresh directory. Nothing may
// panic; a refused archive wraps one of the sentinel errors and leaves
// the directory empty; an accepted one creates exactly the release, whose
// symlinks all resolve inside it. ReadManifest must agree with Extract.
//
// With compress set, the input is a tar stream that the target gzips
// first, so that mutations reach the tar headers instead of mostly
// breaking the compression. The seed corpus is in testdata/fuzz/FuzzExtract.
func FuzzExtract(f *testing.F) {
	f.Add(pkgtest.Package(f,
		pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0.0"}),
		pkgtest.Entry{Name: "bin/app", Body: []byte("app"), Mode: 0o755},
		pkgtest.Entry{Name: "app", Type: tar.TypeSymlink, Linkname: "bin/app"},
	), false)
	sentinels := []error{pkgfile.ErrUnsafePath, pkgfile.ErrTooLarge, pkgfile.ErrBadManifest,
		pkgfile.ErrNoManifest, pkgfile.ErrUnsupportedEntry, pkgfile.ErrCorrupt}
	f.Fuzz(func(t *testing.T, archive []byte, compress bool) {
		if compress {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			if _, err := gz.Write(archive); err != nil {
				t.Fatal(err)
			}
			if err := gz.Close(); err != nil {
				t.Fatal(err)
			}
			archive = buf.Bytes()
		}
		base := t.TempDir()
		parent := filepath.Join(base, "releases")
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(parent, "rel")
		m, err := pkgfile.Extract(context.Background(), bytes.NewReader(archive), dest, fuzzLimits)
		rm, rerr := pkgfile.ReadManifest(bytes.NewReader(archive), fuzzLimits)
		if (err == nil) != (rerr == nil) || !reflect.DeepEqual(m, rm) {
			t.Fatalf("Extract and ReadManifest disagree:\nExtract:      %v\nReadManifest: %v", err, rerr)
		}
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if names := dirNames(t, parent); len(names) != 0 {
				t.Fatalf("a refused archive left %q behind", names)
			}
			return
		}
		if names := dirNames(t, parent); !reflect.DeepEqual(names, []string{"rel"}) {
			t.Fatalf("releases directory holds %q, want only the release", names)
		}
		if names := dirNames(t, base); !reflect.DeepEqual(names, []string{"releases"}) {
			t.Fatalf("base directory holds %q", names)
		}
		real, err := filepath.EvalSymlinks(dest)
		if err != nil {
			t.Fatal(err)
		}
		err = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling or a loop: nothing to escape to
			}
			if resolved != real && !strings.HasPrefix(resolved, real+string(filepath.Separator)) {
				t.Errorf("symlink %s resolves to %s, outside the release", p, resolved)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

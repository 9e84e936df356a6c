package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// TestHostilePackagesChangeNothing feeds every hostile archive through the
// agent's install path, after a good install, and requires a refusal that
// names the offending entry with the releases directory byte-for-byte as
// it was, `current` untouched and the app still serving.
func TestHostilePackagesChangeNothing(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	good := e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{}))
	mustInstall(t, a, good, OutcomeInstalled)
	before := snapshot(t, e.dir)
	pid := a.Inventory(context.Background()).App.PID

	cases := pkgtest.HostileCases(t)
	if len(cases) == 0 {
		t.Fatal("pkgtest has no hostile cases")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			d := e.src.add(c.Archive)
			res, err := a.Install(context.Background(), d)
			if err != nil {
				t.Fatalf("install: %v", err)
			}
			if res.Outcome != OutcomeFailed || res.Step != stepUnpack || res.RolledBack {
				t.Fatalf("result %+v; want failed at unpack, no rollback", res.Install)
			}
			if c.Entry != "" && !strings.Contains(res.Error, c.Entry) {
				t.Errorf("error %q does not name the offending entry %s", res.Error, c.Entry)
			}
			if !strings.Contains(res.Error, c.Err.Error()) {
				t.Errorf("error %q does not say %q", res.Error, c.Err)
			}
			if after := snapshot(t, e.dir); !maps.Equal(after, before) {
				t.Errorf("the releases directory or current changed:\nbefore %v\nafter  %v", before, after)
			}
			if left, _ := os.ReadDir(filepath.Join(e.dir, stagingDir)); len(left) != 0 {
				t.Errorf("staging holds leftovers: %v", left)
			}
			e.wantServing("1.0.0")
			if got := a.Inventory(context.Background()).App.PID; got != pid {
				t.Errorf("the app was restarted: pid %d, was %d", got, pid)
			}
		})
	}
}

// snapshot describes every entry under releases/ and the current link:
// path, type, mode bits and content hash or link target.
func snapshot(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	link, err := os.Readlink(filepath.Join(dataDir, currentLink))
	if err != nil {
		t.Fatal(err)
	}
	out[currentLink] = "-> " + link
	root := filepath.Join(dataDir, releasesDir)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSnapshotSeesChanges(t *testing.T) {
	dir := t.TempDir()
	rel := filepath.Join(dir, releasesDir, "1-000000000000")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(releasesDir, "1-000000000000"), filepath.Join(dir, currentLink)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if err := os.WriteFile(filepath.Join(rel, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if maps.Equal(before, snapshot(t, dir)) {
		t.Fatal("snapshot missed a new file")
	}
	if !slices.Contains(slices.Collect(maps.Keys(before)), currentLink) {
		t.Fatal("snapshot misses current")
	}
	if errors.Is(nil, fs.ErrNotExist) {
		t.Fatal("unreachable")
	}
}

package pkgfile_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// listing describes every file under root: path, type, mode, size, link
// target and a digest of the content. Modification times are left out:
// directories' change when entries are added and removed.
func listing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v %d", rel, info.Mode(), info.Size())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", root, err)
	}
	sort.Strings(out)
	return out
}

// releasesDir makes base/releases holding an existing release, and
// returns base and the path of a new release under it.
func releasesDir(t *testing.T) (base, dest string) {
	t.Helper()
	base = t.TempDir()
	old := filepath.Join(base, "releases", "1.0.0-aaaa")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "app.txt"), []byte("old release\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1.0.0-aaaa", filepath.Join(base, "releases", "current")); err != nil {
		t.Fatal(err)
	}
	return base, filepath.Join(base, "releases", "2.0.0-bbbb")
}

func TestExtractRefusesHostilePackages(t *testing.T) {
	for _, c := range pkgtest.HostileCases(t) {
		limits := []struct {
			name string
			lim  pkgfile.Limits
		}{{"small limits", pkgtest.SmallLimits()}}
		if !c.SizeLimited {
			limits = append(limits, struct {
				name string
				lim  pkgfile.Limits
			}{"default limits", pkgfile.DefaultLimits()})
		}
		for _, l := range limits {
			t.Run(c.Name+"/"+l.name, func(t *testing.T) {
				base, dest := releasesDir(t)
				before := listing(t, base)
				_, err := pkgfile.Extract(context.Background(), bytes.NewReader(c.Archive), dest, l.lim)
				checkHostileErr(t, "Extract", err, c)
				if after := listing(t, base); !reflect.DeepEqual(before, after) {
					t.Errorf("Extract changed the releases directory:\nbefore %q\nafter  %q", before, after)
				}
				_, err = pkgfile.ReadManifest(bytes.NewReader(c.Archive), l.lim)
				checkHostileErr(t, "ReadManifest", err, c)
			})
		}
	}
	if _, err := os.Lstat("/tmp/cycler-evil"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/tmp/cycler-evil exists (err %v): an absolute entry was written", err)
	}
}

func checkHostileErr(t *testing.T, fn string, err error, c pkgtest.HostileCase) {
	t.Helper()
	if !errors.Is(err, c.Err) {
		t.Fatalf("%s: error %v, want one wrapping %v", fn, err, c.Err)
	}
	if c.Entry != "" && !strings.Contains(err.Error(), strconv.Quote(c.Entry)) {
		t.Errorf("%s: error %q does not name the entry %q", fn, err, c.Entry)
	}
}

func TestExtract(t *testing.T) {
	const hcl = "name = \"web\"\nversion = \"2.0.0\"\nstart {\n  command = [\"./bin/web\", \"${CYCLER_ADDR}\"]\n}\n"
	archive := pkgtest.Package(t,
		pkgtest.Entry{Name: "pax_global_header", Type: tar.TypeXGlobalHeader, Body: []byte("git commit")},
		pkgtest.Entry{Name: "./", Type: tar.TypeDir, Mode: 0o750},
		pkgtest.Entry{Name: "./cycler.hcl", Body: []byte(hcl)},
		pkgtest.Entry{Name: "bin/web", Body: []byte("#!/bin/sh\n"), Mode: 0o755},
		pkgtest.Entry{Name: "bin/suid", Body: []byte("s"), Mode: 0o4755 | 0o2000},
		pkgtest.Entry{Name: "static/", Type: tar.TypeDir, Mode: 0o1550},
		pkgtest.Entry{Name: "static/index.html", Body: []byte("<p>hi</p>")},
		pkgtest.Entry{Name: "static/ro.txt", Body: []byte("ro"), Mode: 0o444},
		pkgtest.Entry{Name: "deep/er/file", Body: []byte("deep")},
		pkgtest.Entry{Name: "empty", Body: nil},
		pkgtest.Entry{Name: "index", Type: tar.TypeSymlink, Linkname: "static/index.html"},
		pkgtest.Entry{Name: "deep/er/up", Type: tar.TypeSymlink, Linkname: "../../bin"},
		pkgtest.Entry{Name: "dangling", Type: tar.TypeSymlink, Linkname: "not/yet"},
		pkgtest.Entry{Name: "web-hard", Type: tar.TypeLink, Linkname: "./bin/web"},
		pkgtest.Entry{Name: "static/", Type: tar.TypeDir, Mode: 0o555},
	)
	_, dest := releasesDir(t)
	m, err := pkgfile.Extract(context.Background(), bytes.NewReader(archive), dest, pkgfile.Limits{})
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := pkgfile.Manifest{Name: "web", Version: "2.0.0", Start: &pkgfile.Start{Command: []string{"./bin/web", "${CYCLER_ADDR}"}}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("manifest = %#v, want %#v", m, want)
	}

	sum := func(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }
	wantList := []string{
		". drwxr-x---",
		"bin drwxr-xr-x",
		"bin/suid -rwxr-xr-x 1 " + sum("s"),
		"bin/web -rwxr-xr-x 10 " + sum("#!/bin/sh\n"),
		"cycler.hcl -rw-r--r-- " + strconv.Itoa(len(hcl)) + " " + sum(hcl),
		"dangling Lrwxrwxrwx",
		"deep drwxr-xr-x",
		"deep/er drwxr-xr-x",
		"deep/er/file -rw-r--r-- 4 " + sum("deep"),
		"deep/er/up Lrwxrwxrwx",
		"empty -rw-r--r-- 0 " + sum(""),
		"index Lrwxrwxrwx",
		"static drwxr-xr-x",
		"static/index.html -rw-r--r-- 9 " + sum("<p>hi</p>"),
		"static/ro.txt -r--r--r-- 2 " + sum("ro"),
		"web-hard -rwxr-xr-x 10 " + sum("#!/bin/sh\n"),
	}
	got := listing(t, dest)
	for i := range got {
		// Directory and symlink sizes depend on the file system.
		if f := strings.Fields(got[i]); f[1][0] == 'd' || f[1][0] == 'L' {
			got[i] = f[0] + " " + f[1]
		}
	}
	if !reflect.DeepEqual(got, wantList) {
		t.Errorf("release contents:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantList, "\n"))
	}

	links := map[string]string{"index": "static/index.html", "deep/er/up": "../../bin", "dangling": "not/yet"}
	for name, target := range links {
		if got, err := os.Readlink(filepath.Join(dest, name)); err != nil || got != target {
			t.Errorf("symlink %s -> %q (%v), want %q", name, got, err, target)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dest, "deep/er/up/web")); err != nil || string(b) != "#!/bin/sh\n" {
		t.Errorf("reading through deep/er/up: %q, %v", b, err)
	}
	a, errA := os.Stat(filepath.Join(dest, "bin/web"))
	b, errB := os.Stat(filepath.Join(dest, "web-hard"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("web-hard is not a hardlink of bin/web (%v, %v)", errA, errB)
	}
	if mt := a.ModTime().UTC(); !mt.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("bin/web modification time = %v, want the archive's", mt)
	}
	entries, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"1.0.0-aaaa", "2.0.0-bbbb", "current"}; !reflect.DeepEqual(names, want) {
		t.Errorf("releases directory holds %q, want %q (no temporary directory left)", names, want)
	}
	// The release can be deleted again, even with a read-only directory
	// in the archive.
	if err := os.RemoveAll(dest); err != nil {
		t.Errorf("removing the release: %v", err)
	}
}

func TestExtractDestExists(t *testing.T) {
	base, dest := releasesDir(t)
	dest = filepath.Join(filepath.Dir(dest), "1.0.0-aaaa")
	before := listing(t, base)
	_, err := pkgfile.Extract(context.Background(), bytes.NewReader(validPackage(t)), dest, pkgfile.Limits{})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Extract into an existing directory: %v, want fs.ErrExist", err)
	}
	if after := listing(t, base); !reflect.DeepEqual(before, after) {
		t.Errorf("Extract changed the releases directory:\nbefore %q\nafter  %q", before, after)
	}
	if _, err := pkgfile.Extract(context.Background(), bytes.NewReader(validPackage(t)), filepath.Join(base, "no", "parent"), pkgfile.Limits{}); err == nil {
		t.Error("Extract into a missing parent succeeded")
	}
}

func validPackage(t *testing.T) []byte {
	t.Helper()
	return pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0.0"}), pkgtest.Entry{Name: "app.txt", Body: []byte("hi\n")})
}

// cancelAfter cancels a context once n bytes have been read through it.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestExtractContextCanceled(t *testing.T) {
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7919 >> 3)
	}
	archive := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0.0"}),
		pkgtest.Entry{Name: "a.bin", Body: big}, pkgtest.Entry{Name: "b.bin", Body: big})
	tests := []struct {
		name   string
		cancel int // bytes read before canceling; 0 cancels before Extract
	}{
		{"before", 0},
		{"midway", len(archive) / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, dest := releasesDir(t)
			before := listing(t, base)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var r io.Reader = &cancelAfter{r: bytes.NewReader(archive), n: tt.cancel, cancel: cancel}
			if tt.cancel == 0 {
				cancel()
			}
			_, err := pkgfile.Extract(ctx, r, dest, pkgfile.Limits{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Extract: %v, want context.Canceled", err)
			}
			if after := listing(t, base); !reflect.DeepEqual(before, after) {
				t.Errorf("Extract changed the releases directory:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

func TestExtractLimitsAreInclusive(t *testing.T) {
	man := pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0.0"})
	files := []pkgtest.Entry{man, {Name: "a", Body: bytes.Repeat([]byte("a"), 1000)}, {Name: "d/b", Body: []byte("b")}}
	archive := pkgtest.Package(t, files...)
	unpacked := int64(len(man.Body) + 1001)
	exact := pkgfile.Limits{
		MaxArchiveBytes:  int64(len(archive)),
		MaxUnpackedBytes: unpacked,
		MaxFiles:         len(files),
		MaxManifestBytes: int64(len(man.Body)),
	}
	tests := []struct {
		name string
		lim  pkgfile.Limits
		want error
	}{
		{"exactly at every limit", exact, nil},
		{"archive one byte over", withLimit(exact, func(l *pkgfile.Limits) { l.MaxArchiveBytes-- }), pkgfile.ErrTooLarge},
		{"unpacked one byte over", withLimit(exact, func(l *pkgfile.Limits) { l.MaxUnpackedBytes-- }), pkgfile.ErrTooLarge},
		{"one entry too many", withLimit(exact, func(l *pkgfile.Limits) { l.MaxFiles-- }), pkgfile.ErrTooLarge},
		{"manifest one byte over", withLimit(exact, func(l *pkgfile.Limits) { l.MaxManifestBytes-- }), pkgfile.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dest := releasesDir(t)
			_, err := pkgfile.Extract(context.Background(), bytes.NewReader(archive), dest, tt.lim)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Extract: %v, want %v", err, tt.want)
			}
			_, err = pkgfile.ReadManifest(bytes.NewReader(archive), tt.lim)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("ReadManifest: %v, want %v", err, tt.want)
			}
		})
	}
}

func withLimit(l pkgfile.Limits, f func(*pkgfile.Limits)) pkgfile.Limits {
	f(&l)
	return l
}

func TestDemoPackage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "demoapp")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive := pkgtest.DemoPackage(t, "3.1.0", bin)
	m, err := pkgfile.ReadManifest(bytes.NewReader(archive), pkgfile.Limits{})
	if err != nil {
		t.Fatalf("ReadManifest: %v", err)
	}
	if m.Name != "web" || m.Version != "3.1.0" || m.Health == nil || m.Health.HTTPPath != "/health" || m.Health.Timeout != 20*time.Second {
		t.Errorf("manifest = %+v", m)
	}
	env := map[string]string{pkgfile.EnvAddr: "127.0.0.1:8081", pkgfile.EnvVersion: "3.1.0", pkgfile.EnvInstance: "web-1", pkgfile.EnvPool: "blue"}
	wantArgv := []string{"./cycler-demoapp", "-listen", "127.0.0.1:8081", "-version", "3.1.0", "-instance", "web-1", "-pool", "blue"}
	if got := pkgfile.ExpandArgs(m.Start.Command, env); !reflect.DeepEqual(got, wantArgv) {
		t.Errorf("expanded command = %q, want %q", got, wantArgv)
	}
	_, dest := releasesDir(t)
	if _, err := pkgfile.Extract(context.Background(), bytes.NewReader(archive), dest, pkgfile.Limits{}); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	info, err := os.Stat(filepath.Join(dest, pkgtest.DemoBinary))
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Fatalf("demo binary: %v, %v; want mode 0755", info, err)
	}
}

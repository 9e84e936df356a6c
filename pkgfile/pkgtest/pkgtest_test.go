package pkgtest_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

func TestBuildWritesEntriesAsGiven(t *testing.T) {
	entries := []pkgtest.Entry{
		{Name: "../evil", Body: []byte("x")},
		{Name: "dir/", Type: tar.TypeDir},
		{Name: "suid", Body: []byte("s"), Mode: 0o4755},
		{Name: "link", Type: tar.TypeSymlink, Linkname: "/etc"},
		{Name: "hard", Type: tar.TypeLink, Linkname: "suid"},
		{Name: "null", Type: tar.TypeChar, Mode: 0o666},
	}
	type got struct {
		name, linkname, body string
		typ                  byte
		mode                 int64
	}
	want := []got{
		{"../evil", "", "x", tar.TypeReg, 0o644},
		{"dir/", "", "", tar.TypeDir, 0o755},
		{"suid", "", "s", tar.TypeReg, 0o4755},
		{"link", "/etc", "", tar.TypeSymlink, 0o644},
		{"hard", "suid", "", tar.TypeLink, 0o644},
		{"null", "", "", tar.TypeChar, 0o666},
	}
	gz, err := gzip.NewReader(bytes.NewReader(pkgtest.Package(t, entries...)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for i, w := range want {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		g := got{hdr.Name, hdr.Linkname, string(body), hdr.Typeflag, hdr.Mode}
		if g != w {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the last entry: %v, want io.EOF", err)
	}
}

func TestHostileCasesAreDistinct(t *testing.T) {
	cases := pkgtest.HostileCases(t)
	byName := pkgtest.Hostile(t)
	if len(byName) != len(cases) {
		t.Fatalf("Hostile has %d archives for %d cases: names are not unique", len(byName), len(cases))
	}
	for _, c := range cases {
		if len(c.Archive) == 0 || c.Err == nil || !bytes.Equal(byName[c.Name], c.Archive) {
			t.Errorf("case %s: %d bytes, Err %v; Hostile agrees: %v", c.Name, len(c.Archive), c.Err, bytes.Equal(byName[c.Name], c.Archive))
		}
	}
	// Callers get copies: changing one does not change the next call's.
	cases[0].Archive[0] ^= 0xff
	if again := pkgtest.HostileCases(t); again[0].Archive[0] == cases[0].Archive[0] {
		t.Error("HostileCases returns shared archives")
	}
}

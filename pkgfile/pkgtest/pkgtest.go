// Package pkgtest builds cycler packages for tests: well-formed ones, the
// demo app's package, and hostile archives that pkgfile must refuse.
package pkgtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/pkgfile"
)

// Entry is one tar entry. Build writes it as given, without any of the
// checks pkgfile applies, so that hostile archives can be built too.
type Entry struct {
	// Name is the path inside the archive, written as it is.
	Name string
	// Body is a regular file's content.
	Body []byte
	// Mode is the entry's mode bits; 0 means 0644 for files and 0755 for
	// directories.
	Mode int64
	// Type is the tar type flag (tar.TypeReg, tar.TypeDir,
	// tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeFifo, ...);
	// 0 means tar.TypeReg. tar.TypeXGlobalHeader writes a PAX global
	// header with Body as its comment, as `git archive` does.
	Type byte
	// Linkname is a symlink's target or a hardlink's earlier entry.
	Linkname string
}

// modTime is the modification time of every entry, fixed so that builds
// are reproducible.
var modTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Build writes entries as a .tar.gz to w.
func Build(w io.Writer, entries []Entry) error {
	return build(w, entries, gzip.DefaultCompression)
}

// build is Build with a gzip compression level.
func build(w io.Writer, entries []Entry, level int) error {
	gz, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	if err := writeTar(gz, entries); err != nil {
		return err
	}
	return gz.Close()
}

// writeTar writes entries as an uncompressed tar stream.
func writeTar(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{
			Name:     e.Name,
			Typeflag: typ,
			Mode:     mode,
			Linkname: e.Linkname,
			ModTime:  modTime,
		}
		if typ == tar.TypeXGlobalHeader {
			// As `git archive` writes: PAX records only, here a comment
			// holding Body.
			hdr = &tar.Header{Name: e.Name, Typeflag: typ, PAXRecords: map[string]string{"comment": string(e.Body)}}
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("pkgtest: entry %q: %w", e.Name, err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				return fmt.Errorf("pkgtest: entry %q: %w", e.Name, err)
			}
		}
	}
	return tw.Close()
}

// Manifest renders m as a cycler.json entry at the archive root. It
// renders m as it is, valid or not.
func Manifest(m pkgfile.Manifest) Entry {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		// Manifest holds only strings, bools, lists and maps.
		panic(fmt.Sprintf("pkgtest: encoding manifest: %v", err))
	}
	return Entry{Name: pkgfile.ManifestJSON, Body: append(b, '\n'), Mode: 0o644}
}

// Package builds a .tar.gz of entries, failing tb on error.
func Package(tb testing.TB, entries ...Entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := Build(&buf, entries); err != nil {
		tb.Fatalf("pkgtest: building package: %v", err)
	}
	return buf.Bytes()
}

// DemoBinary is the demo app's file name inside DemoPackage.
const DemoBinary = "cycler-demoapp"

// DemoManifest is DemoPackage's manifest: the package "web", which starts
// the demo app on the agent's address and reports the agent's version,
// instance and pool, healthy when GET /health answers.
func DemoManifest(version string) pkgfile.Manifest {
	return pkgfile.Manifest{
		Name:    "web",
		Version: version,
		Start: &pkgfile.Start{Command: []string{
			"./" + DemoBinary,
			"-listen", "${" + pkgfile.EnvAddr + "}",
			"-version", "${" + pkgfile.EnvVersion + "}",
			"-instance", "${" + pkgfile.EnvInstance + "}",
			"-pool", "${" + pkgfile.EnvPool + "}",
		}},
		Health: &pkgfile.Health{HTTPPath: "/health", Timeout: 20 * time.Second},
	}
}

// DemoPackage builds the demo app's package: DemoManifest(version) and the
// binary at demoappBinary (build it from ./cmd/cycler-demoapp) as
// cycler-demoapp, mode 0755.
func DemoPackage(tb testing.TB, version, demoappBinary string) []byte {
	tb.Helper()
	bin, err := os.ReadFile(demoappBinary)
	if err != nil {
		tb.Fatalf("pkgtest: reading the demo app binary: %v", err)
	}
	m := DemoManifest(version)
	if err := m.Validate(); err != nil {
		tb.Fatalf("pkgtest: demo manifest for version %q: %v", version, err)
	}
	return Package(tb, Manifest(m), Entry{Name: DemoBinary, Body: bin, Mode: 0o755})
}

// WriteDemoPackage writes the demo app's package, DemoManifest(version) and
// demoappBinary (the bytes of a cycler-demoapp build) as cycler-demoapp,
// mode 0755, to w. It is DemoPackage for programs that have no testing.TB,
// such as the demo lab.
func WriteDemoPackage(w io.Writer, version string, demoappBinary []byte) error {
	m := DemoManifest(version)
	if err := m.Validate(); err != nil {
		return fmt.Errorf("pkgtest: demo manifest for version %q: %w", version, err)
	}
	return Build(w, []Entry{Manifest(m), {Name: DemoBinary, Body: demoappBinary, Mode: 0o755}})
}

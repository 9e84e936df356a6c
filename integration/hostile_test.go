//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// hostileUploadLimit is the server's packages.max_upload_bytes in
// TestHostilePackages: pkgtest's oversize archive is over it.
const hostileUploadLimit = 1 << 20

// TestHostilePackages pushes every hostile archive to a real server, both
// with `cyclerctl package push` (which checks the file first) and as raw
// bytes straight to POST /v1/packages (the server's own check), and
// requires each refused with an error naming the offending entry, with the
// package list and the server's blob directory unchanged. The agent's
// side of the same archives is agent.TestHostilePackagesChangeNothing:
// a server never serves a package it refused, so real agents never see
// one.
func TestHostilePackages(t *testing.T) {
	e := startHostsEnvWith(t, "packages {\n  max_upload_bytes = 1048576\n}\n")
	ctx := testContext(t, 5*time.Minute)
	good := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0.0"}), pkgtest.Entry{Name: "index.html", Body: []byte("ok\n")})
	goodDigest := e.push(ctx, writePackage(t, "good.tar.gz", good))
	blobDir := filepath.Join(e.server.Dir, "data", "packages", "sha256")
	listBefore := e.c.mustCtl(ctx, e.server.APIAddr, "--json", "package", "list")
	blobsBefore := dirNames(t, blobDir)
	if !slices.Contains(blobsBefore, strings.TrimPrefix(goodDigest, "sha256:")) {
		harness.Fatalf(t, "blob dir %s holds %v, not the good package %s", blobDir, blobsBefore, goodDigest)
	}

	for _, c := range pkgtest.HostileCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			if c.SizeLimited && c.Name != "oversize-archive" {
				// Over pkgtest.SmallLimits only: a real server's unpacked and
				// entry limits are pkgfile.DefaultLimits, which admit it
				// (agent and pkgfile unit tests refuse it under SmallLimits).
				t.Skipf("within the server's limits (pkgfile.DefaultLimits); refused under pkgtest.SmallLimits in the unit tests")
			}
			path := writePackage(t, c.Name+".tar.gz", c.Archive)
			_, errOut, err := e.c.ctl(ctx, e.server.APIAddr, "package", "push", path)
			if err == nil {
				harness.Fatalf(t, "cyclerctl package push accepted %s", c.Name)
			}
			wantNamed(t, "cyclerctl package push", errOut, c)

			status, msg := rawPush(ctx, t, e.server.APIAddr, c.Archive)
			if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
				harness.Fatalf(t, "raw POST /v1/packages: status %d (%s), want 400 or 413", status, msg)
			}
			wantNamed(t, "POST /v1/packages", msg, c)

			if got := e.c.mustCtl(ctx, e.server.APIAddr, "--json", "package", "list"); got != listBefore {
				harness.Fatalf(t, "the package list changed:\nbefore %s\nafter  %s", listBefore, got)
			}
			if got := dirNames(t, blobDir); !slices.Equal(got, blobsBefore) {
				harness.Fatalf(t, "the blob directory changed: %v, was %v", got, blobsBefore)
			}
		})
	}

	// A gzip bomb over the real limits: an entry that declares 5 GiB.
	// The server refuses it from its header, before reading a byte of it.
	t.Run("bomb-over-default-limits", func(t *testing.T) {
		bomb := declaredBomb(t, 5<<30)
		status, msg := rawPush(ctx, t, e.server.APIAddr, bomb)
		if status != http.StatusBadRequest || !strings.Contains(msg, `"bomb.bin"`) || !strings.Contains(msg, pkgfile.ErrTooLarge.Error()) {
			harness.Fatalf(t, "raw POST of a 5 GiB bomb: status %d, %q; want 400 naming bomb.bin as too large", status, msg)
		}
		if got := dirNames(t, blobDir); !slices.Equal(got, blobsBefore) {
			harness.Fatalf(t, "the blob directory changed: %v, was %v", got, blobsBefore)
		}
	})
}

// declaredBomb is a .tar.gz of a manifest and an entry "bomb.bin" whose
// header declares size bytes of zeros, cut off after the header: a few
// hundred bytes that would unpack to size bytes.
func declaredBomb(t *testing.T, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	man := pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0.0"})
	for _, h := range []*tar.Header{
		{Name: man.Name, Mode: 0o644, Size: int64(len(man.Body)), Typeflag: tar.TypeReg},
		{Name: "bomb.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg},
	} {
		if err := tw.WriteHeader(h); err != nil {
			harness.Fatal(t, err)
		}
		if h.Name == man.Name {
			if _, err := tw.Write(man.Body); err != nil {
				harness.Fatal(t, err)
			}
		}
	}
	if _, err := gz.Write(make([]byte, 64<<10)); err != nil { // the start of the zeros
		harness.Fatal(t, err)
	}
	if err := gz.Close(); err != nil {
		harness.Fatal(t, err)
	}
	return buf.Bytes()
}

// wantNamed checks that a refusal names what is wrong: the offending entry
// and the kind of problem. An archive over the upload limit is refused by
// its size before any entry is read.
func wantNamed(t *testing.T, who, msg string, c pkgtest.HostileCase) {
	t.Helper()
	if c.Name == "oversize-archive" {
		// cyclerctl sends no "Expect: 100-continue", so it may still be
		// writing the body when the server answers 413 and closes the
		// connection; then it can only report the reset.
		if !strings.Contains(msg, "upload limit") && !(who == "cyclerctl package push" && strings.Contains(msg, "connection reset")) {
			harness.Fatalf(t, "%s: %q does not say the package is over the upload limit", who, msg)
		}
		return
	}
	if c.Entry != "" && !strings.Contains(msg, c.Entry) {
		harness.Errorf(t, "%s: %q does not name the offending entry %s", who, msg, c.Entry)
	}
	if !strings.Contains(msg, c.Err.Error()) {
		harness.Errorf(t, "%s: %q does not say %q", who, msg, c.Err)
	}
}

// rawPush POSTs b to /v1/packages as an operator, skipping cyclerctl's own
// check, and returns the status and the error message.
func rawPush(ctx context.Context, t *testing.T, addr string, b []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/packages", bytes.NewReader(b))
	if err != nil {
		harness.Fatal(t, err)
	}
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	// The server refuses an upload over its limit from Content-Length
	// and closes the connection; without 100-continue the client might
	// still be writing the body and see a reset instead of the answer.
	req.Header.Set("Expect", "100-continue")
	resp, err := expectContinueHTTP.Do(req)
	if err != nil {
		harness.Fatalf(t, "POST /v1/packages: %v", err)
	}
	defer resp.Body.Close()
	var env struct {
		Error *api.Error `json:"error"`
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if err := json.Unmarshal(buf.Bytes(), &env); err != nil || env.Error == nil {
		return resp.StatusCode, buf.String()
	}
	return resp.StatusCode, env.Error.Message
}

// expectContinueHTTP waits for the server's go-ahead before sending a body.
var expectContinueHTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	DisableKeepAlives: true, ExpectContinueTimeout: 10 * time.Second,
}}

// dirNames lists the names in dir, sorted; a missing dir is empty.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		harness.Fatal(t, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

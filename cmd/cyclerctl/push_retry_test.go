package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
	"github.com/cyclerhq/cycler/raftstore"
)

// TestPackagePushRetriesWholeFile: while the cluster elects a leader the
// push is answered "unavailable"; the retry must send the whole file again
// (the first attempt's body was consumed and closed by the HTTP client),
// and the answer's replica count and warning reach the user.
func TestPackagePushRetriesWholeFile(t *testing.T) {
	data := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "2.0"}),
		pkgtest.Entry{Name: "bin/web", Body: []byte(strings.Repeat("x", 10000)), Mode: 0o755})
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var calls atomic.Int32
	var lastDigest atomic.Value
	addr := startAPI(t, func(s *api.Server) {
		s.HandleStream("POST /v1/packages", api.ScopeOperator, 1<<20, func(w http.ResponseWriter, r *http.Request) error {
			h := sha256.New()
			if _, err := io.Copy(h, r.Body); err != nil {
				return err
			}
			lastDigest.Store("sha256:" + hex.EncodeToString(h.Sum(nil)))
			if calls.Add(1) == 1 {
				return api.Unavailable("no leader yet")
			}
			return api.WriteJSON(w, http.StatusCreated, controller.PackagePushed{
				PackageMeta: raftstore.PackageMeta{Digest: digest, Name: "web", Version: "2.0", Size: int64(len(data))},
				Stored:      1, Servers: 3, Warning: "only 1 of 3 servers hold the package yet"})
		})
	})
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "package", "push", writeTemp(t, "web.tar.gz", data))
	if code != 0 {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if calls.Load() != 2 || lastDigest.Load() != digest {
		t.Errorf("%d uploads, the last hashing to %v; want 2, the second the whole file %s", calls.Load(), lastDigest.Load(), digest)
	}
	if !strings.Contains(out, "stored on 1 of 3 servers") || !strings.Contains(errOut, "warning: only 1 of 3 servers") {
		t.Errorf("stdout %q / stderr %q lack the replica count and the warning", out, errOut)
	}
}

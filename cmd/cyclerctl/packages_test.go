package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
	"github.com/cyclerhq/cycler/pkgstore"
	"github.com/cyclerhq/cycler/raftstore"
)

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPackagePush(t *testing.T) {
	data := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.2.3"}),
		pkgtest.Entry{Name: "bin/web", Body: []byte("binary"), Mode: 0o755})
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var calls atomic.Int32
	var gotLength atomic.Int64
	var gotDigest atomic.Value
	addr := startAPI(t, func(s *api.Server) {
		s.HandleStream("POST /v1/packages", api.ScopeOperator, 1<<20, func(w http.ResponseWriter, r *http.Request) error {
			calls.Add(1)
			gotLength.Store(r.ContentLength)
			h := sha256.New()
			if _, err := io.Copy(h, r.Body); err != nil {
				return err
			}
			gotDigest.Store("sha256:" + hex.EncodeToString(h.Sum(nil)))
			return api.WriteJSON(w, http.StatusCreated, controller.PackagePushed{PackageMeta: raftstore.PackageMeta{
				Digest: digest, Name: "web", Version: "1.2.3", Size: int64(len(data)), Uploader: "ops", UploadedAt: time.Now()}})
		})
	})
	file := writeTemp(t, "web.tar.gz", data)
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "package", "push", file)
	if code != 0 {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if want := "pushed web 1.2.3 " + digest; !strings.Contains(out, want) {
		t.Errorf("stdout %q, want it to contain %q", out, want)
	}
	if gotLength.Load() != int64(len(data)) || gotDigest.Load() != digest {
		t.Errorf("server got Content-Length %d and bytes hashing to %v; want %d and %s", gotLength.Load(), gotDigest.Load(), len(data), digest)
	}

	// A hostile package is refused here, naming the entry, and never sent.
	hostile := writeTemp(t, "evil.tar.gz", pkgtest.Hostile(t)["dotdot"])
	_, errOut, code = ctl(t, "--addr", addr, "--token", testToken, "package", "push", hostile)
	if code == 0 || !strings.Contains(errOut, hostile+": ") || !strings.Contains(errOut, `package entry "../evil"`) ||
		!strings.Contains(errOut, "nothing was uploaded") {
		t.Errorf("hostile push: code %d, stderr %q", code, errOut)
	}
	if calls.Load() != 1 {
		t.Errorf("server got %d uploads, want only the good one", calls.Load())
	}
}

func TestPackageListAndGC(t *testing.T) {
	at := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	web := raftstore.PackageMeta{Digest: "sha256:" + strings.Repeat("ab", 32), Name: "web", Version: "1.0", Size: 3 << 20, Uploader: "ci", UploadedAt: at}
	old := raftstore.PackageMeta{Digest: "sha256:" + strings.Repeat("cd", 32), Name: "web", Version: "0.9", Size: 512, Uploader: "ci", UploadedAt: at}
	addr := startAPI(t, func(s *api.Server) {
		s.Handle("GET /v1/packages", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, []controller.Package{{PackageMeta: web, Stored: true}})
		})
		s.Handle("POST /v1/packages/gc", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, pkgstore.GCResult{Keep: 1,
				Removed: []pkgstore.GCEntry{{PackageMeta: old, Reason: "older than the newest 1 of web and no service uses it"}},
				Kept:    []pkgstore.GCEntry{{PackageMeta: web, Reason: "one of the newest 1 of web"}}})
		})
	})
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "list", args: []string{"package", "list"}, want: []string{
			"NAME", "VERSION", "DIGEST", "SIZE", "UPLOADER", "UPLOADED", "web", "1.0", "abababababab", "3.0 MiB", "ci", "2025-05-06T07:08:09Z"}},
		{name: "gc", args: []string{"package", "gc"}, want: []string{
			"removed web 0.9 cdcdcdcdcdcd: older than the newest 1 of web", "kept    web 1.0 abababababab: one of the newest 1 of web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ctl(t, append([]string{"--addr", addr, "--token", testToken}, tt.args...)...)
			if code != 0 {
				t.Fatalf("code %d, stderr %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	out, _, code := ctl(t, "--addr", addr, "--token", testToken, "--json", "package", "list")
	var list []controller.Package
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Digest != web.Digest || !list[0].Stored {
		t.Fatalf("--json list: code %d, %s", code, out)
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		give int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {50 << 20, "50.0 MiB"}, {3 << 30, "3.0 GiB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.give); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
	"github.com/cyclerhq/cycler/raftstore"
)

func TestDeployExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		give       *fakeCycles
		args       []string
		wantCode   int
		wantOut    []string
		wantErr    string
		wantStream bool
	}{
		{name: "done", give: &fakeCycles{script: script(nil, deployDone...)}, wantCode: 0, wantStream: true,
			wantOut: []string{"web-3 done: web 1.2.3 is live on the green pool", "phases    preflight 1s, hide 1s", "exit 0"}},
		{name: "aborted", give: &fakeCycles{script: script(smokeFails, deployAborted...)}, wantCode: 3, wantStream: true,
			wantOut: []string{"web-3 aborted before the switch", "failed    web-green-2: smoke: 1 of 1 checks failed", "exit 3"},
			wantErr: "cycle web-3 aborted before the switch: in aborted"},
		{name: "rolled back", give: &fakeCycles{script: script(nil, deployRolledBack...)}, wantCode: 4, wantStream: true,
			wantOut: []string{"web-3 rolled back", "exit 4"}, wantErr: "cycle web-3 rolled back after the switch"},
		{name: "refused", give: &fakeCycles{script: script(nil, deployDone...), refuse: "the breaker of web is open until 12:05; reset it with cyclerctl breaker reset web"},
			wantCode: 2, wantErr: "Error: deploy refused, nothing changed: the breaker of web is open until 12:05; reset it"},
		{name: "no limit", give: &fakeCycles{script: script(nil, deployDone...)}, args: []string{"--timeout", "0"}, wantCode: 0, wantStream: true,
			wantOut: []string{"exit 0"}},
		{name: "ended at once", give: &fakeCycles{script: script(nil, cycle.Aborted)}, wantCode: 3, wantOut: []string{"exit 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, tt.give.routes)
			args := append([]string{"--addr", addr, "--token", testToken}, tt.args...)
			out, errOut, code := ctl(t, append(args, "deploy", digest, "--service", "web", "--force")...)
			if code != tt.wantCode {
				t.Fatalf("code %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errOut)
			}
			got := tt.give.startsSeen()
			if len(got) != 1 || got[0].RequestID == "" {
				t.Fatalf("starts %+v, want one with a request id", got)
			}
			if got[0].RequestID = ""; got[0] != (cycle.StartRequest{Service: "web", Digest: digest, Force: true}) {
				t.Errorf("start %+v, want %s to web, forced", got[0], digest)
			}
			if got := tt.give.revs(); tt.wantStream != (len(got) > 0) || (tt.wantStream && got[0] != 1) {
				t.Errorf("events requests with revs %v; want the first from rev 1: %v", got, tt.wantStream)
			}
		})
	}
}

func TestDeployResumesTheStream(t *testing.T) {
	tests := []struct {
		name     string
		give     *fakeCycles
		wantRevs []uint64
	}{
		{name: "dropped connection", give: &fakeCycles{script: script(nil, deployDone...), dropAfter: 3}, wantRevs: []uint64{1, 3}},
		{name: "not leader", give: &fakeCycles{script: script(nil, deployDone...), notLeader: 1}, wantRevs: []uint64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, tt.give.routes)
			out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "deploy", digest, "--follow")
			if code != 0 {
				t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if got := tt.give.revs(); !slices.Equal(got, tt.wantRevs) {
				t.Errorf("events requested from revs %v, want %v", got, tt.wantRevs)
			}
			if !strings.Contains(errOut, "reconnecting from rev "+strconv.FormatUint(tt.wantRevs[1], 10)) {
				t.Errorf("stderr has no reconnect note:\n%s", errOut)
			}
			// --follow into a pipe: one line per phase, none repeated.
			for _, p := range deployDone {
				if n := strings.Count(out, " web-3 phase="+string(p)+" "); n != 1 {
					t.Errorf("%d lines for phase %s, want 1:\n%s", n, p, out)
				}
			}
		})
	}
}

func TestDeployRetriesWithOneRequestID(t *testing.T) {
	f := &fakeCycles{script: script(nil, deployDone...), unavailable: 2}
	addr := startFake(t, f.routes)
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "deploy", digest)
	starts := f.startsSeen()
	if code != 0 || len(starts) != 3 {
		t.Fatalf("code %d after %d starts\nstdout: %s\nstderr: %s", code, len(starts), out, errOut)
	}
	if id := starts[0].RequestID; id == "" || starts[1].RequestID != id || starts[2].RequestID != id {
		t.Errorf("request ids %q, %q, %q; want one non-empty id for every retry", id, starts[1].RequestID, starts[2].RequestID)
	}
}

func TestDeployTimeout(t *testing.T) {
	f := &fakeCycles{script: script(nil, cycle.Preflight, cycle.Hide), hang: true}
	addr := startFake(t, f.routes)
	start := time.Now()
	_, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "--timeout", "300ms", "deploy", digest)
	if code != 1 || !strings.Contains(errOut, "gave up waiting for cycle web-3 after --timeout 300ms: it is still running, in phase hide") ||
		!strings.Contains(errOut, "cyclerctl abort web-3") {
		t.Fatalf("code %d, stderr %s", code, errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("deploy with --timeout 300ms took %s", d)
	}
	_, errOut, code = ctl(t, "--addr", addr, "--token", testToken, "--timeout", "-1s", "deploy", digest)
	if code != 1 || !strings.Contains(errOut, `--timeout "-1s" is not a duration; use 0 for no limit`) {
		t.Fatalf("negative timeout: code %d, stderr %s", code, errOut)
	}
}

func TestDeployJSON(t *testing.T) {
	f := &fakeCycles{script: script(nil, deployRolledBack...)}
	addr := startFake(t, f.routes)
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "--json", "deploy", digest, "--follow")
	var c cycle.Cycle
	if code != 4 || json.Unmarshal([]byte(out), &c) != nil || c.Phase != cycle.RolledBack || c.Rev != 8 {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// The progress goes to stderr so stdout stays one JSON document.
	if !strings.Contains(errOut, "web-3 phase=flip_back") {
		t.Errorf("stderr lacks the progress:\n%s", errOut)
	}
}

func TestDeployPushesAFile(t *testing.T) {
	data := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.2.3"}),
		pkgtest.Entry{Name: "bin/web", Body: []byte("binary"), Mode: 0o755})
	sum := sha256.Sum256(data)
	pushed := "sha256:" + hex.EncodeToString(sum[:])
	var uploads atomic.Int32
	f := &fakeCycles{script: script(nil, deployDone...)}
	addr := startFake(t, func(s *api.Server) {
		f.routes(s)
		s.HandleStream("POST /v1/packages", api.ScopeOperator, 1<<20, func(w http.ResponseWriter, r *http.Request) error {
			uploads.Add(1)
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusCreated, controller.PackagePushed{PackageMeta: raftstore.PackageMeta{
				Digest: pushed, Name: "web", Version: "1.2.3", Size: int64(len(data))}})
		})
	})
	file := writeTemp(t, "web.tar.gz", data)
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "deploy", file)
	if starts := f.startsSeen(); code != 0 || uploads.Load() != 1 || len(starts) != 1 || starts[0].Digest != pushed {
		t.Fatalf("code %d, %d uploads, starts %+v\nstdout: %s\nstderr: %s", code, uploads.Load(), starts, out, errOut)
	}
	if !strings.HasPrefix(out, "pushed web 1.2.3 "+pushed) || !strings.Contains(out, "exit 0") {
		t.Errorf("stdout:\n%s", out)
	}
	// A file that is not a package is refused here and nothing starts.
	bad := writeTemp(t, "notes.txt", []byte("hello"))
	_, errOut, code = ctl(t, "--addr", addr, "--token", testToken, "deploy", bad)
	if code != 1 || !strings.Contains(errOut, "nothing was uploaded") || uploads.Load() != 1 || len(f.startsSeen()) != 1 {
		t.Errorf("bad file: code %d, %d uploads, %d starts, stderr %s", code, uploads.Load(), len(f.startsSeen()), errOut)
	}
}

func TestDeployArgument(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{give: "web-1.2.3.tar.gz", want: `"web-1.2.3.tar.gz" is neither a package file nor a digest`},
		{give: "sha256:abc", want: `digest "sha256:abc" is malformed: want sha256: followed by 64 lowercase hex digits, got 3 characters`},
		{give: "sha256:" + strings.Repeat("AB", 32), want: "is malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			_, errOut, code := ctl(t, "--addr", "127.0.0.1:1", "deploy", tt.give)
			if code != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("code %d, stderr %q; want 1 and %q", code, errOut, tt.want)
			}
		})
	}
	if got, err := parseDigest(digest); err != nil || got != digest {
		t.Errorf("parseDigest(%s) = %q, %v", digest, got, err)
	}
}

func TestDeployStaged(t *testing.T) {
	var got cycle.StartRequest
	addr := startFake(t, func(s *api.Server) {
		s.Handle("POST /v1/cycles", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
			if err := api.DecodeJSON(r, &got); err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusAccepted, map[string]bool{"staged": true})
		})
	})
	out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "deploy", digest, "--service", "web", "--at-window")
	if code != 0 || !got.AtWindow || !strings.Contains(out, "staged "+digest+" for the next deploy window of web") {
		t.Fatalf("code %d, request %+v\nstdout: %s\nstderr: %s", code, got, out, errOut)
	}
}

func TestRollback(t *testing.T) {
	rollback := func(c *cycle.Cycle) { c.Kind, c.Trigger = cycle.KindRollback, "rollback" }
	tests := []struct {
		name     string
		give     *fakeCycles
		wantCode int
		want     string
	}{
		{name: "done", give: &fakeCycles{script: script(rollback, cycle.Preflight, cycle.Switch, cycle.Bake, cycle.Standby, cycle.Done)},
			wantCode: 0, want: "web-3 done: web 1.2.3 is live on the green pool"},
		{name: "rolled back", give: &fakeCycles{script: script(rollback, cycle.Preflight, cycle.Switch, cycle.FlipBack, cycle.RolledBack)},
			wantCode: 4, want: "exit 4"},
		{name: "refused", give: &fakeCycles{script: script(rollback, cycle.Preflight), refuse: "web has no previous version to roll back to"},
			wantCode: 2, want: "Error: rollback of web refused, nothing changed: web has no previous version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, tt.give.routes)
			out, errOut, code := ctl(t, "--addr", addr, "--token", testToken, "rollback", "web", "--force")
			if code != tt.wantCode || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("code %d, want %d and %q\nstdout: %s\nstderr: %s", code, tt.wantCode, tt.want, out, errOut)
			}
			if got := tt.give.rollbacksSeen(); !slices.Equal(got, []string{"web force=true id=true"}) {
				t.Errorf("rollbacks %v", got)
			}
		})
	}
	_, errOut, code := ctl(t, "--addr", "127.0.0.1:1", "rollback")
	if code != 1 || !strings.Contains(errOut, "accepts 1 arg") {
		t.Errorf("rollback without a service: code %d, %s", code, errOut)
	}
}

package smoke_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/smoke"
)

// appHandler is a small app with one path per behaviour under test.
func appHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", "1.2.3")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		_, _ = io.WriteString(w, "status: ok\nversion 1.2.3\n")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "method=%s host=%s", r.Method, r.Host)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("a", smoke.DefaultMaxBodyBytes))
		_, _ = io.WriteString(w, "MARKER")
	})
	return mux
}

func TestHTTPCheck(t *testing.T) {
	target, base := startServer(t, appHandler())
	tests := []struct {
		name       string
		give       smoke.HTTPSpec
		wantPassed bool
		wantReason smoke.Reason
		wantErr    string // "{url}" stands for the server's base URL
	}{
		{name: "default status 200", give: smoke.HTTPSpec{Path: "/ok"}, wantPassed: true},
		{name: "status mismatch", give: smoke.HTTPSpec{Path: "/fail"},
			wantReason: smoke.ReasonStatus, wantErr: `GET {url}/fail: status 500, want 200; body "boom\n"`},
		{name: "status in list", give: smoke.HTTPSpec{Path: "/created", Status: []int{200, 201}}, wantPassed: true},
		{name: "status not in list", give: smoke.HTTPSpec{Path: "/fail", Status: []int{200, 204}},
			wantReason: smoke.ReasonStatus, wantErr: "GET {url}/fail: status 500, want one of 200, 204"},
		{name: "body contains", give: smoke.HTTPSpec{Path: "/ok", BodyContains: "status: ok"}, wantPassed: true},
		{name: "body does not contain", give: smoke.HTTPSpec{Path: "/ok", BodyContains: "degraded"},
			wantReason: smoke.ReasonBody, wantErr: `GET {url}/ok: body does not contain "degraded"; body "status: ok\nversion 1.2.3\n"`},
		{name: "body matches", give: smoke.HTTPSpec{Path: "/ok", BodyMatches: `version \d+\.\d+\.\d+`}, wantPassed: true},
		{name: "body does not match", give: smoke.HTTPSpec{Path: "/ok", BodyMatches: `version 9\.`},
			wantReason: smoke.ReasonBody, wantErr: `GET {url}/ok: body does not match regexp "version 9\\."`},
		{name: "contains and matches both needed", give: smoke.HTTPSpec{Path: "/ok", BodyContains: "ok", BodyMatches: `^nope`},
			wantReason: smoke.ReasonBody, wantErr: "does not match regexp"},
		{name: "header equals", give: smoke.HTTPSpec{Path: "/ok", Headers: map[string]string{"x-version": "1.2.3"}}, wantPassed: true},
		{name: "header one of several values", give: smoke.HTTPSpec{Path: "/ok", Headers: map[string]string{"X-Multi": "b"}}, wantPassed: true},
		{name: "header differs", give: smoke.HTTPSpec{Path: "/ok", Headers: map[string]string{"X-Version": "2.0.0"}},
			wantReason: smoke.ReasonHeader, wantErr: `GET {url}/ok: header "X-Version" is "1.2.3", want "2.0.0"`},
		{name: "header missing", give: smoke.HTTPSpec{Path: "/ok", Headers: map[string]string{"X-Missing": "1"}},
			wantReason: smoke.ReasonHeader, wantErr: `GET {url}/ok: header "X-Missing" missing, want "1"`},
		{name: "redirect not followed", give: smoke.HTTPSpec{Path: "/redirect"},
			wantReason: smoke.ReasonStatus, wantErr: `GET {url}/redirect: status 302, want 200 (redirect to "/ok" not followed)`},
		{name: "redirect expected", give: smoke.HTTPSpec{Path: "/redirect", Status: []int{302}}, wantPassed: true},
		{name: "redirect followed", give: smoke.HTTPSpec{Path: "/redirect", FollowRedirects: true, BodyContains: "status: ok"}, wantPassed: true},
		{name: "method and host header", give: smoke.HTTPSpec{Method: "POST", Path: "/echo", Host: "app.example", BodyContains: "method=POST host=app.example"},
			wantPassed: true},
		{name: "body read is bounded", give: smoke.HTTPSpec{Path: "/big", BodyContains: "MARKER"},
			wantReason: smoke.ReasonBody, wantErr: `body does not contain "MARKER" (only the first 1048576 bytes are read); body "aaaa`},
		{name: "larger body limit", give: smoke.HTTPSpec{Path: "/big", BodyContains: "MARKER", MaxBodyBytes: 2 << 20}, wantPassed: true},
	}
	r := newRunner(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := smoke.Check{Name: "http", Kind: smoke.KindHTTP, HTTP: tt.give}
			got := only(t, r.Run(context.Background(), target, []smoke.Check{c}))
			if got.Passed != tt.wantPassed || got.Reason != tt.wantReason || got.Attempts != 1 {
				t.Errorf("got passed=%v reason=%q attempts=%d, want passed=%v reason=%q attempts=1 (error %q)",
					got.Passed, got.Reason, got.Attempts, tt.wantPassed, tt.wantReason, got.Error)
			}
			if want := strings.ReplaceAll(tt.wantErr, "{url}", base); !strings.Contains(got.Error, want) {
				t.Errorf("error = %q\nwant it to contain %q", got.Error, want)
			}
			if tt.wantPassed && got.Error != "" {
				t.Errorf("passed check has error %q", got.Error)
			}
		})
	}
}

func TestHTTPCheckConnectRefused(t *testing.T) {
	target := targetAt(t, closedAddr(t))
	c := smoke.Check{Name: "http", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/health"}}
	got := only(t, newRunner(t).Run(context.Background(), target, []smoke.Check{c}))
	want := fmt.Sprintf("GET http://127.0.0.1:%d/health: dial tcp 127.0.0.1:%d: connect: connection refused", target.Port, target.Port)
	if got.Passed || got.Reason != smoke.ReasonConnect || got.Error != want {
		t.Errorf("got passed=%v reason=%q error=%q\nwant reason=%q error=%q", got.Passed, got.Reason, got.Error, smoke.ReasonConnect, want)
	}
}

func TestHTTPCheckPortOverride(t *testing.T) {
	app, _ := startServer(t, appHandler())
	target := targetAt(t, closedAddr(t)) // the target's own port is closed
	c := smoke.Check{Name: "admin", Kind: smoke.KindHTTP, Port: app.Port, HTTP: smoke.HTTPSpec{Path: "/ok"}}
	if got := only(t, newRunner(t).Run(context.Background(), target, []smoke.Check{c})); !got.Passed {
		t.Errorf("check on port override failed: %q", got.Error)
	}
}

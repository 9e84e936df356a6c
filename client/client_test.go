package client_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	opSecret    = "operator-secret-0123456789"
	agentSecret = "agent-secret-0123456789abcd"
)

type thing struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
}

// newAPI serves a small API built with api.New through httptest and
// returns its URL.
func newAPI(t *testing.T) string {
	t.Helper()
	s, err := api.New(api.Config{
		NodeName: "node-a",
		Tokens: []api.Token{
			{Name: "ops", Secret: opSecret, Scopes: []api.Scope{api.ScopeOperator}},
			{Name: "agent", Secret: agentSecret, Scopes: []api.Scope{api.ScopeAgent}},
		},
	})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	s.Handle("POST /v1/things", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
		var in thing
		if err := api.DecodeJSON(r, &in); err != nil {
			return err
		}
		api.SetIndex(w, 42)
		return api.WriteJSON(w, http.StatusCreated, thing{ID: "t-1", Name: in.Name})
	})
	s.Handle("GET /v1/things/{id}", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
		if id := r.PathValue("id"); id != "t-1" {
			return api.NotFound("thing %q not found; list things with GET /v1/things", id)
		}
		api.SetIndex(w, 7)
		return api.WriteJSON(w, http.StatusOK, thing{ID: "t-1", Name: "first"})
	})
	s.Handle("DELETE /v1/things/{id}", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("GET /v1/conflict", api.ScopeOperator, func(http.ResponseWriter, *http.Request) error {
		return api.Conflict("a cycle is already running")
	})
	s.Handle("GET /v1/slow", api.ScopeOperator, func(_ http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done() // until the client gives up
		return r.Context().Err()
	})
	s.HandleStream("GET /v1/stream", api.ScopeOperator, 1<<20, func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "text/plain")
		for _, l := range []string{"one\n", "two\n", "three\n"} {
			if _, err := io.WriteString(w, l); err != nil {
				return err
			}
			if err := http.NewResponseController(w).Flush(); err != nil {
				return err
			}
		}
		return nil
	})
	s.HandleStream("PUT /v1/blobs", api.ScopeAgent, 1<<20, func(w http.ResponseWriter, r *http.Request) error {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return err
		}
		return api.WriteJSON(w, http.StatusOK, map[string]any{"bytes": n, "type": r.Header.Get("Content-Type")})
	})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestDoRoundTrip(t *testing.T) {
	c := newClient(t, client.Config{Addr: newAPI(t), Token: opSecret})
	var out thing
	meta, err := c.DoMeta(context.Background(), "POST", "/v1/things", thing{Name: "web"}, &out)
	if err != nil {
		t.Fatalf("DoMeta: %v", err)
	}
	if out != (thing{ID: "t-1", Name: "web"}) {
		t.Errorf("out = %+v", out)
	}
	if meta != (client.Meta{Node: "node-a", Index: 42}) {
		t.Errorf("meta = %+v, want node-a at index 42", meta)
	}

	out = thing{}
	if err := c.Do(context.Background(), "GET", "/v1/things/t-1", nil, &out); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if out.Name != "first" {
		t.Errorf("out = %+v", out)
	}
	if err := c.Do(context.Background(), "DELETE", "/v1/things/t-1", nil, &out); err != nil {
		t.Errorf("DELETE with 204: %v", err)
	}
}

func TestDoAPIErrors(t *testing.T) {
	base := newAPI(t)
	tests := []struct {
		name       string
		token      string
		method     string
		path       string
		in         any
		wantStatus int
		wantIs     *api.Error
		wantMsg    string
	}{
		{"not found", opSecret, "GET", "/v1/things/t-9", nil, 404, api.ErrNotFound, `thing "t-9" not found`},
		{"conflict", opSecret, "GET", "/v1/conflict", nil, 409, api.ErrConflict, "already running"},
		{"no token", "", "GET", "/v1/things/t-1", nil, 401, api.ErrUnauthorized, "missing bearer token"},
		{"bad token", "wrong-secret-xxxxxxxxxx", "GET", "/v1/things/t-1", nil, 401, api.ErrUnauthorized, "invalid token"},
		{"agent token", agentSecret, "GET", "/v1/things/t-1", nil, 403, api.ErrForbidden, `lacks the "operator" scope`},
		{"unknown route", opSecret, "GET", "/v1/nothing", nil, 404, api.ErrNotFound, "no API route"},
		{"wrong method", opSecret, "PATCH", "/v1/things/t-1", nil, 405, api.ErrMethodNotAllowed, "allowed: DELETE, GET, HEAD"},
		{"bad body", opSecret, "POST", "/v1/things", map[string]int{"nmae": 1}, 400, api.ErrBadRequest, `unknown field "nmae"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, client.Config{Addr: base, Token: tt.token})
			meta, err := c.DoMeta(context.Background(), tt.method, tt.path, tt.in, nil)
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *api.Error", err, err)
			}
			if ae.Status != tt.wantStatus || !strings.Contains(ae.Message, tt.wantMsg) {
				t.Errorf("error = %d %q, want %d with %q", ae.Status, ae.Message, tt.wantStatus, tt.wantMsg)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if meta.Node != "node-a" {
				t.Errorf("meta on error = %+v, want node-a", meta)
			}
		})
	}
}

func TestDoNonEnvelopeError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream proxy exploded", http.StatusBadGateway)
	}))
	t.Cleanup(ts.Close)
	c := newClient(t, client.Config{Addr: ts.URL, Token: opSecret})
	err := c.Do(context.Background(), "GET", "/v1/status", nil, nil)
	var ae *api.Error
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Do = %v, want a plain error", err)
	}
	for _, want := range []string{"GET /v1/status", "502 Bad Gateway", "upstream proxy exploded", ts.URL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDoUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, client.Config{Addr: addr, Token: opSecret})
	err = c.Do(context.Background(), "GET", "/v1/status", nil, nil)
	for _, want := range []string{"cannot reach cyclerd at http://" + addr, "is the server running? check --addr / CYCLER_ADDR"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestDoTimeout(t *testing.T) {
	c := newClient(t, client.Config{Addr: newAPI(t), Token: opSecret, Timeout: 50 * time.Millisecond})
	err := c.Do(context.Background(), "GET", "/v1/slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer from cyclerd") {
		t.Errorf("Do = %v, want a deadline error that names cyclerd", err)
	}
}

func TestDoRaw(t *testing.T) {
	base := newAPI(t)
	t.Run("stream", func(t *testing.T) {
		c := newClient(t, client.Config{Addr: base, Token: opSecret})
		resp, err := c.DoRaw(context.Background(), "GET", "/v1/stream", nil, "")
		if err != nil {
			t.Fatalf("DoRaw: %v", err)
		}
		defer resp.Body.Close()
		if m := client.MetaOf(resp); m.Node != "node-a" {
			t.Errorf("meta = %+v", m)
		}
		var lines []string
		for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
			lines = append(lines, sc.Text())
		}
		if strings.Join(lines, ",") != "one,two,three" {
			t.Errorf("lines = %v", lines)
		}
	})
	t.Run("upload", func(t *testing.T) {
		c := newClient(t, client.Config{Addr: base, Token: agentSecret})
		body := strings.Repeat("x", 100_000)
		resp, err := c.DoRaw(context.Background(), "PUT", "/v1/blobs", strings.NewReader(body), "application/gzip")
		if err != nil {
			t.Fatalf("DoRaw: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if got := strings.TrimSpace(string(b)); got != `{"bytes":100000,"type":"application/gzip"}` {
			t.Errorf("body = %s", got)
		}
	})
	t.Run("error status", func(t *testing.T) {
		c := newClient(t, client.Config{Addr: base, Token: agentSecret})
		resp, err := c.DoRaw(context.Background(), "GET", "/v1/stream", nil, "")
		if resp != nil || !errors.Is(err, api.ErrForbidden) {
			t.Errorf("DoRaw = %v, %v; want nil and a forbidden error", resp, err)
		}
	})
}

func TestBasePathPrefix(t *testing.T) {
	// A reverse proxy that mounts the API under /cycler.
	target, err := url.Parse(newAPI(t))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	rp.Transport = tr
	proxy := httptest.NewServer(http.StripPrefix("/cycler", rp))
	t.Cleanup(proxy.Close)
	c := newClient(t, client.Config{Addr: proxy.URL + "/cycler/", Token: opSecret})
	var out thing
	if err := c.Do(context.Background(), "GET", "/v1/things/t-1", nil, &out); err != nil || out.ID != "t-1" {
		t.Errorf("Do through prefix = %+v, %v", out, err)
	}
}

func TestNew(t *testing.T) {
	caFile := writeCA(t)
	tests := []struct {
		name     string
		give     client.Config
		wantAddr string
		wantErr  string
	}{
		{"host:port is http", client.Config{Addr: "127.0.0.1:7400"}, "http://127.0.0.1:7400", ""},
		{"host:port with CA is https", client.Config{Addr: "cycler.internal:7400", CACertFile: caFile}, "https://cycler.internal:7400", ""},
		{"explicit https", client.Config{Addr: "https://10.0.0.1:7400"}, "https://10.0.0.1:7400", ""},
		{"trailing slash dropped", client.Config{Addr: "http://h:1/"}, "http://h:1", ""},
		{"path prefix kept", client.Config{Addr: "http://h:1/cycler/"}, "http://h:1/cycler", ""},
		{"custom HTTP client", client.Config{Addr: "h:1", HTTPClient: &http.Client{}}, "http://h:1", ""},
		{"empty", client.Config{}, "", "server address is empty: set --addr or CYCLER_ADDR"},
		{"bad scheme", client.Config{Addr: "ftp://h:1"}, "", `scheme "ftp" is not http or https`},
		{"no host", client.Config{Addr: "http://"}, "", "has no host"},
		{"query", client.Config{Addr: "http://h:1?x=1"}, "", "only scheme, host, port and a path prefix"},
		{"http with CA", client.Config{Addr: "http://h:1", CACertFile: caFile}, "", "uses plain http but TLS certificate files are set"},
		{"cert without key", client.Config{Addr: "h:1", ClientCertFile: caFile}, "", "must be set together"},
		{"missing CA file", client.Config{Addr: "h:1", CACertFile: "/nonexistent/ca.pem"}, "", "read CA certificate"},
		{"CA file without PEM", client.Config{Addr: "h:1", CACertFile: writeFile(t, "junk")}, "", "holds no PEM certificate"},
		{"HTTPClient with TLS files", client.Config{Addr: "h:1", CACertFile: caFile, HTTPClient: &http.Client{}}, "", "cannot be combined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.give)
			if got := errString(err); !strings.Contains(got, tt.wantErr) || (tt.wantErr == "") != (err == nil) {
				t.Fatalf("New error = %q, want %q", got, tt.wantErr)
			}
			if got := addrOf(c); got != tt.wantAddr {
				t.Errorf("Addr = %q, want %q", got, tt.wantAddr)
			}
		})
	}
}

func TestPathMustBeAbsolute(t *testing.T) {
	c := newClient(t, client.Config{Addr: "127.0.0.1:1"})
	err := c.Do(context.Background(), "GET", "v1/status", nil, nil)
	if err == nil || !strings.Contains(err.Error(), `path "v1/status" must start with /`) {
		t.Errorf("Do = %v, want a path error", err)
	}
}

func addrOf(c *client.Client) string {
	if c == nil {
		return ""
	}
	return c.Addr()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file.pem")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCA writes a self-signed CA certificate and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cyclerhq/cycler/api"
)

const (
	opSecret    = "operator-secret-0123456789"
	agentSecret = "agent-secret-0123456789abcd"
	testNode    = "node-a"
	smallLimit  = 64
)

func testTokens() []api.Token {
	return []api.Token{
		{Name: "ops", Secret: opSecret, Scopes: []api.Scope{api.ScopeOperator}},
		{Name: "web-agent", Secret: agentSecret, Scopes: []api.Scope{api.ScopeAgent}},
	}
}

type echoBody struct {
	Name   string `json:"name"`
	Count  int    `json:"count"`
	Nested struct {
		Flag bool `json:"flag"`
	} `json:"nested"`
}

// newTestServer builds a Server with the test routes. mod may adjust the
// config before New.
func newTestServer(t *testing.T, mod func(*api.Config)) (*api.Server, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := api.Config{
		Addr:         "127.0.0.1:0",
		Tokens:       testTokens(),
		MaxBodyBytes: smallLimit,
		Logger:       zap.New(core),
		NodeName:     testNode,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := api.New(cfg)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	caller := func(w http.ResponseWriter, r *http.Request) error {
		return api.WriteJSON(w, http.StatusOK, map[string]string{"caller": api.Caller(r), "ctx": api.TokenName(r.Context())})
	}
	echo := func(w http.ResponseWriter, r *http.Request) error {
		var b echoBody
		if err := api.DecodeJSON(r, &b); err != nil {
			return err
		}
		return api.WriteJSON(w, http.StatusOK, b)
	}
	s.Handle("GET /v1/op", api.ScopeOperator, caller)
	s.Handle("GET /v1/agent", api.ScopeAgent, caller)
	s.Handle("POST /v1/echo", api.ScopeOperator, echo)
	s.Handle("POST /v1/big", api.ScopeOperator, echo, api.WithMaxBodyBytes(1<<20))
	s.Handle("GET /v1/panic", api.ScopeOperator, func(http.ResponseWriter, *http.Request) error {
		panic("boom at /secret/panic")
	})
	s.Handle("GET /v1/fail", api.ScopeOperator, func(http.ResponseWriter, *http.Request) error {
		return errors.New("open /secret/path: disk on fire")
	})
	s.Handle("GET /v1/conflict", api.ScopeOperator, func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("start cycle: %w", api.Conflict("a cycle for service %q is already running", "web"))
	})
	s.Handle("GET /v1/notleader", api.ScopeOperator, func(http.ResponseWriter, *http.Request) error {
		return api.NotLeader("10.0.0.1:7400")
	})
	s.Handle("GET /v1/late", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusAccepted)
		return errors.New("broke after the header")
	})
	return s, logs
}

// startHTTPTest serves h with httptest and returns its URL.
func startHTTPTest(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

type result struct {
	status int
	header http.Header
	body   []byte
}

// send performs one request with a fresh transport (closed afterwards so no
// connection goroutines outlive the test).
func send(t *testing.T, method, url, authz, contentType, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

// envelopeOf decodes an error envelope; it returns a zero Error for a body
// that is not one.
func envelopeOf(b []byte) api.Error {
	var env struct {
		Error *api.Error `json:"error"`
	}
	if json.Unmarshal(b, &env) != nil || env.Error == nil {
		return api.Error{}
	}
	return *env.Error
}

func TestAuth(t *testing.T) {
	s, _ := newTestServer(t, nil)
	url := startHTTPTest(t, s.Handler())
	tests := []struct {
		name          string
		path          string
		authz         string
		wantStatus    int
		wantCode      string
		wantChallenge bool
		wantCaller    string
	}{
		{"no token", "/v1/op", "", 401, api.CodeUnauthorized, true, ""},
		{"wrong token", "/v1/op", "Bearer not-a-configured-secret", 401, api.CodeUnauthorized, true, ""},
		{"prefix of a real token", "/v1/op", "Bearer " + opSecret[:10], 401, api.CodeUnauthorized, true, ""},
		{"basic scheme", "/v1/op", "Basic " + opSecret, 401, api.CodeUnauthorized, true, ""},
		{"bearer without secret", "/v1/op", "Bearer ", 401, api.CodeUnauthorized, true, ""},
		{"agent token on operator route", "/v1/op", "Bearer " + agentSecret, 403, api.CodeForbidden, false, ""},
		{"operator token on agent route", "/v1/agent", "Bearer " + opSecret, 403, api.CodeForbidden, false, ""},
		{"operator token", "/v1/op", "Bearer " + opSecret, 200, "", false, "ops"},
		{"scheme is case-insensitive", "/v1/op", "bearer " + opSecret, 200, "", false, "ops"},
		{"agent token", "/v1/agent", "Bearer " + agentSecret, 200, "", false, "web-agent"},
		{"health is public", "/v1/health", "", 200, "", false, ""},
		{"health ignores bad token", "/v1/health", "Bearer nope", 200, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := send(t, "GET", url+tt.path, tt.authz, "", "")
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", got.status, tt.wantStatus, got.body)
			}
			if code := envelopeOf(got.body).Code; code != tt.wantCode {
				t.Errorf("envelope code = %q, want %q (body %s)", code, tt.wantCode, got.body)
			}
			if has := got.header.Get("WWW-Authenticate") != ""; has != tt.wantChallenge {
				t.Errorf("WWW-Authenticate present = %v, want %v", has, tt.wantChallenge)
			}
			var caller struct{ Caller, Ctx string }
			_ = json.Unmarshal(got.body, &caller)
			if caller.Caller != tt.wantCaller || caller.Ctx != tt.wantCaller {
				t.Errorf("caller = %q / TokenName = %q, want %q", caller.Caller, caller.Ctx, tt.wantCaller)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	s, _ := newTestServer(t, nil)
	got := send(t, "GET", startHTTPTest(t, s.Handler())+"/v1/health", "", "", "")
	var body map[string]string
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("decode %s: %v", got.body, err)
	}
	if body["status"] != "ok" || body["node"] != testNode {
		t.Errorf("health = %v, want status ok and node %q", body, testNode)
	}
}

func TestMuxFallbacksUseEnvelope(t *testing.T) {
	s, _ := newTestServer(t, nil)
	url := startHTTPTest(t, s.Handler())
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantCode   string
		wantAllow  string
	}{
		{"unknown route", "GET", "/v1/nope", 404, api.CodeNotFound, ""},
		{"outside v1", "GET", "/", 404, api.CodeNotFound, ""},
		{"wrong method", "DELETE", "/v1/op", 405, api.CodeMethodNotAllowed, "GET, HEAD"},
		{"wrong method on POST route", "GET", "/v1/echo", 405, api.CodeMethodNotAllowed, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := send(t, tt.method, url+tt.path, "Bearer "+opSecret, "", "")
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d", got.status, tt.wantStatus)
			}
			env := envelopeOf(got.body)
			if env.Code != tt.wantCode || env.Message == "" {
				t.Errorf("envelope = %+v, want code %q and a message (body %q)", env, tt.wantCode, got.body)
			}
			if allow := got.header.Get("Allow"); allow != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", allow, tt.wantAllow)
			}
			if node := got.header.Get(api.HeaderNode); node != testNode {
				t.Errorf("%s = %q, want %q", api.HeaderNode, node, testNode)
			}
		})
	}
}

func TestNodeHeaderOnEveryResponse(t *testing.T) {
	s, _ := newTestServer(t, nil)
	url := startHTTPTest(t, s.Handler())
	tests := []struct {
		name  string
		path  string
		authz string
	}{
		{"health", "/v1/health", ""},
		{"unauthorized", "/v1/op", ""},
		{"ok", "/v1/op", "Bearer " + opSecret},
		{"panic", "/v1/panic", "Bearer " + opSecret},
		{"not found", "/v1/missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := send(t, "GET", url+tt.path, tt.authz, "", "")
			if node := got.header.Get(api.HeaderNode); node != testNode {
				t.Errorf("%s = %q, want %q", api.HeaderNode, node, testNode)
			}
		})
	}
}

func TestHandlerErrors(t *testing.T) {
	s, logs := newTestServer(t, nil)
	url := startHTTPTest(t, s.Handler())
	tests := []struct {
		name        string
		path        string
		wantStatus  int
		wantCode    string
		wantMessage string // substring
		wantLog     string // log message expected for this request
		notInBody   string
	}{
		{"panic", "/v1/panic", 500, api.CodeInternal, "internal server error", "handler panic", "/secret/panic"},
		{"plain error", "/v1/fail", 500, api.CodeInternal, "internal server error", "handler error", "/secret/path"},
		{"wrapped api error", "/v1/conflict", 409, api.CodeConflict, `service "web" is already running`, "", "start cycle"},
		{"not leader", "/v1/notleader", api.StatusNotLeader, api.CodeNotLeader, "10.0.0.1:7400", "", "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := send(t, "GET", url+tt.path, "Bearer "+opSecret, "", "")
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d", got.status, tt.wantStatus)
			}
			env := envelopeOf(got.body)
			if env.Code != tt.wantCode || !strings.Contains(env.Message, tt.wantMessage) {
				t.Errorf("envelope = %+v, want code %q and message containing %q", env, tt.wantCode, tt.wantMessage)
			}
			if strings.Contains(string(got.body), tt.notInBody) {
				t.Errorf("body %s leaks %q", got.body, tt.notInBody)
			}
			if n := logs.FilterMessage(tt.wantLog).FilterField(zap.String("path", tt.path)).Len(); tt.wantLog != "" && n == 0 {
				t.Errorf("no %q log entry for %s", tt.wantLog, tt.path)
			}
		})
	}
}

func TestErrorAfterHeaderIsLoggedNotRendered(t *testing.T) {
	s, logs := newTestServer(t, nil)
	got := send(t, "GET", startHTTPTest(t, s.Handler())+"/v1/late", "Bearer "+opSecret, "", "")
	if got.status != http.StatusAccepted || len(got.body) != 0 {
		t.Errorf("got %d %q, want the handler's 202 with an empty body", got.status, got.body)
	}
	if logs.FilterMessage("error after response started").Len() != 1 {
		t.Errorf("want one 'error after response started' log entry, got %v", logs.All())
	}
}

func TestDecodeJSON(t *testing.T) {
	s, _ := newTestServer(t, nil)
	url := startHTTPTest(t, s.Handler())
	long := `{"name":"` + strings.Repeat("a", 200) + `"}`
	tests := []struct {
		name        string
		path        string
		contentType string
		give        string
		wantStatus  int
		wantCode    string
		wantMessage string // substring
	}{
		{"valid", "/v1/echo", "application/json", `{"name":"web","count":2}`, 200, "", ""},
		{"charset parameter", "/v1/echo", "application/json; charset=utf-8", `{"name":"web"}`, 200, "", ""},
		{"trailing whitespace", "/v1/echo", "application/json", "{\"name\":\"web\"}\n\n", 200, "", ""},
		{"unknown field", "/v1/echo", "application/json", `{"name":"web","extra":1}`, 400, api.CodeBadRequest, `unknown field "extra"`},
		{"syntax error", "/v1/echo", "application/json", `{"name": }`, 400, api.CodeBadRequest, "invalid JSON at offset"},
		{"wrong type", "/v1/echo", "application/json", `{"count":"two"}`, 400, api.CodeBadRequest, `field "count": expected a number`},
		{"wrong nested type", "/v1/echo", "application/json", `{"nested":{"flag":1}}`, 400, api.CodeBadRequest, `field "nested.flag": expected a boolean`},
		{"not an object", "/v1/echo", "application/json", `[1,2]`, 400, api.CodeBadRequest, "expected an object"},
		{"second value", "/v1/echo", "application/json", `{"name":"a"} {"name":"b"}`, 400, api.CodeBadRequest, "unexpected data after the JSON value that ends at offset 12"},
		{"trailing garbage", "/v1/echo", "application/json", `{"name":"a"}x`, 400, api.CodeBadRequest, "unexpected data after"},
		{"truncated", "/v1/echo", "application/json", `{"name":"a"`, 400, api.CodeBadRequest, "truncated"},
		{"empty body", "/v1/echo", "application/json", "", 400, api.CodeBadRequest, "empty"},
		{"wrong content type", "/v1/echo", "text/plain", `{"name":"web"}`, 415, api.CodeUnsupportedMediaType, "text/plain"},
		{"missing content type", "/v1/echo", "", `{"name":"web"}`, 415, api.CodeUnsupportedMediaType, "(none)"},
		{"over the limit", "/v1/echo", "application/json", long, 413, api.CodeTooLarge, fmt.Sprint(smallLimit, " bytes")},
		{"over the limit in trailing data", "/v1/echo", "application/json", `{}` + strings.Repeat(" ", 200), 413, api.CodeTooLarge, "exceeds the limit"},
		{"route override allows more", "/v1/big", "application/json", long, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := send(t, "POST", url+tt.path, "Bearer "+opSecret, tt.contentType, tt.give)
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", got.status, tt.wantStatus, got.body)
			}
			env := envelopeOf(got.body)
			if env.Code != tt.wantCode || !strings.Contains(env.Message, tt.wantMessage) {
				t.Errorf("envelope = %+v, want code %q and message containing %q", env, tt.wantCode, tt.wantMessage)
			}
		})
	}
}

func TestAccessLogNamesTokenNotSecret(t *testing.T) {
	s, logs := newTestServer(t, nil)
	url := startHTTPTest(t, s.Handler())
	send(t, "GET", url+"/v1/op", "Bearer "+opSecret, "", "")
	send(t, "GET", url+"/v1/op", "Bearer "+agentSecret, "", "")

	tests := []struct {
		name       string
		wantToken  string
		wantStatus int64
	}{
		{"allowed", "ops", 200},
		{"forbidden", "web-agent", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := logs.FilterMessage("request").FilterField(zap.String("token", tt.wantToken)).All()
			if len(entries) != 1 {
				t.Fatalf("want 1 access log entry for token %q, got %d", tt.wantToken, len(entries))
			}
			e := entries[0]
			if e.Level != zapcore.DebugLevel {
				t.Errorf("access log level = %s, want debug", e.Level)
			}
			fields := e.ContextMap()
			if fields["status"] != tt.wantStatus || fields["method"] != "GET" || fields["path"] != "/v1/op" {
				t.Errorf("access log fields = %v", fields)
			}
			if _, ok := fields["duration"]; !ok {
				t.Errorf("access log has no duration: %v", fields)
			}
		})
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, opSecret) || strings.Contains(line, agentSecret) {
			t.Errorf("log entry leaks a secret: %s", line)
		}
	}
}

func TestNewValidation(t *testing.T) {
	good := testTokens()
	tests := []struct {
		name string
		give api.Config
		want []string // every substring must appear
	}{
		{"no tokens", api.Config{}, []string{"no API tokens configured"}},
		{"short secret", api.Config{Tokens: []api.Token{{Name: "a", Secret: "short", Scopes: []api.Scope{api.ScopeOperator}}}},
			[]string{`token[0] "a": secret is 5 bytes, need at least 16`}},
		{"empty name", api.Config{Tokens: []api.Token{{Secret: opSecret, Scopes: []api.Scope{api.ScopeOperator}}}},
			[]string{"token[0]: name is empty"}},
		{"duplicate name", api.Config{Tokens: []api.Token{good[0], {Name: "ops", Secret: agentSecret, Scopes: []api.Scope{api.ScopeAgent}}}},
			[]string{`token[1] "ops": duplicate token name`}},
		{"duplicate secret", api.Config{Tokens: []api.Token{good[0], {Name: "b", Secret: opSecret, Scopes: []api.Scope{api.ScopeAgent}}}},
			[]string{`token[1] "b": same secret as token "ops"`}},
		{"no scopes", api.Config{Tokens: []api.Token{{Name: "a", Secret: opSecret}}}, []string{"no scopes"}},
		{"unknown scope", api.Config{Tokens: []api.Token{{Name: "a", Secret: opSecret, Scopes: []api.Scope{"admin"}}}},
			[]string{`unknown scope "admin"`}},
		{"every problem reported", api.Config{Tokens: []api.Token{{Name: "", Secret: "x", Scopes: []api.Scope{"root"}}}},
			[]string{"name is empty", "secret is 1 bytes", `unknown scope "root"`}},
		{"negative limits", api.Config{Tokens: good, MaxBodyBytes: -1, WriteTimeout: -1, MaxHeaderBytes: -5},
			[]string{"max body bytes is -1", "write timeout is -1ns", "max header bytes is -5"}},
		{"tls without key", api.Config{Tokens: good, TLS: &api.TLSConfig{CertFile: "c.pem"}},
			[]string{`cert file "c.pem" and key file "" must both be set`}},
		{"tls missing files", api.Config{Tokens: good, TLS: &api.TLSConfig{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}},
			[]string{"load key pair /nonexistent/c.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := api.New(tt.give)
			if err == nil {
				t.Fatalf("New succeeded (%v), want an error", s)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRegistrationPanics(t *testing.T) {
	s, _ := newTestServer(t, nil)
	noop := func(http.ResponseWriter, *http.Request) error { return nil }
	tests := []struct {
		name string
		give func()
	}{
		{"unknown scope", func() { s.Handle("GET /v1/x", "root", noop) }},
		{"outside v1", func() { s.Handle("GET /admin", api.ScopeOperator, noop) }},
		{"zero body limit", func() { s.Handle("GET /v1/y", api.ScopeOperator, noop, api.WithMaxBodyBytes(0)) }},
		{"duplicate pattern", func() { s.Handle("GET /v1/op", api.ScopeOperator, noop) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("registration did not panic")
				}
			}()
			tt.give()
		})
	}
}

func TestErrorIs(t *testing.T) {
	tests := []struct {
		name string
		give error
		want *api.Error
	}{
		{"constructor", api.NotFound("service %q not found", "web"), api.ErrNotFound},
		{"wrapped", fmt.Errorf("lookup: %w", api.Conflict("busy")), api.ErrConflict},
		{"not leader", api.NotLeader(""), api.ErrNotLeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.give, tt.want) {
				t.Errorf("errors.Is(%v, %v) = false", tt.give, tt.want)
			}
			if errors.Is(tt.give, api.ErrInternal) {
				t.Errorf("errors.Is(%v, ErrInternal) = true", tt.give)
			}
		})
	}
}

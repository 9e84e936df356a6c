package smoke_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/smoke"
)

func httpCheck(path string) smoke.Check {
	return smoke.Check{Name: "health", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: path}}
}

func TestCheckValidate(t *testing.T) {
	tests := []struct {
		name string
		give smoke.Check
		want []string // substrings of the error; none means valid
	}{
		{name: "http minimal", give: httpCheck("/health")},
		{name: "http full", give: smoke.Check{Name: "full", Kind: smoke.KindHTTP, Port: 9090, Timeout: time.Second, Retries: 3,
			Backoff: smoke.Backoff{Initial: time.Millisecond, Max: time.Second},
			HTTP: smoke.HTTPSpec{Method: "HEAD", Path: "/health?deep=1", Host: "app.example", Status: []int{200, 204},
				BodyContains: "ok", BodyMatches: `v\d+`, Headers: map[string]string{"X-Version": "1.2\t3"}, MaxBodyBytes: 10}}},
		{name: "tcp", give: smoke.Check{Name: "port", Kind: smoke.KindTCP}},
		{name: "command", give: smoke.Check{Name: "cmd", Kind: smoke.KindCommand, Command: smoke.CommandSpec{Argv: []string{"/bin/true"}}}},
		{name: "empty name", give: smoke.Check{Kind: smoke.KindTCP},
			want: []string{`check "": name is empty`}},
		{name: "unknown kind", give: smoke.Check{Name: "x", Kind: "htp"},
			want: []string{`check "x": kind "htp" is not known; use "http", "tcp" or "command"`}},
		{name: "bad regexp", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/", BodyMatches: "(ok"}},
			want: []string{`http body regexp "(ok" does not compile: error parsing regexp: missing closing )`}},
		{name: "status out of range", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/", Status: []int{99, 200, 600}}},
			want: []string{"http status 99 is out of range; use 100-599", "http status 600 is out of range"}},
		{name: "empty argv", give: smoke.Check{Name: "x", Kind: smoke.KindCommand},
			want: []string{`check "x": argv is empty`}},
		{name: "empty program", give: smoke.Check{Name: "x", Kind: smoke.KindCommand, Command: smoke.CommandSpec{Argv: []string{"", "a"}}},
			want: []string{"argv[0] is empty"}},
		{name: "nul in argv", give: smoke.Check{Name: "x", Kind: smoke.KindCommand, Command: smoke.CommandSpec{Argv: []string{"/bin/echo", "a\x00b"}}},
			want: []string{`argv[1] "a\x00b" contains a NUL byte`}},
		{name: "negative timeout", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, Timeout: -time.Second},
			want: []string{"timeout -1s is negative"}},
		{name: "negative retries", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, Retries: -1},
			want: []string{"retries -1 is out of range; use 0-100"}},
		{name: "too many retries", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, Retries: 101},
			want: []string{"retries 101 is out of range"}},
		{name: "negative backoff", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, Backoff: smoke.Backoff{Initial: -1, Max: -2}},
			want: []string{"backoff initial -1ns is negative", "backoff max -2ns is negative"}},
		{name: "backoff max below initial", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, Backoff: smoke.Backoff{Initial: time.Second, Max: time.Millisecond}},
			want: []string{"backoff max 1ms is below backoff initial 1s"}},
		{name: "port out of range", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, Port: 70000},
			want: []string{"port 70000 is out of range"}},
		{name: "empty path", give: httpCheck(""),
			want: []string{`check "health": http path is empty`}},
		{name: "relative path", give: httpCheck("health"),
			want: []string{`http path "health" must start with a single "/"`}},
		{name: "scheme-relative path", give: httpCheck("//evil.example/x"),
			want: []string{`http path "//evil.example/x" must start with a single "/"`}},
		{name: "path with space", give: httpCheck("/a b"),
			want: []string{`http path "/a b" contains spaces or control characters`}},
		{name: "bad method", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Method: "GE T", Path: "/"}},
			want: []string{`http method "GE T" is not valid`}},
		{name: "bad header name and value", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP,
			HTTP: smoke.HTTPSpec{Path: "/", Headers: map[string]string{"Bad Header": "v", "X-Ok": "a\nb"}}},
			want: []string{`http header name "Bad Header" is not a valid header name`, `http header "X-Ok" value "a\nb" contains control characters`}},
		{name: "bad host header", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/", Host: "a b"}},
			want: []string{`http host header "a b" contains spaces`}},
		{name: "negative max body", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/", MaxBodyBytes: -1}},
			want: []string{"http max body bytes -1 is negative"}},
		{name: "http settings on tcp", give: smoke.Check{Name: "x", Kind: smoke.KindTCP, HTTP: smoke.HTTPSpec{Path: "/"}},
			want: []string{`http settings are set but kind is "tcp"; remove them or use kind "http"`}},
		{name: "argv on http", give: smoke.Check{Name: "x", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/"}, Command: smoke.CommandSpec{Argv: []string{"/bin/true"}}},
			want: []string{`argv is set but kind is "http"; remove it or use kind "command"`}},
		{name: "every problem reported", give: smoke.Check{Kind: smoke.KindHTTP, Retries: -1, HTTP: smoke.HTTPSpec{Path: "x", Status: []int{1}}},
			want: []string{"name is empty", "retries -1", `http path "x"`, "http status 1 is out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if (err == nil) != (len(tt.want) == 0) {
				t.Fatalf("Validate() = %v, want problems %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateAll(t *testing.T) {
	tcp := smoke.Check{Name: "a", Kind: smoke.KindTCP}
	tests := []struct {
		name string
		give []smoke.Check
		want []string
	}{
		{name: "none", give: nil},
		{name: "valid", give: []smoke.Check{tcp, httpCheck("/health")}},
		{name: "index and name on each problem", give: []smoke.Check{tcp, httpCheck("health"), {Name: "c", Kind: "udp"}},
			want: []string{`check 1 "health": http path "health"`, `check 2 "c": kind "udp" is not known`}},
		{name: "duplicate names", give: []smoke.Check{tcp, httpCheck("/"), tcp},
			want: []string{`check 2 "a": name "a" is already used by check 0; names must be unique`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := smoke.ValidateAll(tt.give)
			if (err == nil) != (len(tt.want) == 0) {
				t.Fatalf("ValidateAll() = %v, want problems %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ValidateAll() = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

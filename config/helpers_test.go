package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// problemsOf unpacks the Problems from err, failing the test when err is
// something else.
func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	if err == nil {
		return nil
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, want Problems: %v", err, err)
	}
	return ps
}

// wantOneProblem checks that err holds exactly one problem, about path,
// whose message contains msg.
func wantOneProblem(t *testing.T, err error, path, msg string) {
	t.Helper()
	ps := problemsOf(t, err)
	if len(ps) != 1 {
		t.Fatalf("got %d problems, want 1 about %s:\n%v", len(ps), path, err)
	}
	if ps[0].Path != path || !strings.Contains(ps[0].Msg, msg) {
		t.Fatalf("got problem %q, want path %q and a message containing %q", ps[0].String(), path, msg)
	}
}

// writeFile writes content to name inside a fresh temp dir and returns
// the path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validServer is the smallest valid server configuration built in code.
func validServer() Server {
	s := DefaultServer()
	s.NodeID = "cyc-1"
	s.DataDir = "/var/lib/cycler"
	s.API.Tokens = testTokens("operator")
	return s
}

// validAgent is the smallest valid agent configuration built in code.
func validAgent() Agent {
	a := DefaultAgent()
	a.NodeID = "web-1"
	a.DataDir = "/var/lib/cycler-agent"
	a.Servers = []string{"10.0.0.5:7400"}
	a.ServerToken = "0123456789abcdef"
	a.Service = "web"
	a.Pool = "blue"
	a.Port = 8080
	a.API.Tokens = testTokens("agent")
	return a
}

// validLB is the smallest valid lb configuration built in code, using the
// nginx driver.
func validLB() LB {
	l := DefaultLB()
	l.LBID = "lb-1"
	l.Services = []string{"web"}
	l.Driver.Name = DriverNginx
	l.Driver.Nginx.AdminAddr = "127.0.0.1:8081"
	l.Driver.Nginx.AdminSecret = "0123456789abcdef"
	l.Driver.Nginx.Services = []NginxService{{Name: "web", Listen: "0.0.0.0:80"}}
	l.API.Tokens = testTokens("operator")
	return l
}

// tokenHCL is an api block holding one valid token, which every role
// needs. Tests that are not about tokens append it to the END of their HCL
// fixtures, so the line numbers they assert stay where they are.
const tokenHCL = `
api {
  token "ops" {
    secret = "0123456789abcdef"
    scopes = ["operator"]
  }
}
`

// testTokens is the one api token every valid config needs.
func testTokens(scope string) []Token {
	return []Token{{Name: "test", Secret: "test-token-secret-000", Scopes: []string{scope}}}
}

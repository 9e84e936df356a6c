package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheckReportsEveryProblem is the acceptance check for
// `cyclerd config check`: three different mistakes, three lines, each with
// its line number, and a non-zero exit.
func TestConfigCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.hcl")
	src := `node_id  = "s1"
data_dir = "` + dir + `"
colour   = "blue"
api {
  listen = "127.0.0.1:99999"
}
log {
  level = "chatty"
}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"config", "check", "-role", "server", path}, &stdout, &stderr)
	if err == nil {
		t.Fatalf("config check passed a broken file; stdout=%q", stdout.String())
	}
	if exitCode(err) == 0 {
		t.Fatalf("exit code 0 for a broken file")
	}
	out := stderr.String()
	for _, want := range []string{
		"server.hcl:3", "colour: is not a known setting", // unknown key
		"server.hcl:5", "api.listen", // bad port
		"server.hcl:8", "log.level", `"chatty"`, // bad enum
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigCheckAcceptsExamples(t *testing.T) {
	tests := []struct{ role, file string }{
		{"server", "server.hcl"}, {"agent", "agent.hcl"}, {"lb", "lb.hcl"},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			path := filepath.Join("..", "..", "config", "testdata", tt.file)
			err := run(context.Background(), []string{"config", "check", "-role", tt.role, path}, &stdout, &stderr)
			// The examples name secret and TLS files under /etc/cycler that
			// exist on a real host, not here; every other problem is a bug
			// in the example.
			if err == nil {
				return
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")[1:]
			for _, l := range lines {
				if !strings.Contains(l, "/etc/cycler/") || !strings.Contains(l, "no such file or directory") {
					t.Errorf("example %s: unexpected problem: %s", tt.file, l)
				}
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		give    []string
		wantErr error
		wantOut string
	}{
		{give: nil, wantErr: flag.ErrHelp, wantOut: "Usage: cyclerd"},
		{give: []string{"frobnicate"}, wantOut: "Usage: cyclerd"},
		{give: []string{"config"}, wantErr: flag.ErrHelp, wantOut: "config check"},
		{give: []string{"server"}, wantErr: flag.ErrHelp, wantOut: "-config FILE"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tt.give, &stdout, &stderr)
		if err == nil {
			t.Errorf("run(%q) succeeded", tt.give)
		}
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("run(%q) = %v; want %v", tt.give, err, tt.wantErr)
		}
		if !strings.Contains(stderr.String(), tt.wantOut) {
			t.Errorf("run(%q) stderr = %q; want it to contain %q", tt.give, stderr.String(), tt.wantOut)
		}
	}
}

func TestServerFlagProblemsSayFlag(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.hcl")
	src := "node_id = \"s1\"\ndata_dir = \"" + dir + "\"\napi {\n  token \"ops\" {\n    secret = \"0123456789abcdef0\"\n    scopes = [\"operator\"]\n  }\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"server", "-config", path, "-raft-bind", "nowhere"}, &stdout, &stderr)
	if err == nil {
		t.Fatal("a bad -raft-bind was accepted")
	}
	if out := stderr.String(); !strings.Contains(out, "(flag)") || !strings.Contains(out, "raft.bind") {
		t.Fatalf("problem does not blame the flag:\n%s", out)
	}
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExamplesLoad(t *testing.T) {
	srv, err := LoadServer("testdata/server.hcl")
	if err != nil {
		t.Fatalf("server example: %v", err)
	}
	agent, err := LoadAgent("testdata/agent.hcl")
	if err != nil {
		t.Fatalf("agent example: %v", err)
	}
	lb, err := LoadLB("testdata/lb.hcl")
	if err != nil {
		t.Fatalf("lb example: %v", err)
	}

	tests := []struct {
		name string
		give any
		want any
	}{
		{"server node_id from file", srv.NodeID, "cyc-1"},
		{"server join from file", srv.Raft.Join, []string{"10.0.0.12:7400", "https://cyc-3.internal:7400"}},
		{"server token scopes", srv.API.Tokens[1].Scopes, []string{"agent"}},
		{"server tls block", srv.API.TLS.KeyFile, "/etc/cycler/tls/server-key.pem"},
		{"server advertise unset", srv.Raft.Advertise, ""},
		{"agent port", agent.Port, 8080},
		{"agent servers", len(agent.Servers), 3},
		{"agent restart command", agent.App.RestartCommand, []string{"systemctl", "restart", "web.service"}},
		{"agent consul scheme default", agent.Consul.Scheme, "http"},
		{"agent max body default", agent.API.MaxBodyBytes, int64(1 << 20)},
		{"lb driver", lb.Driver.Name, DriverNginx},
		{"lb admin addr", lb.Driver.Nginx.AdminAddr, "127.0.0.1:8081"},
		{"lb min_live", lb.MinLive, 2},
		{"lb varnish defaults untouched", lb.Driver.Varnish.KeepVCLs, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.give, tt.want) {
				t.Errorf("got %#v, want %#v", tt.give, tt.want)
			}
		})
	}
}

func TestDefaultsWithRequiredFieldsValidate(t *testing.T) {
	srv, agent, lb := validServer(), validAgent(), validLB()
	tests := []struct {
		name string
		give interface{ Validate() error }
	}{
		{"server", &srv},
		{"agent", &agent},
		{"lb", &lb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give.Validate(); err != nil {
				t.Errorf("defaults plus required fields do not validate:\n%v", err)
			}
		})
	}
}

func TestDefaultsReportExactlyTheRequiredKeys(t *testing.T) {
	srv, agent, lb := DefaultServer(), DefaultAgent(), DefaultLB()
	srv.NodeID, agent.NodeID = "n1", "n1" // the host name varies by machine
	tests := []struct {
		name string
		give interface{ Validate() error }
		want []string
	}{
		{"server", &srv, []string{"data_dir", "api.token"}},
		{"agent", &agent, []string{"data_dir", "api.token", "servers", "server_token", "service", "pool", "port"}},
		{"lb", &lb, []string{"lb_id", "api.token", "services", "driver"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range problemsOf(t, tt.give.Validate()) {
				got = append(got, p.Path)
				if p.Pos != "(default)" || !strings.HasPrefix(p.Msg, "is not set") {
					t.Errorf("problem %q: want pos (default) and an \"is not set\" message", p)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got problems about %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseKeepsDefaultsOfUnsetKeys(t *testing.T) {
	src := "data_dir = \"/d\"\nlog {\n  level = \"debug\"\n}\nraft {\n  join = [\"a:1\"]\n}\nnode_id = null\n"
	s, err := ParseServer("s.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultServer()
	want.DataDir = "/d"
	want.Log.Level = "debug"
	want.Raft.Join = []string{"a:1"}
	s.src, want.src = sources{}, sources{}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("got  %+v\nwant %+v", *s, want)
	}
}

func TestParseIsStrict(t *testing.T) {
	tests := []struct {
		name     string
		give     string
		wantPos  string
		wantPath string
		wantMsg  string
	}{
		{"unknown top-level key", "data_dir = \"/d\"\ndatadir = \"/x\"\n", "f.hcl:2", "datadir", `did you mean "data_dir"?`},
		{"unknown key in block", "raft {\n  bnd = \"x\"\n}\n", "f.hcl:2", "raft.bnd", `did you mean "bind"?`},
		{"unknown block", "\n\nraftt {\n}\n", "f.hcl:3", "raftt", `did you mean "raft"?`},
		{"key list in hint", "log {\n  colour = true\n}\n", "f.hcl:2", "log.colour", "(log takes: format, level)"},
		{"block written as attribute", "log = {}\n", "f.hcl:1", "log", "is a block, not a setting"},
		{"attribute written as block", "node_id {\n}\n", "f.hcl:1", "node_id", "is a setting, not a block"},
		{"missing label", "api {\n  token {\n  }\n}\n", "f.hcl:2", "api.token", `write it as token "name" { ... }`},
		{"extra label", "log \"x\" {\n}\n", "f.hcl:1", "log", "takes no label"},
		{"duplicate block", "log {\n}\nlog {\n}\n", "f.hcl:3", "log", "only one log block is allowed (the first is at f.hcl:1)"},
		{"duplicate token name", "api {\n  token \"a\" {\n  }\n  token \"a\" {\n  }\n}\n", "f.hcl:4", "api.token[a]", "is defined twice (the first is at f.hcl:2)"},
		{"string for number", "raft {\n  snapshot_retain = \"three\"\n}\n", "f.hcl:2", "raft.snapshot_retain", "must be a whole number"},
		{"number for list", "raft {\n  join = 7\n}\n", "f.hcl:2", "raft.join", "must be a list of strings"},
		{"negative uint", "raft {\n  snapshot_threshold = -1\n}\n", "f.hcl:2", "raft.snapshot_threshold", "0 or more"},
		{"variable reference", "data_dir = var.dir\n", "f.hcl:1", "data_dir", "is not a plain value: variables and references are not supported"},
		{"function call", "data_dir = upper(\"x\")\n", "f.hcl:1", "data_dir", "is not a plain value: function calls are not supported"},
		{"arithmetic", "raft {\n  snapshot_retain = 1 + 2\n}\n", "f.hcl:2", "raft.snapshot_retain", "expressions are not supported"},
		{"template", "data_dir = \"/var/${1}\"\n", "f.hcl:1", "data_dir", "string templates"},
		{"template directive", "data_dir = \"%{ if true }x%{ endif }\"\n", "f.hcl:1", "data_dir", "string templates"},
		{"conditional", "data_dir = true ? \"a\" : \"b\"\n", "f.hcl:1", "data_dir", "expressions are not supported"},
		{"for expression", "raft {\n  join = [for s in [\"a:1\"] : s]\n}\n", "f.hcl:2", "raft.join", "expressions are not supported"},
		{"huge number", "data_dir = 1e9999999\n", "f.hcl:1", "data_dir", "the number is too large or too small"},
		{"tiny number", "raft {\n  snapshot_retain = 1e-9999999\n}\n", "f.hcl:2", "raft.snapshot_retain", "the number is too large or too small"},
		{"expression inside a multi-line list", "raft {\n  join = [\n    \"a:1\",\n    var.peer,\n  ]\n}\n", "f.hcl:4", "raft.join", "variables and references are not supported"},
		{"object", "data_dir = {a = 1}\n", "f.hcl:1", "data_dir", "expressions are not supported"},
		{"syntax error", "data_dir = \"/d\"\nraft {\n", "f.hcl:2", "", "Unclosed configuration block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseServer("f.hcl", []byte(tt.give))
			if s != nil {
				t.Errorf("got a config despite problems")
			}
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			p := ps[0]
			if p.Pos != tt.wantPos || p.Path != tt.wantPath || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %q\nwant pos %q, path %q, message containing %q", p, tt.wantPos, tt.wantPath, tt.wantMsg)
			}
		})
	}
}

func TestParseAcceptsPlainValues(t *testing.T) {
	src := "data_dir = <<EOT\n/var/lib/cycler\nEOT\nnode_id = \"cyc-$${1}\"\nraft {\n  snapshot_retain = -1\n  snapshot_threshold = 1e3\n  join = []\n}\n"
	s, err := ParseServer("f.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{s.DataDir, s.NodeID, s.Raft.SnapshotRetain, s.Raft.SnapshotThreshold, len(s.Raft.Join)}
	want := []any{"/var/lib/cycler\n", "cyc-${1}", -1, uint64(1000), 0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func TestLoadReportsEveryMistakeWithItsLine(t *testing.T) {
	path := writeFile(t, "server.hcl", `node_id  = "cyc-1"
data_dir = "/var/lib/cycler"

log {
  level = "verbose"
}

raft {
  bind    = "127.0.0.1:99999"
  joinn   = ["10.0.0.2:7400"]
}
`+tokenHCL)
	_, err := LoadServer(path)
	ps := problemsOf(t, err)
	want := []string{
		path + `:5: log.level: "verbose" is not allowed; use one of: debug, info, warn, error`,
		path + `:9: raft.bind: "127.0.0.1:99999" is not a valid host:port; the port must be 1-65535`,
		path + `:10: raft.joinn: is not a known setting; did you mean "join"? ` +
			`(raft takes: advertise, bind, client_token, discover, join, snapshot_retain, snapshot_threshold, timing)`,
	}
	if got := strings.Split(ps.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantLines := []int{5, 9, 10}
	for i, p := range ps {
		if p.Line != wantLines[i] {
			t.Errorf("problem %d: line %d, want %d", i, p.Line, wantLines[i])
		}
	}
}

func TestLoadDoesNotRepeatAValueThatFailedToDecode(t *testing.T) {
	path := writeFile(t, "agent.hcl", "data_dir = \"/d\"\nservers = [\"s:1\"]\nserver_token = \"0123456789abcdef\"\n"+
		"service = \"web\"\npool = \"blue\"\nport = \"http\"\n"+tokenHCL)
	_, err := LoadAgent(path)
	wantOneProblem(t, err, "port", "must be a whole number")
}

func TestLoadErrors(t *testing.T) {
	big := writeFile(t, "big.hcl", strings.Repeat("#", maxFileBytes+1))
	tests := []struct {
		name string
		give string
		want string
	}{
		{"missing file", filepath.Join(t.TempDir(), "nope.hcl"), "no such file"},
		{"too large", big, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadLB(tt.give)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSecretsAreNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-TOKEN-VALUE-xyz"
	const short = "tiny-s3cr3t"
	tests := []struct {
		name string
		role string
		give string
	}{
		{"short api token", RoleServer, `api { 
  token "a" { 
    secret = "` + short + `"
    scopes = ["operator"]
  }
}`},
		{"api token secret twice", RoleServer, `api {
  token "a" {
    secret = "` + secret + `"
    scopes = ["operator"]
  }
  token "b" {
    secret = "` + secret + `"
    scopes = ["agent"]
  }
}`},
		{"secret and secret_file", RoleServer, `api {
  token "a" {
    secret      = "` + secret + `"
    secret_file = "/x"
    scopes      = ["operator"]
  }
}`},
		{"secret of the wrong type", RoleServer, `api {
  token "a" {
    secret = ["` + secret + `"]
    scopes = ["operator"]
  }
}`},
		{"short client token", RoleServer, `raft {
  client_token = "` + short + `"
}` + tokenHCL},
		{"consul token of the wrong type", RoleAgent, `consul {
  token = {v = "` + secret + `"}
}` + tokenHCL},
		{"short server token", RoleAgent, `server_token = "` + short + `"` + tokenHCL},
		{"short nginx admin secret", RoleLB, `driver "nginx" {
  admin_secret = "` + short + `"
}` + tokenHCL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.role+".hcl", tt.give+"\n")
			err := Check(tt.role, path)
			if err == nil {
				t.Fatal("want problems, got none")
			}
			out := err.Error()
			if strings.Contains(out, secret) || strings.Contains(out, short) {
				t.Errorf("a secret leaked into the problems:\n%s", out)
			}
			if !strings.Contains(out, "(redacted, ") && !strings.Contains(out, "cannot be used together") {
				t.Errorf("want a redacted value in:\n%s", out)
			}
		})
	}
}

func TestConsulResolvedToken(t *testing.T) {
	tests := []struct {
		name string
		give string
		env  string
		want string
	}{
		{"config wins", "from-config", "from-env", "from-config"},
		{"env fallback", "", "from-env", "from-env"},
		{"neither", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CONSUL_HTTP_TOKEN", tt.env)
			if got := (Consul{Token: tt.give}).ResolvedToken(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPositionsForDefaultsAndFlags(t *testing.T) {
	s, err := ParseServer("s.hcl", []byte("node_id = \"n1\"\napi {\n  listen = \"127.0.0.1:7400\"\n"+
		"  token \"ops\" {\n    secret = \"0123456789abcdef\"\n    scopes = [\"operator\"]\n  }\n}\n"+
		"log {\n  level = \"\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.API.Listen = "127.0.0.1:0" // as a flag would
	s.SetFromFlag("api.listen")
	s.Raft.Timing = "slow" // changed in code: the file never set it
	// data_dir is missing from the file: point at the file.
	// log.level is set to "" in the file (line 10): point at its line.
	ps := problemsOf(t, s.Validate())
	var got []string
	for _, p := range ps {
		got = append(got, p.Pos+" "+p.Path)
	}
	want := []string{"s.hcl data_dir", "(flag) api.listen", "(default) raft.timing", "s.hcl:10 log.level"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLoadOverridesWinOverTheFile(t *testing.T) {
	path := writeFile(t, "agent.hcl", "data_dir = \"/d\"\nservers = [\"s:1\"]\nserver_token = \"0123456789abcdef\"\n"+
		"service = \"web\"\nport = \"http\"\n"+tokenHCL)
	tests := []struct {
		name string
		give func(a *Agent)
		want string
	}{
		{"flags fill and fix the file", func(a *Agent) {
			a.Pool, a.Port = "green", 8080
			a.SetFromFlag("pool")
			a.SetFromFlag("port")
		}, ""},
		{"a bad flag value says (flag)", func(a *Agent) {
			a.Pool, a.Port = "red", 8080
			a.SetFromFlag("pool")
			a.SetFromFlag("port")
		}, `(flag): pool: "red" is not allowed; use one of: blue, green`},
		{"without flags the file's problems stand", func(a *Agent) {},
			path + ": pool: is not set; set the pool of this host: \"blue\" or \"green\"\n" +
				path + ":5: port: \"http\" must be a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := LoadAgent(path, tt.give)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want || (err == nil) != (a != nil) {
				t.Errorf("got config %v, error:\n%s\nwant error:\n%s", a != nil, got, tt.want)
			}
		})
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		name string
		give Problem
		want string
	}{
		{"full", Problem{Pos: "a.hcl:3", Path: "port", Value: "0", Msg: "is bad"}, "a.hcl:3: port: 0 is bad"},
		{"no value", Problem{Pos: "a.hcl", Path: "port", Msg: "is not set"}, "a.hcl: port: is not set"},
		{"no path", Problem{Pos: "a.hcl:1", Msg: "syntax"}, "a.hcl:1: syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.secret")
	shortFile := filepath.Join(dir, "short.secret")
	if err := os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shortFile, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "data_dir = \"/d\"\nservers = [\"s:1\"]\nservice = \"web\"\npool = \"green\"\nport = 80\n"
	goodToken := "server_token_file = \"" + good + "\"\n"
	tests := []struct {
		name     string
		give     string
		wantPath string
		wantMsg  string
	}{
		{"short secret file", base + "server_token_file = \"" + shortFile + "\"\n" + tokenHCL, "server_token_file", "holds a secret of 3 chars"},
		{"missing secret file", base + "server_token_file = \"" + filepath.Join(dir, "nope") + "\"\n" + tokenHCL, "server_token_file", "no such file"},
		{"directory as secret file", base + "server_token_file = \"" + dir + "\"\n" + tokenHCL, "server_token_file", "is not a regular file"},
		{"missing restart program", base + goodToken + "app {\n  restart_command = [\"/nonexistent/restart\"]\n}\n" + tokenHCL,
			"app.restart_command[0]", "is not an installed program"},
		{"no api token", base + goodToken, "api.token", `is not set; add at least one token "<name>"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(RoleAgent, writeFile(t, "agent.hcl", tt.give))
			wantOneProblem(t, err, tt.wantPath, tt.wantMsg)
		})
	}
	t.Run("good", func(t *testing.T) {
		if err := Check(RoleAgent, writeFile(t, "agent.hcl", base+goodToken+tokenHCL)); err != nil {
			t.Errorf("got %v", err)
		}
	})
	t.Run("unknown role", func(t *testing.T) {
		err := Check("proxy", writeFile(t, "x.hcl", ""))
		if !errors.Is(err, ErrUnknownRole) || !strings.Contains(err.Error(), `"proxy"; use server, agent or lb`) {
			t.Errorf("got %v, want ErrUnknownRole naming the roles", err)
		}
	})
}

func TestResolvedSecrets(t *testing.T) {
	file := writeFile(t, "secret", "  abcdefghijklmnopqrstuvwxyz\n")
	short := writeFile(t, "short", "abc")
	tests := []struct {
		name    string
		give    func() (string, error)
		want    string
		wantErr string
	}{
		{"token inline", Token{Secret: "inline-secret-0123"}.ResolvedSecret, "inline-secret-0123", ""},
		{"token file trimmed", Token{SecretFile: file}.ResolvedSecret, "abcdefghijklmnopqrstuvwxyz", ""},
		{"token file too short", Token{Name: "t", SecretFile: short}.ResolvedSecret, "", "holds a secret of 3 chars"},
		{"agent server token file", (&Agent{ServerTokenFile: file}).ResolvedServerToken, "abcdefghijklmnopqrstuvwxyz", ""},
		{"nginx admin secret file", Nginx{AdminSecretFile: file}.ResolvedAdminSecret, "abcdefghijklmnopqrstuvwxyz", ""},
		{"nginx no admin secret", Nginx{}.ResolvedAdminSecret, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give()
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDurationHelpers(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration
		want time.Duration
	}{
		{"stop timeout set", App{StopTimeout: "1m30s"}.StopTimeoutDuration(), 90 * time.Second},
		{"stop timeout invalid falls back", App{StopTimeout: "soon"}.StopTimeoutDuration(), 10 * time.Second},
		{"health timeout default", DefaultAgent().App.HealthTimeoutDuration(), 30 * time.Second},
		{"health timeout negative falls back", App{HealthTimeout: "-1s"}.HealthTimeoutDuration(), 30 * time.Second},
		{"reload timeout", Nginx{ReloadTimeout: "250ms"}.ReloadTimeoutDuration(), 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.give != tt.want {
				t.Errorf("got %v, want %v", tt.give, tt.want)
			}
		})
	}
}

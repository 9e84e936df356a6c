package config

import (
	"errors"
	"strings"
	"testing"
)

func TestServerRules(t *testing.T) {
	tok := func(name, secret string, scopes ...string) Token {
		return Token{Name: name, Secret: secret, Scopes: scopes}
	}
	const sec = "0123456789abcdef"
	tests := []struct {
		name     string
		give     func(s *Server)
		wantPath string
		wantMsg  string
	}{
		{"node_id missing", func(s *Server) { s.NodeID = "" }, "node_id", "is not set"},
		{"node_id charset", func(s *Server) { s.NodeID = "cyc 1" }, "node_id", "use 1-128 letters"},
		{"data_dir missing", func(s *Server) { s.DataDir = "" }, "data_dir", "is not set"},
		{"log level", func(s *Server) { s.Log.Level = "trace" }, "log.level", "use one of: debug, info, warn, error"},
		{"log format", func(s *Server) { s.Log.Format = "text" }, "log.format", "use one of: json, console"},
		{"api listen no port", func(s *Server) { s.API.Listen = "127.0.0.1" }, "api.listen", "write it as host:port"},
		{"api listen port 0", func(s *Server) { s.API.Listen = "127.0.0.1:0" }, "api.listen", "the port must be 1-65535"},
		{"api listen named port", func(s *Server) { s.API.Listen = "127.0.0.1:http" }, "api.listen", "the port must be 1-65535"},
		{"api listen bad host", func(s *Server) { s.API.Listen = "bad_host!:80" }, "api.listen", "an IP address or a DNS name"},
		{"api max body", func(s *Server) { s.API.MaxBodyBytes = 0 }, "api.max_body_bytes", "the minimum is 1"},
		{"api tls no cert", func(s *Server) { s.API.TLS = &TLS{KeyFile: "/k"} }, "api.tls.cert_file", "is not set"},
		{"api tls no key", func(s *Server) { s.API.TLS = &TLS{CertFile: "/c"} }, "api.tls.key_file", "is not set"},
		{"token without secret", func(s *Server) { s.API.Tokens = []Token{tok("ops", "", "operator")} },
			"api.token[ops].secret", "set api.token[ops].secret or api.token[ops].secret_file"},
		{"token with both secrets", func(s *Server) {
			s.API.Tokens = []Token{{Name: "ops", Secret: sec, SecretFile: "/f", Scopes: []string{"operator"}}}
		}, "api.token[ops].secret_file", "cannot be used together with api.token[ops].secret"},
		{"token secret short", func(s *Server) { s.API.Tokens = []Token{tok("ops", "short", "operator")} },
			"api.token[ops].secret", "at least 16 chars"},
		{"token name", func(s *Server) { s.API.Tokens = []Token{tok("o ps", sec, "operator")} }, "api.token[o ps]", "token names use"},
		{"token name twice", func(s *Server) {
			s.API.Tokens = []Token{tok("ops", sec, "operator"), tok("ops", sec+"x", "agent")}
		}, "api.token[ops]", "is used by two token blocks"},
		{"token secret reused", func(s *Server) {
			s.API.Tokens = []Token{tok("ops", sec, "operator"), tok("fleet", sec, "agent")}
		}, "api.token[fleet].secret", `the same as the secret of token "ops"`},
		{"token no scopes", func(s *Server) { s.API.Tokens = []Token{tok("ops", sec)} }, "api.token[ops].scopes", "is not set"},
		{"token bad scope", func(s *Server) { s.API.Tokens = []Token{tok("ops", sec, "admin")} }, "api.token[ops].scopes[0]", "use one of: operator, agent"},
		{"token scope twice", func(s *Server) { s.API.Tokens = []Token{tok("ops", sec, "agent", "agent")} }, "api.token[ops].scopes[1]", "is listed twice"},
		{"consul address", func(s *Server) { s.Consul.Address = "consul" }, "consul.address", "write it as host:port"},
		{"consul address unspecified", func(s *Server) { s.Consul.Address = "0.0.0.0:8500" }, "consul.address", "not an address others can connect to"},
		{"consul scheme", func(s *Server) { s.Consul.Scheme = "grpc" }, "consul.scheme", "use one of: http, https"},
		{"consul datacenter", func(s *Server) { s.Consul.Datacenter = "dc 1" }, "consul.datacenter", "use 1-64 letters"},
		{"consul tls with http", func(s *Server) { s.Consul.TLS = &ConsulTLS{CAFile: "/ca"} }, "consul.tls", `set scheme = "https"`},
		{"consul tls without ca", func(s *Server) { s.Consul.Scheme, s.Consul.TLS = "https", &ConsulTLS{} }, "consul.tls.ca_file", "is not set"},
		{"raft bind port", func(s *Server) { s.Raft.Bind = "127.0.0.1:99999" }, "raft.bind", "the port must be 1-65535"},
		{"raft bind everywhere needs advertise", func(s *Server) { s.Raft.Bind = "0.0.0.0:7500" }, "raft.advertise", "listens on every interface"},
		{"raft bind same as api", func(s *Server) { s.Raft.Bind = "127.0.0.1:7400" }, "raft.bind", `same port as api.listen "127.0.0.1:7400"`},
		{"raft advertise unspecified", func(s *Server) { s.Raft.Advertise = "0.0.0.0:7500" }, "raft.advertise", "not an address others can connect to"},
		{"raft advertise ipv6 unspecified", func(s *Server) { s.Raft.Advertise = "[::]:7500" }, "raft.advertise", "not an address others can connect to"},
		{"raft join bad", func(s *Server) { s.Raft.Join = []string{"10.0.0.2:7400", "10.0.0.3"} }, "raft.join[1]", "write it as host:port"},
		{"raft join scheme", func(s *Server) { s.Raft.Join = []string{"ftp://10.0.0.2:7400"} }, "raft.join[0]", "use http:// or https://"},
		{"raft join path", func(s *Server) { s.Raft.Join = []string{"https://10.0.0.2:7400/v1"} }, "raft.join[0]", "only a scheme, a host and a port"},
		{"raft join url port", func(s *Server) { s.Raft.Join = []string{"http://10.0.0.2:0"} }, "raft.join[0]", "the port must be 1-65535"},
		{"raft join twice", func(s *Server) { s.Raft.Join = []string{"a:1", "a:1"} }, "raft.join[1]", "is listed twice"},
		{"raft timing", func(s *Server) { s.Raft.Timing = "slow" }, "raft.timing", "use one of: production, fast"},
		{"raft snapshot threshold", func(s *Server) { s.Raft.SnapshotThreshold = 0 }, "raft.snapshot_threshold", "the minimum is 1"},
		{"raft snapshot retain", func(s *Server) { s.Raft.SnapshotRetain = 0 }, "raft.snapshot_retain", "the minimum is 1"},
		{"raft client token short", func(s *Server) { s.Raft.ClientToken = "short" }, "raft.client_token", "at least 16 chars"},
		{"packages keep 0", func(s *Server) { s.Packages.Keep = 0 }, "packages.keep", "the minimum is 1"},
		{"packages keep negative", func(s *Server) { s.Packages.Keep = -3 }, "packages.keep", "the minimum is 1"},
		{"packages max upload 0", func(s *Server) { s.Packages.MaxUploadBytes = 0 }, "packages.max_upload_bytes", "the minimum is 1"},
		{"packages dir NUL", func(s *Server) { s.Packages.Dir = "/var/lib/cycler\x00pkgs" }, "packages.dir", "contains a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServer()
			tt.give(&s)
			wantOneProblem(t, s.Validate(), tt.wantPath, tt.wantMsg)
		})
	}
}

func TestServerAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name string
		give func(s *Server)
	}{
		{"listen on every interface", func(s *Server) { s.API.Listen = ":7400" }},
		{"ipv6 listen", func(s *Server) { s.API.Listen = "[::1]:7400" }},
		{"bind everywhere with advertise", func(s *Server) { s.Raft.Bind, s.Raft.Advertise = "0.0.0.0:7500", "cyc-1.internal:7500" }},
		{"join urls", func(s *Server) {
			s.Raft.Join = []string{"https://cyc-2.internal:7400", "http://10.0.0.3", "10.0.0.4:7400"}
		}},
		{"fast timing", func(s *Server) { s.Raft.Timing = "fast" }},
		{"tls and consul https", func(s *Server) {
			s.API.TLS = &TLS{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca"}
			s.Consul.Scheme, s.Consul.TLS = "https", &ConsulTLS{CAFile: "/ca"}
		}},
		{"tokens", func(s *Server) {
			s.API.Tokens = []Token{
				{Name: "ops", Secret: "0123456789abcdef", Scopes: []string{"operator", "agent"}},
				{Name: "fleet", SecretFile: "/etc/cycler/fleet", Scopes: []string{"agent"}},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServer()
			tt.give(&s)
			if err := s.Validate(); err != nil {
				t.Errorf("got problems:\n%v", err)
			}
		})
	}
}

func TestServerResolvedClientToken(t *testing.T) {
	file := writeFile(t, "fleet", "fleet-secret-0123456789\n")
	tests := []struct {
		name    string
		give    func(s *Server)
		scope   string
		want    string
		wantErr error
	}{
		{"client_token wins", func(s *Server) {
			s.Raft.ClientToken = "client-secret-0123"
			s.API.Tokens = []Token{{Name: "ops", Secret: "ops-secret-0123456", Scopes: []string{"operator"}}}
		}, ScopeOperator, "client-secret-0123", nil},
		{"first token with scope", func(s *Server) {
			s.API.Tokens = []Token{
				{Name: "ops", Secret: "ops-secret-0123456", Scopes: []string{"operator"}},
				{Name: "fleet", SecretFile: file, Scopes: []string{"agent"}},
			}
		}, ScopeAgent, "fleet-secret-0123456789", nil},
		{"no token with the scope", func(s *Server) {
			s.API.Tokens = []Token{{Name: "fleet", Secret: "fleet-secret-0123456", Scopes: []string{"agent"}}}
		}, ScopeOperator, "", ErrNoClientToken},
		{"no tokens at all", func(s *Server) { s.API.Tokens = nil }, ScopeOperator, "", ErrNoClientToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServer()
			tt.give(&s)
			got, err := s.ResolvedClientToken(tt.scope)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("got %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestServerPackages(t *testing.T) {
	tests := []struct {
		name       string
		give       string
		wantDir    string
		wantKeep   int
		wantMaxUpl int64
	}{
		{name: "defaults", give: "", wantDir: "/var/lib/cycler/packages", wantKeep: 5, wantMaxUpl: 1 << 30},
		{name: "empty block keeps the defaults", give: "packages {}\n", wantDir: "/var/lib/cycler/packages", wantKeep: 5, wantMaxUpl: 1 << 30},
		{name: "every key", give: "packages {\n  dir = \"/srv/pkgs\"\n  keep = 2\n  max_upload_bytes = 1048576\n}\n",
			wantDir: "/srv/pkgs", wantKeep: 2, wantMaxUpl: 1 << 20},
		{name: "only keep", give: "packages {\n  keep = 9\n}\n", wantDir: "/var/lib/cycler/packages", wantKeep: 9, wantMaxUpl: 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "node_id = \"cyc-1\"\ndata_dir = \"/var/lib/cycler\"\napi {\n  token \"ops\" {\n    secret = \"0123456789abcdef\"\n    scopes = [\"operator\"]\n  }\n}\n" + tt.give
			s, err := ParseServer("server.hcl", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := s.PackagesDir(); got != tt.wantDir {
				t.Errorf("PackagesDir = %q, want %q", got, tt.wantDir)
			}
			if s.Packages.Keep != tt.wantKeep || s.Packages.MaxUploadBytes != tt.wantMaxUpl {
				t.Errorf("keep %d, max_upload_bytes %d; want %d, %d", s.Packages.Keep, s.Packages.MaxUploadBytes, tt.wantKeep, tt.wantMaxUpl)
			}
		})
	}
}

func TestServerPackagesUnknownKey(t *testing.T) {
	src := "node_id = \"cyc-1\"\ndata_dir = \"/d\"\npackages {\n  kepe = 3\n}\n"
	_, err := ParseServer("server.hcl", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "packages.kepe") {
		t.Fatalf("err = %v, want a problem naming packages.kepe", err)
	}
}

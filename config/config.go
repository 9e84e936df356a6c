// Package config loads and validates the HCL configuration files of the
// three cyclerd roles: server, agent and lb. There is one file per role.
//
// Loading is strict: an unknown key, a block in the wrong place or a value
// of the wrong type is a problem, reported with its file and line. Keys the
// file leaves out keep the role's defaults (DefaultServer, DefaultAgent,
// DefaultLB). Validate reports every problem at once, each with where the
// value came from (file:line, "(default)" or "(flag)"), the key path, the
// value (secrets are never printed) and what is allowed.
//
// A typical caller applies its flags while loading, so they override the
// file and every problem is reported in one go:
//
//	cfg, err := config.LoadServer(path, func(c *config.Server) {
//		if *listen != "" {
//			c.API.Listen = *listen
//			c.SetFromFlag("api.listen")
//		}
//	})
//	if err != nil {
//		return err // a config.Problems: one "file:line: key: value msg" per line
//	}
package config

import (
	"fmt"
	"os"
	"regexp"
)

// Token scopes. Operator tokens are for people and CI (cyclerctl); agent
// tokens are for cyclerd agents and load balancers.
const (
	// ScopeOperator allows the operator API: deploys, rollbacks, status.
	ScopeOperator = "operator"
	// ScopeAgent allows the API that agents and LBs call.
	ScopeAgent = "agent"
)

// consulTokenEnv is the variable Consul's own tools read the ACL token from.
const consulTokenEnv = "CONSUL_HTTP_TOKEN"

// datacenterRE matches a Consul datacenter name.
var datacenterRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Log configures the daemon's log output.
type Log struct {
	// Level is the lowest level written: debug, info, warn or error.
	Level string `hcl:"level,optional"`
	// Format is json (for log shippers) or console (for people).
	Format string `hcl:"format,optional"`
}

// API configures the daemon's HTTP API listener and who may call it.
type API struct {
	// Listen is the "host:port" the API listens on. An empty host or
	// 0.0.0.0 listens on every interface.
	Listen string `hcl:"listen,optional"`
	// TLS turns on HTTPS when set.
	TLS *TLS `hcl:"tls,block"`
	// MaxBodyBytes caps the size of a request body.
	MaxBodyBytes int64 `hcl:"max_body_bytes,optional"`
	// Tokens are the bearer tokens the API accepts.
	Tokens []Token `hcl:"token,block"`
}

// TLS holds the files for serving HTTPS.
type TLS struct {
	// CertFile is the PEM certificate (chain) the API presents.
	CertFile string `hcl:"cert_file,optional"`
	// KeyFile is the PEM private key for CertFile.
	KeyFile string `hcl:"key_file,optional"`
	// ClientCAFile, when set, makes the API require client certificates
	// signed by one of the CAs in this PEM file.
	ClientCAFile string `hcl:"client_ca_file,optional"`
}

// Token is one bearer token the API accepts: token "name" { ... }.
type Token struct {
	// Name identifies the token in audit records; it is never a secret.
	Name string `hcl:"name,label"`
	// Secret is the bearer secret itself. Set this or SecretFile.
	Secret string `hcl:"secret,optional" redact:"true"`
	// SecretFile is a file holding the secret (surrounding white space is
	// ignored). Set this or Secret.
	SecretFile string `hcl:"secret_file,optional"`
	// Scopes lists what the token may do: "operator", "agent" or both.
	Scopes []string `hcl:"scopes,optional"`
}

// HasScope reports whether the token carries scope.
func (t Token) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// ResolvedSecret returns the token's secret, reading SecretFile when the
// secret is not given inline.
func (t Token) ResolvedSecret() (string, error) {
	if t.Secret != "" {
		return t.Secret, nil
	}
	s, err := readSecretFile(t.SecretFile)
	if err != nil {
		return "", fmt.Errorf("config: token %q: %w", t.Name, err)
	}
	return s, nil
}

// Consul configures how the daemon reaches its local Consul agent.
type Consul struct {
	// Address is the Consul agent's HTTP "host:port".
	Address string `hcl:"address,optional"`
	// Scheme is http or https.
	Scheme string `hcl:"scheme,optional"`
	// Token is the Consul ACL token. When empty, the CONSUL_HTTP_TOKEN
	// environment variable is used, as Consul's own tools do.
	Token string `hcl:"token,optional" redact:"true"`
	// Datacenter is the Consul datacenter; empty means the agent's own.
	Datacenter string `hcl:"datacenter,optional"`
	// TLS sets the CA that signs Consul's certificate, for scheme https.
	TLS *ConsulTLS `hcl:"tls,block"`
}

// ConsulTLS configures TLS toward Consul.
type ConsulTLS struct {
	// CAFile is a PEM file with the CA certificates to trust for Consul.
	CAFile string `hcl:"ca_file,optional"`
}

// ResolvedToken returns the Consul ACL token: Token when set, otherwise
// the value of the CONSUL_HTTP_TOKEN environment variable (possibly "").
func (c Consul) ResolvedToken() string {
	if c.Token != "" {
		return c.Token
	}
	return os.Getenv(consulTokenEnv)
}

// defaultLog is the log block every role starts from.
func defaultLog() Log {
	return Log{Level: "info", Format: "json"}
}

// defaultAPI is the api block every role starts from, listening on listen.
func defaultAPI(listen string, maxBody int64) API {
	return API{Listen: listen, MaxBodyBytes: maxBody}
}

// defaultConsul is the consul block every role starts from: the local agent.
func defaultConsul() Consul {
	return Consul{Address: "127.0.0.1:8500", Scheme: "http"}
}

// hostname is the default node ID. An error leaves it empty, and Validate
// then asks for node_id to be set.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// check validates the log block.
func (l Log) check(c *checker) {
	c.enum("log.level", l.Level, "debug", "info", "warn", "error")
	c.enum("log.format", l.Format, "json", "console")
}

// check validates the api block.
func (a API) check(c *checker) {
	c.hostPort("api.listen", a.Listen, addrRules{listen: true})
	c.atLeast("api.max_body_bytes", a.MaxBodyBytes, 1)
	if a.TLS != nil {
		c.required("api.tls.cert_file", a.TLS.CertFile, "HTTPS needs the certificate file (PEM)")
		c.required("api.tls.key_file", a.TLS.KeyFile, "HTTPS needs the private key file (PEM)")
		c.filePath("api.tls.cert_file", a.TLS.CertFile)
		c.filePath("api.tls.key_file", a.TLS.KeyFile)
		c.filePath("api.tls.client_ca_file", a.TLS.ClientCAFile)
	}
	if len(a.Tokens) == 0 {
		// Every listener requires a token: an API open to anyone who can
		// reach the port is never the default.
		c.missing("api.token", `add at least one token "<name>" { secret_file = "..." scopes = [...] } block; every API call must present one`)
	}
	names := make(map[string]bool, len(a.Tokens))
	secrets := make(map[string]string, len(a.Tokens))
	for _, t := range a.Tokens {
		p := labelPath("api.token", t.Name)
		c.pattern(p, t.Name, tokenNameRE, "token names use 1-64 letters, digits, '.', '_' and '-'")
		if names[t.Name] {
			c.bad(p, quote(t.Name), "is used by two token blocks; give each token its own name")
		}
		names[t.Name] = true
		if c.oneOf(p+".secret", t.Secret != "", p+".secret_file", t.SecretFile != "", true, "every token needs a secret") && t.Secret != "" {
			c.secret(p+".secret", t.Secret)
			if other, dup := secrets[t.Secret]; dup {
				c.bad(p+".secret", redact(t.Secret), fmt.Sprintf("is the same as the secret of token %q; give every token its own secret", other))
			}
			secrets[t.Secret] = t.Name
		}
		c.filePath(p+".secret_file", t.SecretFile)
		if len(t.Scopes) == 0 {
			c.missing(p+".scopes", `list what the token may do: ["operator"], ["agent"] or both`)
		}
		for i, s := range t.Scopes {
			c.enum(indexPath(p+".scopes", i), s, ScopeOperator, ScopeAgent)
		}
		c.unique(p+".scopes", t.Scopes)
	}
}

// check validates the consul block.
func (k Consul) check(c *checker) {
	c.hostPort("consul.address", k.Address, addrRules{})
	c.enum("consul.scheme", k.Scheme, "http", "https")
	if k.Datacenter != "" {
		c.pattern("consul.datacenter", k.Datacenter, datacenterRE, "use 1-64 letters, digits, '_' and '-'")
	}
	if k.TLS != nil {
		if k.Scheme != "https" {
			c.bad("consul.tls", "", fmt.Sprintf("is set but consul.scheme is %q; set scheme = \"https\" or remove the tls block", k.Scheme))
		}
		c.required("consul.tls.ca_file", k.TLS.CAFile, "name the PEM file with the CA that signs Consul's certificate")
		c.filePath("consul.tls.ca_file", k.TLS.CAFile)
	}
}

package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
)

// ErrNoClientToken is returned by Server.ResolvedClientToken when the
// configuration holds no secret to call other servers with.
var ErrNoClientToken = errors.New("no client token")

// ErrNoAgentToken is returned by Server.ResolvedAgentToken when the
// configuration holds no secret to call agents with.
var ErrNoAgentToken = errors.New("no agent token")

// Server is the configuration of `cyclerd server`, a member of the Raft
// cluster that holds all state and runs cycles.
type Server struct {
	// NodeID names this server in the Raft cluster and in Consul. It
	// defaults to the host name and must be unique within the cluster.
	NodeID string `hcl:"node_id,optional"`
	// DataDir holds the Raft log, snapshots and package blobs. Required.
	DataDir string `hcl:"data_dir,optional"`
	// Log configures log output.
	Log Log `hcl:"log,block"`
	// API configures the HTTP API (default listen 127.0.0.1:7400).
	API API `hcl:"api,block"`
	// Consul configures the local Consul agent.
	Consul Consul `hcl:"consul,block"`
	// Raft configures replication between servers.
	Raft Raft `hcl:"raft,block"`
	// Packages configures the package store.
	Packages Packages `hcl:"packages,block"`
	// AgentToken is the secret this server presents when it calls the API
	// of a cyclerd agent (inventory, install, hide). Agents accept it as
	// an agent-scope api token. Set this or AgentTokenFile; without
	// either, the host routes answer 503.
	AgentToken string `hcl:"agent_token,optional" redact:"true"`
	// AgentTokenFile is a file holding the agent token. Set this or
	// AgentToken.
	AgentTokenFile string `hcl:"agent_token_file,optional"`
	// Services configures the cycles of each service: one
	// service "NAME" { ... } block per Consul service. See Service.
	Services []Service `hcl:"service,block"`

	src sources
}

// Raft configures the server's Raft transport and cluster membership.
type Raft struct {
	// Bind is the "host:port" the Raft transport listens on.
	Bind string `hcl:"bind,optional"`
	// Advertise is the "host:port" other servers use to reach Bind. It
	// is required when Bind listens on every interface.
	Advertise string `hcl:"advertise,optional"`
	// Join lists API addresses ("host:port" or http(s) URLs) of existing
	// servers to join at start-up.
	Join []string `hcl:"join,optional"`
	// Discover finds peers through the Consul service "cyclerd".
	Discover bool `hcl:"discover,optional"`
	// Timing is "production" or "fast" (short timeouts, for tests only).
	Timing string `hcl:"timing,optional"`
	// SnapshotThreshold is how many log entries trigger a snapshot.
	SnapshotThreshold uint64 `hcl:"snapshot_threshold,optional"`
	// SnapshotRetain is how many snapshots are kept on disk.
	SnapshotRetain int `hcl:"snapshot_retain,optional"`
	// ClientToken is the secret this server presents when it calls other
	// servers (join, forwarding writes to the leader). When empty, the
	// first api token with the needed scope is used.
	ClientToken string `hcl:"client_token,optional" redact:"true"`
}

// Packages configures the server's package store: uploaded package files,
// kept on every server by sha256.
type Packages struct {
	// Dir holds the package files. Empty means <data_dir>/packages; see
	// Server.PackagesDir.
	Dir string `hcl:"dir,optional"`
	// Keep is how many packages per name garbage collection keeps, newest
	// first. The live and standby packages of every service are kept too.
	Keep int `hcl:"keep,optional"`
	// MaxUploadBytes caps the size of one package upload.
	MaxUploadBytes int64 `hcl:"max_upload_bytes,optional"`
}

// PackagesDir returns the package store's directory: packages.dir, or
// <data_dir>/packages when it is empty.
func (s *Server) PackagesDir() string {
	if s.Packages.Dir != "" {
		return s.Packages.Dir
	}
	return filepath.Join(s.DataDir, "packages")
}

// DefaultServer returns the server configuration with every default
// applied. DataDir is left empty: it has no sensible default.
func DefaultServer() Server {
	return Server{
		NodeID: hostname(),
		Log:    defaultLog(),
		API:    defaultAPI("127.0.0.1:7400", 1<<30),
		Consul: defaultConsul(),
		Raft: Raft{
			Bind:              "127.0.0.1:7500",
			Timing:            "production",
			SnapshotThreshold: 8192,
			SnapshotRetain:    3,
		},
		Packages: Packages{Keep: 5, MaxUploadBytes: 1 << 30},
	}
}

// ParseServer decodes a server configuration from src, applying defaults
// for every key src leaves out. filename is used in problem positions. It
// does not validate values; on any problem it returns nil and Problems.
func ParseServer(filename string, src []byte) (*Server, error) {
	return parseOnly[Server](RoleServer, filename, src, DefaultServer)
}

// LoadServer reads, parses and validates the server configuration file at
// path. Parse and validation problems are reported together as Problems.
//
// Each override runs after parsing and before validation; it sets a value
// from a command-line flag and calls SetFromFlag with its key, so that
// flags override the file and problems with them say "(flag)".
func LoadServer(path string, overrides ...func(*Server)) (*Server, error) {
	return loadRole[Server](RoleServer, path, DefaultServer, false, overrides...)
}

// Validate reports every problem with the configuration as Problems, or nil.
func (s *Server) Validate() error {
	return validate(s)
}

// SetFromFlag records that a command-line flag set the value at path (for
// example "api.listen"), so problems with it say "(flag)" rather than
// pointing at the file.
func (s *Server) SetFromFlag(path string) {
	s.src.setFlag(path)
}

// ResolvedClientToken returns the secret to present to other servers for a
// call needing scope: raft.client_token when set, else the secret of the
// first api token that has scope. It wraps ErrNoClientToken when there is
// neither.
func (s *Server) ResolvedClientToken(scope string) (string, error) {
	if s.Raft.ClientToken != "" {
		return s.Raft.ClientToken, nil
	}
	for _, t := range s.API.Tokens {
		if t.HasScope(scope) {
			return t.ResolvedSecret()
		}
	}
	return "", fmt.Errorf("config: calling other servers with scope %q: %w; set raft.client_token or add an api token with that scope", scope, ErrNoClientToken)
}

// ResolvedAgentToken returns the secret to present to agents: agent_token,
// or the content of agent_token_file. It wraps ErrNoAgentToken when
// neither is set.
func (s *Server) ResolvedAgentToken() (string, error) {
	if s.AgentToken != "" {
		return s.AgentToken, nil
	}
	if s.AgentTokenFile == "" {
		return "", fmt.Errorf("config: calling agents: %w; set agent_token or agent_token_file", ErrNoAgentToken)
	}
	t, err := readSecretFile(s.AgentTokenFile)
	if err != nil {
		return "", fmt.Errorf("config: agent_token_file: %w", err)
	}
	return t, nil
}

// origin implements roleConfig.
func (s *Server) origin() *sources { return &s.src }

// check implements roleConfig: it validates every field.
func (s *Server) check(c *checker) {
	if c.required("node_id", s.NodeID, "name this server, unique in the cluster (the host name could not be read)") {
		c.nodeID("node_id", s.NodeID)
	}
	if c.required("data_dir", s.DataDir, "name the directory for Raft data and package blobs, like /var/lib/cycler") {
		c.filePath("data_dir", s.DataDir)
	}
	s.Log.check(c)
	s.API.check(c)
	s.Consul.check(c)

	r := s.Raft
	if c.hostPort("raft.bind", r.Bind, addrRules{listen: true}) {
		host, _, _ := net.SplitHostPort(r.Bind)
		if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && r.Advertise == "" {
			c.missing("raft.advertise", fmt.Sprintf("raft.bind %q listens on every interface, so set the host:port other servers should dial", r.Bind))
		}
		if sameListener(r.Bind, s.API.Listen) {
			c.bad("raft.bind", quote(r.Bind), fmt.Sprintf("uses the same port as api.listen %q; give Raft its own port", s.API.Listen))
		}
	}
	if r.Advertise != "" {
		c.hostPort("raft.advertise", r.Advertise, addrRules{})
	}
	for i, j := range r.Join {
		c.serverAddr(indexPath("raft.join", i), j)
	}
	c.unique("raft.join", r.Join)
	c.enum("raft.timing", r.Timing, "production", "fast")
	if r.SnapshotThreshold < 1 {
		c.bad("raft.snapshot_threshold", "0", "is too small; the minimum is 1")
	}
	c.atLeast("raft.snapshot_retain", int64(r.SnapshotRetain), 1)
	c.filePath("packages.dir", s.Packages.Dir)
	c.atLeast("packages.keep", int64(s.Packages.Keep), 1)
	c.atLeast("packages.max_upload_bytes", s.Packages.MaxUploadBytes, 1)
	if r.ClientToken != "" {
		c.secret("raft.client_token", r.ClientToken)
	}
	if c.oneOf("agent_token", s.AgentToken != "", "agent_token_file", s.AgentTokenFile != "", false, "") && s.AgentToken != "" {
		c.secret("agent_token", s.AgentToken)
	}
	c.filePath("agent_token_file", s.AgentTokenFile)
	checkServices(c, s.Services)
}

// checkFiles implements roleConfig: it checks the files the configuration
// names exist and can be used on this host.
func (s *Server) checkFiles(c *checker) {
	s.API.checkFiles(c)
	s.Consul.checkFiles(c)
	c.secretFile("agent_token_file", s.AgentTokenFile)
}

// sameListener reports whether two listen addresses would collide: the
// same port on the same host, or on every interface.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	wildcard := func(h string) bool { ip := net.ParseIP(h); return h == "" || (ip != nil && ip.IsUnspecified()) }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

var _ roleConfig = (*Server)(nil)

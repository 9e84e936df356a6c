package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Agent is the configuration of `cyclerd agent`, which runs on each app
// server: it registers the app instance in Consul, installs packages and
// restarts the app.
type Agent struct {
	// NodeID names this host. It defaults to the host name.
	NodeID string `hcl:"node_id,optional"`
	// DataDir holds releases, downloads and the agent's state. Required.
	DataDir string `hcl:"data_dir,optional"`
	// Log configures log output.
	Log Log `hcl:"log,block"`
	// API configures the agent's HTTP API (default listen 127.0.0.1:7401).
	API API `hcl:"api,block"`
	// Consul configures the local Consul agent.
	Consul Consul `hcl:"consul,block"`
	// Servers lists API addresses ("host:port" or http(s) URLs) of cyclerd
	// servers. At least one is required; any of them will do.
	Servers []string `hcl:"servers,optional"`
	// ServerToken is the agent-scope secret for calling the servers. Set
	// this or ServerTokenFile.
	ServerToken string `hcl:"server_token,optional" redact:"true"`
	// ServerTokenFile is a file holding the server token. Set this or
	// ServerToken.
	ServerTokenFile string `hcl:"server_token_file,optional"`
	// Service is the Consul service name of the app. Required.
	Service string `hcl:"service,optional"`
	// Pool is the pool this host belongs to: "blue" or "green". Required.
	Pool string `hcl:"pool,optional"`
	// InstanceID is the Consul service instance ID. When empty it is
	// "<service>-<node_id>"; see Instance.
	InstanceID string `hcl:"instance_id,optional"`
	// Address is the IP or host name the app is reached on.
	Address string `hcl:"address,optional"`
	// Port is the app's TCP port (1-65535). Required.
	Port int `hcl:"port,optional"`
	// KeepReleases is how many old releases stay on disk (at least 2).
	// The live, standby and last-known-good releases are always kept.
	KeepReleases int `hcl:"keep_releases,optional"`
	// InstallTimeout bounds one install (download, unpack, hooks, restart
	// and health wait), as a duration string like "10m".
	InstallTimeout string `hcl:"install_timeout,optional"`
	// App configures how the app is restarted and checked.
	App App `hcl:"app,block"`

	src sources
}

// App configures how the agent restarts the application.
type App struct {
	// RestartCommand, when set, is run (as an argument list, never through
	// a shell) to restart the app, like ["systemctl", "restart", "web"].
	// When empty the agent supervises the package's start command itself.
	RestartCommand []string `hcl:"restart_command,optional"`
	// StopTimeout is how long the app gets to stop before it is killed,
	// as a duration string like "10s".
	StopTimeout string `hcl:"stop_timeout,optional"`
	// HealthTimeout is how long a restarted app gets to become healthy,
	// as a duration string like "30s".
	HealthTimeout string `hcl:"health_timeout,optional"`
	// CheckInterval is how often Consul runs the app's health check, as a
	// duration string of at least "1s" (Consul's minimum).
	CheckInterval string `hcl:"check_interval,optional"`
	// HookTimeout bounds each pre_switch and post_switch hook of a
	// package, as a duration string like "5m".
	HookTimeout string `hcl:"hook_timeout,optional"`
	// StopWithAgent makes the agent stop the app it supervises when the
	// agent itself shuts down. By default the app keeps running and the
	// next agent adopts it, so restarting or upgrading the agent costs no
	// downtime.
	StopWithAgent bool `hcl:"stop_with_agent,optional"`
}

// Default agent timeouts and intervals.
const (
	defaultStopTimeout    = 10 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultCheckInterval  = 2 * time.Second
	defaultHookTimeout    = 5 * time.Minute
	defaultInstallTimeout = 10 * time.Minute
	// minCheckInterval is the shortest interval Consul runs a check at.
	minCheckInterval = time.Second
)

// StopTimeoutDuration returns StopTimeout parsed. A value Validate would
// reject yields the default, 10s.
func (a App) StopTimeoutDuration() time.Duration {
	return parseDurationOr(a.StopTimeout, defaultStopTimeout)
}

// HealthTimeoutDuration returns HealthTimeout parsed. A value Validate
// would reject yields the default, 30s.
func (a App) HealthTimeoutDuration() time.Duration {
	return parseDurationOr(a.HealthTimeout, defaultHealthTimeout)
}

// CheckIntervalDuration returns CheckInterval parsed. A value Validate
// would reject yields the default, 2s.
func (a App) CheckIntervalDuration() time.Duration {
	d := parseDurationOr(a.CheckInterval, defaultCheckInterval)
	if d < minCheckInterval {
		return defaultCheckInterval
	}
	return d
}

// HookTimeoutDuration returns HookTimeout parsed. A value Validate would
// reject yields the default, 5m.
func (a App) HookTimeoutDuration() time.Duration {
	return parseDurationOr(a.HookTimeout, defaultHookTimeout)
}

// InstallTimeoutDuration returns InstallTimeout parsed. A value Validate
// would reject yields the default, 10m.
func (a *Agent) InstallTimeoutDuration() time.Duration {
	return parseDurationOr(a.InstallTimeout, defaultInstallTimeout)
}

// DefaultAgent returns the agent configuration with every default applied.
// DataDir, Servers, the server token, Service, Pool and Port are left
// empty: they have no sensible default.
func DefaultAgent() Agent {
	return Agent{
		NodeID:         hostname(),
		Log:            defaultLog(),
		API:            defaultAPI("127.0.0.1:7401", 1<<20),
		Consul:         defaultConsul(),
		Address:        "127.0.0.1",
		KeepReleases:   5,
		InstallTimeout: defaultInstallTimeout.String(),
		App: App{
			StopTimeout:   defaultStopTimeout.String(),
			HealthTimeout: defaultHealthTimeout.String(),
			CheckInterval: defaultCheckInterval.String(),
			HookTimeout:   defaultHookTimeout.String(),
		},
	}
}

// ParseAgent decodes an agent configuration from src, applying defaults
// for every key src leaves out. filename is used in problem positions. It
// does not validate values; on any problem it returns nil and Problems.
func ParseAgent(filename string, src []byte) (*Agent, error) {
	return parseOnly[Agent](RoleAgent, filename, src, DefaultAgent)
}

// LoadAgent reads, parses and validates the agent configuration file at
// path. Parse and validation problems are reported together as Problems.
//
// Each override runs after parsing and before validation; it sets a value
// from a command-line flag and calls SetFromFlag with its key, so that
// flags override the file and problems with them say "(flag)".
func LoadAgent(path string, overrides ...func(*Agent)) (*Agent, error) {
	return loadRole[Agent](RoleAgent, path, DefaultAgent, false, overrides...)
}

// Validate reports every problem with the configuration as Problems, or nil.
func (a *Agent) Validate() error {
	return validate(a)
}

// SetFromFlag records that a command-line flag set the value at path (for
// example "port"), so problems with it say "(flag)".
func (a *Agent) SetFromFlag(path string) {
	a.src.setFlag(path)
}

// Instance returns the Consul service instance ID: InstanceID, or
// "<service>-<node_id>" when it is empty. It is computed on each call so
// that flags overriding service or node_id are taken into account.
func (a *Agent) Instance() string {
	if a.InstanceID != "" {
		return a.InstanceID
	}
	return a.Service + "-" + a.NodeID
}

// ResolvedServerToken returns the secret for calling the servers,
// reading ServerTokenFile when the token is not given inline.
func (a *Agent) ResolvedServerToken() (string, error) {
	if a.ServerToken != "" {
		return a.ServerToken, nil
	}
	s, err := readSecretFile(a.ServerTokenFile)
	if err != nil {
		return "", fmt.Errorf("config: server_token_file: %w", err)
	}
	return s, nil
}

// origin implements roleConfig.
func (a *Agent) origin() *sources { return &a.src }

// check implements roleConfig: it validates every field.
func (a *Agent) check(c *checker) {
	if c.required("node_id", a.NodeID, "name this host (the host name could not be read)") {
		c.nodeID("node_id", a.NodeID)
	}
	if c.required("data_dir", a.DataDir, "name the directory for releases and agent state, like /var/lib/cycler-agent") {
		c.filePath("data_dir", a.DataDir)
	}
	a.Log.check(c)
	a.API.check(c)
	a.Consul.check(c)

	if len(a.Servers) == 0 {
		c.missing("servers", `list at least one cyclerd server API address, like ["10.0.0.5:7400"]`)
	}
	for i, s := range a.Servers {
		c.serverAddr(indexPath("servers", i), s)
	}
	c.unique("servers", a.Servers)
	if c.oneOf("server_token", a.ServerToken != "", "server_token_file", a.ServerTokenFile != "", true,
		"the agent needs an agent-scope token to call the servers") && a.ServerToken != "" {
		c.secret("server_token", a.ServerToken)
	}
	c.filePath("server_token_file", a.ServerTokenFile)

	if c.required("service", a.Service, "name the app's Consul service, like \"web\"") {
		c.serviceName("service", a.Service)
	}
	if c.required("pool", a.Pool, `set the pool of this host: "blue" or "green"`) {
		c.enum("pool", a.Pool, "blue", "green")
	}
	if a.InstanceID != "" {
		c.nodeID("instance_id", a.InstanceID)
	} else if serviceNameRE.MatchString(a.Service) && nodeIDRE.MatchString(a.NodeID) && !nodeIDRE.MatchString(a.Instance()) {
		// Both parts are valid, so the joined ID can only be too long.
		c.bad("instance_id", quote(a.Instance()), "(built from service and node_id) is longer than 128 chars; set instance_id")
	}
	if c.required("address", a.Address, "set the IP or host name the app is reached on") {
		if ip := net.ParseIP(a.Address); ip == nil && !validHostname(a.Address) {
			c.bad("address", quote(a.Address), "is not an IP address or a DNS name")
		} else if ip != nil && ip.IsUnspecified() {
			c.bad("address", quote(a.Address), "is not an address others can connect to; use the host's own IP address")
		}
	}
	switch {
	case a.Port == 0:
		c.missing("port", "set the app's TCP port (1-65535)")
	case a.Port < 1 || a.Port > 65535:
		c.bad("port", strconv.Itoa(a.Port), "is not a valid port; use 1-65535")
	}
	c.atLeast("keep_releases", int64(a.KeepReleases), 2)

	c.argv("app.restart_command", a.App.RestartCommand, false, "")
	c.duration("install_timeout", a.InstallTimeout)
	c.duration("app.stop_timeout", a.App.StopTimeout)
	c.duration("app.health_timeout", a.App.HealthTimeout)
	c.duration("app.hook_timeout", a.App.HookTimeout)
	if d, err := time.ParseDuration(a.App.CheckInterval); err == nil && d > 0 && d < minCheckInterval {
		c.bad("app.check_interval", quote(a.App.CheckInterval), "is shorter than Consul's minimum check interval; use \"1s\" or longer")
	} else {
		c.duration("app.check_interval", a.App.CheckInterval)
	}
}

// checkFiles implements roleConfig: it checks the files and programs the
// configuration names exist on this host.
func (a *Agent) checkFiles(c *checker) {
	a.API.checkFiles(c)
	a.Consul.checkFiles(c)
	c.secretFile("server_token_file", a.ServerTokenFile)
	if len(a.App.RestartCommand) > 0 {
		c.program(indexPath("app.restart_command", 0), a.App.RestartCommand[0])
	}
}

var _ roleConfig = (*Agent)(nil)

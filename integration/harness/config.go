package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ServerConfig is the config of one `cyclerd server`: see Render.
type ServerConfig struct {
	// NodeID is node_id; DataDir is data_dir; LogLevel is log.level.
	NodeID, DataDir, LogLevel string
	// APIAddr is the API's listen address; OperatorSecret its
	// operator-scope token "ops".
	APIAddr, OperatorSecret string
	// FleetSecret, when set, adds an agent-scope token "fleet": what the
	// agents present (blob downloads).
	FleetSecret string
	// ConsulAddr is the Consul agent's HTTP address.
	ConsulAddr string
	// RaftAddr is raft.bind. Discover finds the cluster through Consul,
	// Join through these servers' API addresses; with neither the server
	// bootstraps. Timing is raft.timing; empty for the default.
	RaftAddr string
	Discover bool
	Join     []string
	Timing   string
	// AgentToken, when set, is agent_token: what the server presents to
	// the agents.
	AgentToken string
	// Service, when set, adds a `service "<Service>" { ... }` block with
	// ServiceBlock as its body.
	Service, ServiceBlock string
}

// Render renders the server's HCL config.
func (c ServerConfig) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, `node_id  = %q
data_dir = %q
log {
  level  = %q
  format = "console"
}
api {
  listen = %q
  token "ops" {
    secret = %q
    scopes = ["operator"]
  }
`, c.NodeID, c.DataDir, c.LogLevel, c.APIAddr, c.OperatorSecret)
	if c.FleetSecret != "" {
		fmt.Fprintf(&b, "  token \"fleet\" {\n    secret = %q\n    scopes = [\"agent\"]\n  }\n", c.FleetSecret)
	}
	fmt.Fprintf(&b, "}\nconsul {\n  address = %q\n}\nraft {\n  bind = %q\n", c.ConsulAddr, c.RaftAddr)
	if c.Discover {
		b.WriteString("  discover = true\n")
	}
	if len(c.Join) > 0 {
		j, _ := json.Marshal(c.Join) // an HCL list of strings is a JSON array
		fmt.Fprintf(&b, "  join = %s\n", j)
	}
	if c.Timing != "" {
		fmt.Fprintf(&b, "  timing = %q\n", c.Timing)
	}
	b.WriteString("}\n")
	if c.AgentToken != "" {
		fmt.Fprintf(&b, "agent_token = %q\n", c.AgentToken)
	}
	if c.Service != "" {
		fmt.Fprintf(&b, "service %q {\n%s}\n", c.Service, c.ServiceBlock)
	}
	return b.String()
}

// AgentConfig is the config of one `cyclerd agent`: see Render.
type AgentConfig struct {
	// NodeID is node_id; DataDir is data_dir; LogLevel is log.level.
	NodeID, DataDir, LogLevel string
	// APIAddr is the agent API's listen address.
	APIAddr string
	// ServersSecret is the agent-scope token "servers" the servers present
	// (their agent_token).
	ServersSecret string
	// OperatorSecret, when set, adds an operator-scope token "ops", which
	// the agent API must refuse.
	OperatorSecret string
	// ConsulAddr is the Consul agent's HTTP address.
	ConsulAddr string
	// Servers are the servers' API addresses; ServerToken is what the agent
	// presents to them (blob downloads).
	Servers     []string
	ServerToken string
	// Service, Pool and Instance name the instance the agent runs.
	Service, Pool, Instance string
	// AppPort is the app's port on 127.0.0.1.
	AppPort int
}

// Render renders the agent's HCL config. Consul checks run every second,
// and the agent stops its app when it stops.
func (c AgentConfig) Render() string {
	list, _ := json.Marshal(c.Servers) // an HCL list of strings is a JSON array
	ops := ""
	if c.OperatorSecret != "" {
		ops = fmt.Sprintf("  token \"ops\" {\n    secret = %q\n    scopes = [\"operator\"]\n  }\n", c.OperatorSecret)
	}
	return fmt.Sprintf(`node_id  = %q
data_dir = %q
log {
  level  = %q
  format = "console"
}
api {
  listen = %q
  token "servers" {
    secret = %q
    scopes = ["agent"]
  }
%s}
consul {
  address = %q
}
servers      = %s
server_token = %q
service      = %q
pool         = %q
instance_id  = %q
address      = "127.0.0.1"
port         = %d
app {
  check_interval  = "1s"
  stop_timeout    = "5s"
  health_timeout  = "20s"
  stop_with_agent = true
}
`, c.NodeID, c.DataDir, c.LogLevel, c.APIAddr, c.ServersSecret, ops, c.ConsulAddr, list, c.ServerToken, c.Service, c.Pool, c.Instance, c.AppPort)
}

// LBConfig is the config of one `cyclerd lb`: see Render.
type LBConfig struct {
	// ID is lb_id; Services are the services it serves.
	ID       string
	Services []string
	// VerifyInterval is verify_interval, a Go duration ("1s").
	VerifyInterval string
	// LogLevel is log.level.
	LogLevel string
	// APIAddr is the API's listen address; OperatorSecret its
	// operator-scope token "ops".
	APIAddr, OperatorSecret string
	// ConsulAddr is the Consul agent's HTTP address.
	ConsulAddr string
	// Driver is the driver block (and any frontend blocks), as
	// NginxDriver.Render and VarnishDriver.Render return it.
	Driver string
}

// Render renders the LB's HCL config, min_live 1, around c.Driver.
func (c LBConfig) Render() string {
	quoted := make([]string, len(c.Services))
	for i, s := range c.Services {
		quoted[i] = strconv.Quote(s)
	}
	return fmt.Sprintf(`lb_id           = %q
services        = [%s]
min_live        = 1
verify_interval = %q
log {
  level  = %q
  format = "console"
}
api {
  listen = %q
  token "ops" {
    secret = %q
    scopes = ["operator"]
  }
}
consul {
  address = %q
}
%s
`, c.ID, strings.Join(quoted, ", "), c.VerifyInterval, c.LogLevel, c.APIAddr, c.OperatorSecret, c.ConsulAddr, c.Driver)
}

// NginxDriver is the driver "nginx" block of a `cyclerd lb` that writes a
// standalone nginx config under Prefix: see Render.
type NginxDriver struct {
	// Mode is "dynamic" or "reload"; Binary is the nginx binary.
	Mode, Binary string
	// Prefix is nginx's prefix; cyclerd writes its files to Prefix/cycler.
	Prefix string
	// AdminAddr and AdminSecret are the admin server's.
	AdminAddr, AdminSecret string
	// Services are the services nginx serves, each on its own address.
	Services []NginxService
}

// NginxService is one service an NginxDriver serves.
type NginxService struct {
	// Name is the service; Listen its public address (127.0.0.1:port).
	Name, Listen string
}

// Render renders the driver block, without a final newline. When running
// as root it sets user = "root", so the workers can read a prefix in a
// 0700 temp dir.
func (d NginxDriver) Render() string {
	user := ""
	if os.Geteuid() == 0 {
		user = `user = "root"`
	}
	var services strings.Builder
	for _, s := range d.Services {
		fmt.Fprintf(&services, "  service %q {\n    listen = %q\n  }\n", s.Name, s.Listen)
	}
	return fmt.Sprintf(`driver "nginx" {
  mode         = %q
  binary       = %q
  standalone   = true
  prefix       = %q
  config_dir   = %q
  admin_addr   = %q
  admin_secret = %q
  %s
%s}`, d.Mode, d.Binary, d.Prefix, filepath.Join(d.Prefix, "cycler"), d.AdminAddr, d.AdminSecret, user, services.String())
}

// VarnishDriver is the driver "varnish" block of a `cyclerd lb` driving
// varnishd V, and the frontend of Service: see Render.
type VarnishDriver struct {
	// V is the varnishd the LB drives.
	V *Varnish
	// VCLDir is where cyclerd writes its VCL; Include is the site VCL it
	// includes.
	VCLDir, Include string
	// Service is the service whose users reach it at V.URL().
	Service string
}

// Render renders the driver and frontend blocks, without a final newline.
func (d VarnishDriver) Render() string {
	return fmt.Sprintf(`driver "varnish" {
  admin_addr  = %q
  secret_file = %q
  vcl_dir     = %q
  include     = %q
}
frontend %q {
  url = %q
}`, d.V.AdminAddr, d.V.SecretFile, d.VCLDir, d.Include, d.Service, d.V.URL())
}

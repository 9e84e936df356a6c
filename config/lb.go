package config

import (
	"fmt"
	"time"
)

// Driver names.
const (
	// DriverNginx drives nginx, in dynamic (lua) or reload mode.
	DriverNginx = "nginx"
	// DriverVarnish drives varnish through varnishadm.
	DriverVarnish = "varnish"
	// DriverExec runs an external program that speaks the exec protocol.
	DriverExec = "exec"
)

// Nginx modes.
const (
	// NginxDynamic updates a lua_shared_dict through an admin location,
	// with no reload.
	NginxDynamic = "dynamic"
	// NginxReload renders an upstream include, checks it and reloads.
	NginxReload = "reload"
)

// LB is the configuration of `cyclerd lb`, which runs on each load
// balancer host and applies the live backend set through a driver.
type LB struct {
	// LBID names this load balancer in Consul KV acknowledgements. It uses
	// the same characters as a service name. Required.
	LBID string `hcl:"lb_id,optional"`
	// Log configures log output.
	Log Log `hcl:"log,block"`
	// API configures the lb's HTTP API (default listen 127.0.0.1:7402).
	API API `hcl:"api,block"`
	// Consul configures the local Consul agent.
	Consul Consul `hcl:"consul,block"`
	// Services lists the Consul services this LB routes. At least one.
	Services []string `hcl:"services,optional"`
	// MinLive is the fewest backends the LB will apply; a smaller set is
	// refused and the last good one kept.
	MinLive int `hcl:"min_live,optional"`
	// Driver selects and configures the LB driver. Exactly one driver
	// block is required.
	Driver Driver `hcl:"driver,block"`

	src sources
}

// Driver is the driver "<name>" { ... } block. Only the settings of the
// driver named by Name are used; the block's body is decoded into that
// driver's struct, so the other two keep their defaults.
type Driver struct {
	// Name is the driver: "nginx", "varnish" or "exec".
	Name string `hcl:"name,label"`
	// Nginx holds the settings of driver "nginx".
	Nginx Nginx
	// Varnish holds the settings of driver "varnish".
	Varnish Varnish
	// Exec holds the settings of driver "exec".
	Exec Exec
}

// bodyTarget implements bodyTarget: the driver's name picks the struct its
// body is decoded into.
func (d *Driver) bodyTarget() (any, bool) {
	switch d.Name {
	case DriverNginx:
		return &d.Nginx, true
	case DriverVarnish:
		return &d.Varnish, true
	case DriverExec:
		return &d.Exec, true
	}
	return nil, false
}

// Nginx configures driver "nginx".
type Nginx struct {
	// Mode is "dynamic" (no reloads; needs the lua module) or "reload".
	Mode string `hcl:"mode,optional"`
	// Binary is the nginx program, used for `nginx -t` and reloads.
	Binary string `hcl:"binary,optional"`
	// ConfigDir is where the upstream include is written in reload mode.
	ConfigDir string `hcl:"config_dir,optional"`
	// AdminAddr is the loopback "host:port" of the admin location that
	// takes and reports the backend set and generation. Required.
	AdminAddr string `hcl:"admin_addr,optional"`
	// AdminSecret protects the admin location. Set this or
	// AdminSecretFile; one is required in dynamic mode.
	AdminSecret string `hcl:"admin_secret,optional" redact:"true"`
	// AdminSecretFile is a file holding AdminSecret.
	AdminSecretFile string `hcl:"admin_secret_file,optional"`
	// ReloadTimeout bounds how long a reload may take to show the new
	// generation, as a duration string like "10s".
	ReloadTimeout string `hcl:"reload_timeout,optional"`
}

// defaultReloadTimeout is the default Nginx.ReloadTimeout.
const defaultReloadTimeout = 10 * time.Second

// ReloadTimeoutDuration returns ReloadTimeout parsed. A value Validate
// would reject yields the default, 10s.
func (n Nginx) ReloadTimeoutDuration() time.Duration {
	return parseDurationOr(n.ReloadTimeout, defaultReloadTimeout)
}

// ResolvedAdminSecret returns the admin secret, reading AdminSecretFile
// when it is not given inline. It returns "" when neither is set.
func (n Nginx) ResolvedAdminSecret() (string, error) {
	switch {
	case n.AdminSecret != "":
		return n.AdminSecret, nil
	case n.AdminSecretFile == "":
		return "", nil
	}
	s, err := readSecretFile(n.AdminSecretFile)
	if err != nil {
		return "", fmt.Errorf("config: nginx admin_secret_file: %w", err)
	}
	return s, nil
}

// Varnish configures driver "varnish".
type Varnish struct {
	// Varnishadm is the varnishadm program.
	Varnishadm string `hcl:"varnishadm,optional"`
	// AdminAddr is varnishd's management "host:port" (its -T option).
	AdminAddr string `hcl:"admin_addr,optional"`
	// SecretFile is varnishd's secret file (its -S option). Required.
	SecretFile string `hcl:"secret_file,optional"`
	// VCLDir is where generated VCL files are written.
	VCLDir string `hcl:"vcl_dir,optional"`
	// KeepVCLs is how many generated VCLs stay loaded (at least 2, so the
	// previous one is there to switch back to).
	KeepVCLs int `hcl:"keep_vcls,optional"`
}

// Exec configures driver "exec": an external program that applies the
// backend set, for load balancers cyclerd has no driver for.
type Exec struct {
	// Command is the program and its arguments, run without a shell.
	// Required.
	Command []string `hcl:"command,optional"`
}

// DefaultLB returns the lb configuration with every default applied. LBID,
// Services and the driver name are left empty; the nginx and varnish
// settings hold their defaults for when that driver is chosen.
func DefaultLB() LB {
	return LB{
		Log:     defaultLog(),
		API:     defaultAPI("127.0.0.1:7402", 1<<20),
		Consul:  defaultConsul(),
		MinLive: 1,
		Driver: Driver{
			Nginx: Nginx{
				Mode:          NginxDynamic,
				Binary:        "/usr/sbin/nginx",
				ConfigDir:     "/etc/nginx/cycler",
				ReloadTimeout: defaultReloadTimeout.String(),
			},
			Varnish: Varnish{
				Varnishadm: "/usr/bin/varnishadm",
				AdminAddr:  "127.0.0.1:6082",
				VCLDir:     "/etc/varnish/cycler",
				KeepVCLs:   2,
			},
		},
	}
}

// ParseLB decodes an lb configuration from src, applying defaults for
// every key src leaves out. filename is used in problem positions. It does
// not validate values; on any problem it returns nil and Problems.
func ParseLB(filename string, src []byte) (*LB, error) {
	return parseOnly[LB](RoleLB, filename, src, DefaultLB)
}

// LoadLB reads, parses and validates the lb configuration file at
// path. Parse and validation problems are reported together as Problems.
//
// Each override runs after parsing and before validation; it sets a value
// from a command-line flag and calls SetFromFlag with its key, so that
// flags override the file and problems with them say "(flag)".
func LoadLB(path string, overrides ...func(*LB)) (*LB, error) {
	return loadRole[LB](RoleLB, path, DefaultLB, false, overrides...)
}

// Validate reports every problem with the configuration as Problems, or nil.
func (l *LB) Validate() error {
	return validate(l)
}

// SetFromFlag records that a command-line flag set the value at path (for
// example "min_live" or "driver[nginx].admin_addr"), so problems with it
// say "(flag)".
func (l *LB) SetFromFlag(path string) {
	l.src.setFlag(path)
}

// origin implements roleConfig.
func (l *LB) origin() *sources { return &l.src }

// check implements roleConfig: it validates every field.
func (l *LB) check(c *checker) {
	if c.required("lb_id", l.LBID, "name this load balancer, like \"lb-1\"") {
		c.serviceName("lb_id", l.LBID)
	}
	l.Log.check(c)
	l.API.check(c)
	l.Consul.check(c)
	if len(l.Services) == 0 {
		c.missing("services", `list the Consul services this LB routes, like ["web"]`)
	}
	for i, s := range l.Services {
		c.serviceName(indexPath("services", i), s)
	}
	c.unique("services", l.Services)
	c.atLeast("min_live", int64(l.MinLive), 1)

	d := l.Driver
	p := labelPath("driver", d.Name)
	switch d.Name {
	case "":
		c.missing("driver", `add one driver block: driver "nginx" { ... }, driver "varnish" { ... } or driver "exec" { ... }`)
	case DriverNginx:
		d.Nginx.check(c, p)
	case DriverVarnish:
		d.Varnish.check(c, p)
	case DriverExec:
		c.argv(p+".command", d.Exec.Command, true, `give the program and its arguments, like ["/usr/local/bin/haproxy-apply", "--socket", "/run/haproxy.sock"]`)
	default:
		c.bad(p, quote(d.Name), fmt.Sprintf("is not a known driver; use one of: %s, %s, %s", DriverNginx, DriverVarnish, DriverExec))
	}
}

// check validates the nginx driver settings; p is the block path.
func (n Nginx) check(c *checker, p string) {
	c.enum(p+".mode", n.Mode, NginxDynamic, NginxReload)
	if c.required(p+".binary", n.Binary, "name the nginx program, like /usr/sbin/nginx") {
		c.filePath(p+".binary", n.Binary)
	}
	if n.Mode == NginxReload && c.required(p+".config_dir", n.ConfigDir, "reload mode writes its upstream include there") {
		c.filePath(p+".config_dir", n.ConfigDir)
	}
	if c.required(p+".admin_addr", n.AdminAddr, "set the loopback host:port of the cycler admin location in your nginx config") {
		c.hostPort(p+".admin_addr", n.AdminAddr, addrRules{loopback: true})
	}
	if c.oneOf(p+".admin_secret", n.AdminSecret != "", p+".admin_secret_file", n.AdminSecretFile != "", n.Mode == NginxDynamic,
		"dynamic mode protects the admin location with a secret") && n.AdminSecret != "" {
		c.secret(p+".admin_secret", n.AdminSecret)
	}
	c.filePath(p+".admin_secret_file", n.AdminSecretFile)
	c.duration(p+".reload_timeout", n.ReloadTimeout)
}

// check validates the varnish driver settings; p is the block path.
func (v Varnish) check(c *checker, p string) {
	if c.required(p+".varnishadm", v.Varnishadm, "name the varnishadm program, like /usr/bin/varnishadm") {
		c.filePath(p+".varnishadm", v.Varnishadm)
	}
	if c.required(p+".admin_addr", v.AdminAddr, "set varnishd's management address (its -T option), like 127.0.0.1:6082") {
		c.hostPort(p+".admin_addr", v.AdminAddr, addrRules{})
	}
	if c.required(p+".secret_file", v.SecretFile, "name varnishd's secret file (its -S option), like /etc/varnish/secret") {
		c.filePath(p+".secret_file", v.SecretFile)
	}
	if c.required(p+".vcl_dir", v.VCLDir, "name the directory for generated VCL files") {
		c.filePath(p+".vcl_dir", v.VCLDir)
	}
	c.atLeast(p+".keep_vcls", int64(v.KeepVCLs), 2)
}

// checkFiles implements roleConfig: it checks the files and programs the
// configuration names exist on this host.
func (l *LB) checkFiles(c *checker) {
	l.API.checkFiles(c)
	l.Consul.checkFiles(c)
	p := labelPath("driver", l.Driver.Name)
	switch l.Driver.Name {
	case DriverNginx:
		c.program(p+".binary", l.Driver.Nginx.Binary)
		c.secretFile(p+".admin_secret_file", l.Driver.Nginx.AdminSecretFile)
	case DriverVarnish:
		c.program(p+".varnishadm", l.Driver.Varnish.Varnishadm)
		c.readable(p+".secret_file", l.Driver.Varnish.SecretFile)
	case DriverExec:
		if len(l.Driver.Exec.Command) > 0 {
			c.program(indexPath(p+".command", 0), l.Driver.Exec.Command[0])
		}
	}
}

// Interface guards.
var (
	_ roleConfig = (*LB)(nil)
	_ bodyTarget = (*Driver)(nil)
)

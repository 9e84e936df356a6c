package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Driver names.
const (
	// DriverNginx drives nginx, in dynamic (lua) or reload mode.
	DriverNginx = "nginx"
	// DriverVarnish drives varnishd through its CLI protocol.
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
	// VerifyInterval is how often the LB's set is read back to repair drift
	// and to refresh checked_at in the ack, as a duration string like "15s".
	VerifyInterval string `hcl:"verify_interval,optional"`
	// Driver selects and configures the LB driver. Exactly one driver
	// block is required.
	Driver Driver `hcl:"driver,block"`
	// Frontends give, per service, the URL clients use to reach it through
	// this LB: one frontend "SERVICE" { url = "..." } block each, optional.
	// See FrontendURL.
	Frontends []Frontend `hcl:"frontend,block"`

	src sources
}

// Frontend is a frontend "SERVICE" { ... } block of the lb configuration.
type Frontend struct {
	// Service is the service, one of the lb's services.
	Service string `hcl:"service,label"`
	// URL is how clients reach the service through this LB:
	// http(s)://host:port with an optional path prefix. Required.
	URL string `hcl:"url,optional"`
}

// maxMetaValue is the longest value Consul accepts in service Meta, where
// cyclerd lb publishes each frontend URL.
const maxMetaValue = 512

// FrontendURL returns the URL clients use to reach service svc through
// this LB: its frontend block's url; else, for the nginx driver,
// "http://" and the service's listen address when one is set; else "".
func (l *LB) FrontendURL(svc string) string {
	for _, f := range l.Frontends {
		if f.Service == svc {
			return f.URL
		}
	}
	if l.Driver.Name == DriverNginx {
		if listen := l.Driver.Nginx.Listen(svc); listen != "" {
			return "http://" + listen
		}
	}
	return ""
}

// checkFrontends checks that every frontend block names a service of the
// lb, once, with a usable URL.
func (l *LB) checkFrontends(c *checker) {
	seen := make(map[string]bool, len(l.Frontends))
	for _, f := range l.Frontends {
		p := labelPath("frontend", f.Service)
		switch {
		case seen[f.Service]:
			c.bad(p, quote(f.Service), "is defined twice; give each service one frontend block")
			continue
		case !slices.Contains(l.Services, f.Service):
			c.bad(p, quote(f.Service), fmt.Sprintf("is not in services %s; add it there or remove this block", quoteList(l.Services)))
		}
		seen[f.Service] = true
		if c.required(p+".url", f.URL, `give the URL clients use to reach the service through this LB, like "http://10.0.0.20:80"`) {
			c.frontendURL(p+".url", f.URL)
		}
	}
}

// frontendURL checks an http(s)://host:port[/prefix] URL.
func (c *checker) frontendURL(path, v string) {
	const form = "write it as http(s)://host:port with an optional path prefix, like http://10.0.0.20:80 or https://lb-1.internal:443/web"
	u, err := url.Parse(v)
	switch {
	case len(v) > maxMetaValue:
		c.bad(path, quote(v), fmt.Sprintf("is %d chars; it is published in Consul service Meta, which allows at most %d", len(v), maxMetaValue))
	case err != nil:
		c.bad(path, quote(v), "is not a valid URL; "+form)
	case u.Scheme != "http" && u.Scheme != "https":
		c.bad(path, quote(v), "has an unsupported scheme; "+form)
	case u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		c.bad(path, quote(v), "may hold only a scheme, a host, a port and a path prefix; "+form)
	case u.Port() == "":
		c.bad(path, quote(v), "has no port; "+form)
	default:
		if msg := hostPortProblem(u.Host, addrRules{}); msg != "" {
			c.bad(path, quote(v), msg)
		}
	}
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
	// ConfigDir is where cyclerd writes its nginx files: cycler.conf (the
	// http-level include), cycler_lb.lua (dynamic) and <service>.upstream.conf
	// (reload).
	ConfigDir string `hcl:"config_dir,optional"`
	// MainConfig is the nginx.conf nginx runs with (its -c). Empty means
	// /etc/nginx/nginx.conf, or <prefix>/nginx.conf when Standalone; see
	// MainConfigPath.
	MainConfig string `hcl:"main_config,optional"`
	// Prefix is nginx's prefix directory (its -p). Required with Standalone,
	// which keeps the pid file, logs and temp files under it.
	Prefix string `hcl:"prefix,optional"`
	// Standalone makes cyclerd write MainConfig itself at start-up: a
	// complete nginx.conf that includes cycler.conf. Without it the
	// operator's nginx.conf must include <config_dir>/cycler.conf in its
	// http block.
	Standalone bool `hcl:"standalone,optional"`
	// User is the `user` directive of a standalone nginx.conf, like
	// "www-data"; empty leaves it out.
	User string `hcl:"user,optional"`
	// AdminAddr is the loopback "host:port" of the admin server that
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
	// Services gives each service in the lb's services list its public
	// listen address: one service "NAME" { listen = "..." } block each.
	Services []NginxService `hcl:"service,block"`
}

// NginxService is a service "NAME" { ... } block of driver "nginx".
type NginxService struct {
	// Name is the service, one of the lb's services.
	Name string `hcl:"name,label"`
	// Listen is the "ip:port" (or ":port" for every interface) where nginx
	// serves the service. Required.
	Listen string `hcl:"listen,optional"`
}

// Default nginx main configs.
const (
	defaultNginxMainConfig = "/etc/nginx/nginx.conf"
	standaloneMainConfig   = "nginx.conf"
)

// MainConfigPath returns MainConfig, or its default: /etc/nginx/nginx.conf,
// or <prefix>/nginx.conf when Standalone (so a standalone cyclerd never
// overwrites the system's nginx.conf unless told to).
func (n Nginx) MainConfigPath() string {
	switch {
	case n.MainConfig != "":
		return n.MainConfig
	case n.Standalone && n.Prefix != "":
		return filepath.Join(n.Prefix, standaloneMainConfig)
	}
	return defaultNginxMainConfig
}

// Listen returns the listen address of service svc, or "".
func (n Nginx) Listen(svc string) string {
	for _, s := range n.Services {
		if s.Name == svc {
			return s.Listen
		}
	}
	return ""
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

// Varnish configures driver "varnish". One varnishd fronts one service:
// the generated VCL is the whole program.
type Varnish struct {
	// AdminAddr is varnishd's management "host:port" (its -T option).
	AdminAddr string `hcl:"admin_addr,optional"`
	// SecretFile is varnishd's secret file (its -S option). Required.
	SecretFile string `hcl:"secret_file,optional"`
	// VCLDir is where generated VCL files are written; varnishd must be
	// able to read them.
	VCLDir string `hcl:"vcl_dir,optional"`
	// KeepVCLs is how many generated VCLs stay loaded, the active one
	// included (at least 1; the default 2 keeps the previous one warm).
	KeepVCLs int `hcl:"keep_vcls,optional"`
	// Include is an operator VCL file included at the end of every
	// generated VCL (caching rules and the like). Optional.
	Include string `hcl:"include,optional"`
	// BanOnSwitch starts every generation with an empty cache (the
	// generation is hashed into every object, and old objects are banned
	// after the switch), so varnish never serves an object cached from the
	// previous live pool. Default true.
	BanOnSwitch bool `hcl:"ban_on_switch,optional"`
}

// Exec configures driver "exec": an external program that applies the
// backend set, for load balancers cyclerd has no driver for.
type Exec struct {
	// Command is the program and its arguments, run without a shell.
	// Required.
	Command []string `hcl:"command,optional"`
	// Timeout bounds each run of the program, as a duration string like
	// "30s"; the program's process group is killed when it passes.
	Timeout string `hcl:"timeout,optional"`
}

// defaultExecTimeout is the default Exec.Timeout.
const defaultExecTimeout = 30 * time.Second

// TimeoutDuration returns Timeout parsed. A value Validate would reject
// yields the default, 30s.
func (e Exec) TimeoutDuration() time.Duration {
	return parseDurationOr(e.Timeout, defaultExecTimeout)
}

// DefaultLB returns the lb configuration with every default applied. LBID,
// Services and the driver name are left empty; the nginx and varnish
// settings hold their defaults for when that driver is chosen.
func DefaultLB() LB {
	return LB{
		Log:            defaultLog(),
		API:            defaultAPI("127.0.0.1:7402", 1<<20),
		Consul:         defaultConsul(),
		MinLive:        1,
		VerifyInterval: defaultVerifyInterval.String(),
		Driver: Driver{
			Nginx: Nginx{
				Mode:          NginxDynamic,
				Binary:        "/usr/sbin/nginx",
				ConfigDir:     "/etc/nginx/cycler",
				ReloadTimeout: defaultReloadTimeout.String(),
			},
			Varnish: Varnish{
				AdminAddr:   "127.0.0.1:6082",
				VCLDir:      "/etc/varnish/cycler",
				KeepVCLs:    2,
				BanOnSwitch: true,
			},
			Exec: Exec{Timeout: defaultExecTimeout.String()},
		},
	}
}

// defaultVerifyInterval is the default LB.VerifyInterval.
const defaultVerifyInterval = 15 * time.Second

// VerifyIntervalDuration returns VerifyInterval parsed. A value Validate
// would reject yields the default, 15s.
func (l *LB) VerifyIntervalDuration() time.Duration {
	return parseDurationOr(l.VerifyInterval, defaultVerifyInterval)
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
	c.duration("verify_interval", l.VerifyInterval)

	d := l.Driver
	p := labelPath("driver", d.Name)
	switch d.Name {
	case "":
		c.missing("driver", `add one driver block: driver "nginx" { ... }, driver "varnish" { ... } or driver "exec" { ... }`)
	case DriverNginx:
		d.Nginx.check(c, p, l.Services)
	case DriverVarnish:
		d.Varnish.check(c, p)
		if len(l.Services) > 1 {
			c.bad("services", quoteList(l.Services), `lists more than one service, but driver "varnish" fronts exactly one: `+
				"its VCL is the whole program. Run one varnishd and one cyclerd lb (with its own lb_id) per service")
		}
	case DriverExec:
		c.argv(p+".command", d.Exec.Command, true, `give the program and its arguments, like ["/usr/local/bin/haproxy-apply", "--socket", "/run/haproxy.sock"]`)
		c.duration(p+".timeout", d.Exec.Timeout)
	default:
		c.bad(p, quote(d.Name), fmt.Sprintf("is not a known driver; use one of: %s, %s, %s", DriverNginx, DriverVarnish, DriverExec))
	}
	l.checkFrontends(c)
}

// lbPathRE is what the nginx and varnish drivers accept for the paths they
// write into LB configs unquoted: absolute, of letters, digits and /._+-.
var lbPathRE = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)

// nginxUserRE matches the `user` directive: a user and an optional group.
var nginxUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}( [a-z_][a-z0-9_-]{0,31})?$`)

// lbPath checks a path the driver writes into an LB config; empty is
// allowed (required is checked separately).
func lbPath(c *checker, path, v string) {
	if v != "" && (!lbPathRE.MatchString(v) || filepath.Clean(v) != v) {
		c.bad(path, quote(v), "must be a clean absolute path of letters, digits and /._+- (it is written into the load balancer's config)")
	}
}

// check validates the nginx driver settings; p is the block path and
// services the lb's services, each of which needs a service block.
func (n Nginx) check(c *checker, p string, services []string) {
	c.enum(p+".mode", n.Mode, NginxDynamic, NginxReload)
	if c.required(p+".binary", n.Binary, "name the nginx program, like /usr/sbin/nginx") {
		c.filePath(p+".binary", n.Binary)
	}
	if c.required(p+".config_dir", n.ConfigDir, "cyclerd writes cycler.conf, which nginx.conf includes, there") {
		lbPath(c, p+".config_dir", n.ConfigDir)
	}
	lbPath(c, p+".main_config", n.MainConfig)
	if n.Standalone {
		c.required(p+".prefix", n.Prefix, "a standalone nginx keeps its pid file, logs and temp files under prefix")
	}
	lbPath(c, p+".prefix", n.Prefix)
	if n.User != "" && !nginxUserRE.MatchString(n.User) {
		c.bad(p+".user", quote(n.User), `is not a user name, optionally followed by a group, like "www-data" or "nginx nginx"`)
	}
	if c.required(p+".admin_addr", n.AdminAddr, "set a loopback host:port for the cycler admin server, like 127.0.0.1:8081") {
		c.hostPort(p+".admin_addr", n.AdminAddr, addrRules{loopback: true})
	}
	if c.oneOf(p+".admin_secret", n.AdminSecret != "", p+".admin_secret_file", n.AdminSecretFile != "", n.Mode == NginxDynamic,
		"dynamic mode protects the admin location with a secret") && n.AdminSecret != "" {
		c.secret(p+".admin_secret", n.AdminSecret)
	}
	c.filePath(p+".admin_secret_file", n.AdminSecretFile)
	c.duration(p+".reload_timeout", n.ReloadTimeout)
	n.checkServices(c, p, services)
}

// checkServices checks that every service has exactly one service block
// with a usable, distinct listen address, and that no block names a service
// the lb does not route.
func (n Nginx) checkServices(c *checker, p string, services []string) {
	if len(services) == 0 {
		return // reported as services; blocks cannot be matched to nothing
	}
	blocks := map[string]bool{}
	listens := map[string]string{}
	for _, s := range n.Services {
		bp := labelPath(p+".service", s.Name)
		blocks[s.Name] = true
		if !slices.Contains(services, s.Name) {
			c.bad(bp, quote(s.Name), fmt.Sprintf("is not in services %s; add it there or remove this block", quoteList(services)))
			continue
		}
		if !c.required(bp+".listen", s.Listen, `give the address nginx serves the service on, like "0.0.0.0:80"`) {
			continue
		}
		if !c.hostPort(bp+".listen", s.Listen, addrRules{listen: true}) {
			continue
		}
		host, _, _ := net.SplitHostPort(s.Listen)
		if ip, err := netip.ParseAddr(host); host != "" && (err != nil || ip.Zone() != "") {
			c.bad(bp+".listen", quote(s.Listen), `must use an IP address (or none, for every interface), like "0.0.0.0:80" or ":80"`)
			continue
		}
		if other, dup := listens[s.Listen]; dup {
			c.bad(bp+".listen", quote(s.Listen), fmt.Sprintf("is also the listen address of service %q; give each service its own", other))
			continue
		}
		listens[s.Listen] = s.Name
	}
	for _, svc := range services {
		if !blocks[svc] && serviceNameRE.MatchString(svc) {
			c.missing(labelPath(p+".service", svc), fmt.Sprintf(`nginx needs the address to serve %q on: add service %q { listen = "0.0.0.0:80" } to the driver block`, svc, svc))
		}
	}
}

// check validates the varnish driver settings; p is the block path.
func (v Varnish) check(c *checker, p string) {
	if c.required(p+".admin_addr", v.AdminAddr, "set varnishd's management address (its -T option), like 127.0.0.1:6082") {
		c.hostPort(p+".admin_addr", v.AdminAddr, addrRules{})
	}
	if c.required(p+".secret_file", v.SecretFile, "name varnishd's secret file (its -S option), like /etc/varnish/secret") {
		c.filePath(p+".secret_file", v.SecretFile)
	}
	if c.required(p+".vcl_dir", v.VCLDir, "name the directory for generated VCL files") {
		lbPath(c, p+".vcl_dir", v.VCLDir)
	}
	lbPath(c, p+".include", v.Include)
	c.atLeast(p+".keep_vcls", int64(v.KeepVCLs), 1)
}

// quoteList renders a list of strings as HCL writes it.
func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
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
		c.readable(p+".secret_file", l.Driver.Varnish.SecretFile)
		if l.Driver.Varnish.Include != "" {
			c.readable(p+".include", l.Driver.Varnish.Include)
		}
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

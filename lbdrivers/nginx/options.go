package nginx

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Mode selects how the driver switches nginx to a new backend set.
type Mode string

const (
	// ModeDynamic stores the set in a lua_shared_dict through a loopback admin
	// location; a balancer_by_lua upstream reads it. No reload, no dropped
	// keepalive connections. Needs Debian's libnginx-mod-http-lua and
	// lua-resty-core.
	ModeDynamic Mode = "dynamic"
	// ModeReload renders an upstream include, checks it with `nginx -t` and
	// reloads nginx. Works with stock nginx.
	ModeReload Mode = "reload"
)

// Defaults applied by New, Render and Bootstrap to zero Options fields.
const (
	DefaultBinary                = "/usr/sbin/nginx"
	DefaultModulesDir            = "/usr/lib/nginx/modules"
	DefaultReloadTimeout         = 10 * time.Second
	DefaultKeepalive             = 32
	DefaultWorkerShutdownTimeout = 30 * time.Second
	// luaModuleFile and ndkModuleFile are Debian's module file names.
	luaModuleFile = "ngx_http_lua_module.so"
	ndkModuleFile = "ndk_http_module.so"
	// restyCorePath is where Debian's lua-resty-core puts resty.core, which
	// the lua module requires at startup.
	restyCorePath = "/usr/share/lua/5.1/resty/core.lua"
	// minSecretLen is the shortest admin secret accepted in dynamic mode.
	minSecretLen = 16
)

// Service is one service the nginx instance fronts.
type Service struct {
	// Name is the Consul service name: 1-63 lower-case letters, digits and
	// '-', starting with a letter.
	Name string
	// Listen is the public "host:port" (or ":port") nginx serves it on.
	Listen string
}

// Options configures the driver and describes the nginx instance it feeds.
// One Options value describes the instance; each Driver applies the sets of
// the one service named by Service.
type Options struct {
	// Mode is ModeDynamic or ModeReload. Empty picks DetectMode(ModulesDir).
	Mode Mode
	// Binary is the nginx program for `nginx -t` and `nginx -s reload`.
	// Default DefaultBinary.
	Binary string
	// Prefix is nginx's prefix directory (-p). With Standalone it holds the
	// pid file, logs/ and tmp/. Empty leaves -p out.
	Prefix string
	// ConfigDir is where the driver writes its files: cycler.conf (the http
	// snippet), cycler_lb.lua (dynamic) and <service>.upstream.conf
	// (reload). Required.
	ConfigDir string
	// MainConfig is the nginx.conf that nginx runs with (-c) and that
	// includes <ConfigDir>/cycler.conf in its http block. Required.
	MainConfig string
	// Standalone makes Bootstrap write MainConfig itself: a complete
	// nginx.conf with everything under Prefix. Without it the operator's
	// MainConfig must include cycler.conf.
	Standalone bool
	// Services are every service this nginx fronts. Required by Render.
	Services []Service
	// Service names the service whose sets this Driver applies; it must be
	// one of Services. Required by New.
	Service string
	// AdminAddr is the loopback "ip:port" of the admin server that takes
	// (dynamic) and reports (both modes) each service's set. Required.
	AdminAddr string
	// AdminSecret protects the dynamic admin location (header
	// X-Cycler-Admin-Secret). Required in dynamic mode, at least 16 bytes.
	// The rendered config holds only its SHA-1, not the secret.
	AdminSecret string
	// ReloadTimeout bounds how long a reload may take to show the new set.
	// Default DefaultReloadTimeout.
	ReloadTimeout time.Duration
	// Keepalive is the idle upstream connections each worker keeps per
	// service. Default DefaultKeepalive.
	Keepalive int
	// WorkerShutdownTimeout bounds how long old workers drain after a
	// reload (Standalone). Default DefaultWorkerShutdownTimeout.
	WorkerShutdownTimeout time.Duration
	// WorkerProcesses is the worker count (Standalone). 0 means "auto".
	WorkerProcesses int
	// User is the `user` directive (Standalone), like "www-data"; empty
	// leaves it out.
	User string
	// ModulesDir holds ndk_http_module.so and ngx_http_lua_module.so for the
	// load_module lines of a Standalone dynamic config. Default
	// DefaultModulesDir.
	ModulesDir string
	// Logger receives the driver's logs. Default: a no-op logger.
	Logger *zap.Logger
}

var (
	// serviceNameRE matches the service names config accepts.
	serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// safePathRE limits paths to characters that need no quoting in nginx
	// config and Lua strings.
	safePathRE = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)
	// userRE matches a `user` directive argument: a user and optional group.
	userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}( [a-z_][a-z0-9_-]{0,31})?$`)
)

// DetectMode returns ModeDynamic when the lua module is in modulesDir and
// lua-resty-core is installed, else ModeReload.
func DetectMode(modulesDir string) Mode {
	if modulesDir == "" {
		modulesDir = DefaultModulesDir
	}
	for _, p := range []string{filepath.Join(modulesDir, luaModuleFile), filepath.Join(modulesDir, ndkModuleFile), restyCorePath} {
		if _, err := os.Stat(p); err != nil {
			return ModeReload
		}
	}
	return ModeDynamic
}

// withDefaults returns o with defaults applied to zero fields.
func (o Options) withDefaults() Options {
	if o.ModulesDir == "" {
		o.ModulesDir = DefaultModulesDir
	}
	if o.Mode == "" {
		o.Mode = DetectMode(o.ModulesDir)
	}
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.ReloadTimeout == 0 {
		o.ReloadTimeout = DefaultReloadTimeout
	}
	if o.Keepalive == 0 {
		o.Keepalive = DefaultKeepalive
	}
	if o.WorkerShutdownTimeout == 0 {
		o.WorkerShutdownTimeout = DefaultWorkerShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// validate reports every problem with o (defaults already applied). It
// checks the instance-wide fields; New also checks Service.
func (o Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.Mode != ModeDynamic && o.Mode != ModeReload {
		bad("mode %q is unknown; use %q or %q", o.Mode, ModeDynamic, ModeReload)
	}
	if strings.ContainsAny(o.Binary, "\x00\n") || o.Binary == "" {
		bad("binary %q is not a program path; use the nginx program, like %s", o.Binary, DefaultBinary)
	}
	for _, p := range []struct{ field, v string }{{"config_dir", o.ConfigDir}, {"main_config", o.MainConfig}, {"prefix", o.Prefix}, {"modules_dir", o.ModulesDir}} {
		if p.v == "" && (p.field == "prefix" || p.field == "modules_dir") {
			continue
		}
		if !safePathRE.MatchString(p.v) || filepath.Clean(p.v) != p.v {
			bad("%s %q must be a clean absolute path of letters, digits and /._+-", p.field, p.v)
		}
	}
	if o.Standalone && o.Prefix == "" {
		bad("prefix is empty; a standalone config keeps its pid file, logs and temp files under prefix, so set it")
	}
	if err := checkLoopback(o.AdminAddr); err != nil {
		bad("admin_addr %q: %v", o.AdminAddr, err)
	}
	if o.Mode == ModeDynamic {
		if len(o.AdminSecret) < minSecretLen {
			bad("admin_secret is %d bytes; dynamic mode needs at least %d (generate one with `openssl rand -hex 32`)", len(o.AdminSecret), minSecretLen)
		}
	}
	if strings.ContainsFunc(o.AdminSecret, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		bad("admin_secret holds spaces or control characters, which cannot travel in an HTTP header; use printable characters")
	}
	if o.ReloadTimeout < 0 || o.WorkerShutdownTimeout < 0 {
		bad("reload_timeout %s and worker_shutdown_timeout %s must be positive", o.ReloadTimeout, o.WorkerShutdownTimeout)
	}
	if o.Keepalive < 0 || o.WorkerProcesses < 0 {
		bad("keepalive %d and worker_processes %d must not be negative", o.Keepalive, o.WorkerProcesses)
	}
	if o.User != "" && !userRE.MatchString(o.User) {
		bad("user %q is not a user name (optionally followed by a group)", o.User)
	}
	errs = append(errs, checkServices(o.Services))
	return errors.Join(errs...)
}

// checkServices reports bad, duplicate or colliding services.
func checkServices(svcs []Service) error {
	var errs []error
	names := map[string]bool{}
	listens := map[string]string{}
	for _, s := range svcs {
		if !serviceNameRE.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("service name %q: use 1-63 lower-case letters, digits and '-', starting with a letter", s.Name))
			continue
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("service %q is listed twice", s.Name))
		}
		names[s.Name] = true
		if err := checkListen(s.Listen); err != nil {
			errs = append(errs, fmt.Errorf("service %q: listen %q: %v", s.Name, s.Listen, err))
			continue
		}
		if other, dup := listens[s.Listen]; dup {
			errs = append(errs, fmt.Errorf("services %q and %q both listen on %s; give each its own address", other, s.Name, s.Listen))
		}
		listens[s.Listen] = s.Name
	}
	return errors.Join(errs...)
}

// checkListen accepts "ip:port" and ":port".
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("is not host:port, like 0.0.0.0:80: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1-65535", port)
	}
	if host == "" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err != nil || ip.Zone() != "" {
		return fmt.Errorf("host %q is not an IP address without zone", host)
	}
	return nil
}

// checkLoopback accepts only a loopback "ip:port", so the admin location is
// never reachable from another host.
func checkLoopback(s string) error {
	if err := checkListen(s); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s)
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return errors.New("must be a loopback address like 127.0.0.1:7403, so only this host can reach the admin location")
	}
	return nil
}

// service returns the Service named name.
func (o Options) service(name string) (Service, bool) {
	for _, s := range o.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// baseArgs are the arguments every nginx invocation shares: prefix, main
// config and (Standalone) the early error log.
func (o Options) baseArgs() []string {
	var args []string
	if o.Prefix != "" {
		args = append(args, "-p", strings.TrimSuffix(o.Prefix, "/")+"/")
	}
	args = append(args, "-c", o.MainConfig)
	if o.Standalone {
		args = append(args, "-e", o.errorLog())
	}
	return args
}

// ForegroundArgs returns the arguments (without the program) that run nginx
// in the foreground with this configuration, for a supervisor such as the
// lb role or a test harness.
func ForegroundArgs(opts Options) []string {
	o := opts.withDefaults()
	return append(o.baseArgs(), "-g", "daemon off;")
}

// errorLog, pidFile and tempDir are the Standalone paths under Prefix.
func (o Options) errorLog() string { return filepath.Join(o.Prefix, "logs", "error.log") }
func (o Options) pidFile() string  { return filepath.Join(o.Prefix, "nginx.pid") }
func (o Options) tempDir() string  { return filepath.Join(o.Prefix, "tmp") }

// PIDFile returns the master's pid file of a Standalone configuration.
func PIDFile(opts Options) string { return opts.pidFile() }

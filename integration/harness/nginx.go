package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReadyPath is the location that harness-generated nginx and varnish configs answer
// with 200 "ready", so readiness never depends on a backend.
const ReadyPath = "/__harness_ready"

// luaModuleDirs are where Debian's libnginx-mod-* packages put their modules.
var luaModuleDirs = []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules"}

// NginxOptions describes the nginx that StartNginx runs.
type NginxOptions struct {
	// Port is the listen port on 127.0.0.1. Default: a free port.
	Port int
	// Upstreams are host:port backends of a static upstream "harness_backend" that
	// `location /` proxies to with nginx's default proxy settings (round robin,
	// proxy_next_upstream error timeout) and a 2s connect timeout, so a dead backend
	// fails over quickly. Without upstreams there is no `location /`.
	Upstreams []string
	// ExtraServer is inserted verbatim into the listening server block (more locations).
	ExtraServer string
	// ExtraHTTP is inserted verbatim into the http block (more upstreams, servers,
	// lua_shared_dict, includes), for LB drivers.
	ExtraHTTP string
	// LoadLua loads Debian's ndk and lua modules (libnginx-mod-http-lua).
	LoadLua bool
}

// Nginx is a real nginx with its own prefix directory, started by StartNginx. It
// never touches the system instance's files or pid.
type Nginx struct {
	*Process
	// Addr is the listen address, 127.0.0.1:port.
	Addr string
	// Prefix is nginx's prefix directory (-p); everything nginx writes is under it.
	Prefix string
	// ConfPath is the generated nginx.conf (-c).
	ConfPath string
	// PIDFile is the master's pid file.
	PIDFile string
	// ErrorLog and AccessLog are nginx's own logs.
	ErrorLog, AccessLog string

	bin string
}

// NginxBinary returns the nginx binary ($CYCLER_NGINX_BIN, the PATH or /usr/sbin).
func NginxBinary(t T) string { return systemBinary(t, "CYCLER_NGINX_BIN", "nginx") }

// StartNginx writes a config from opts, checks it with `nginx -t` (failing the test
// with nginx's output if it is bad), starts nginx in the foreground with a master
// and one worker, and waits until ReadyPath answers 200.
//
// When the harness runs as root the config says `user root;`: the workers must
// read and write the prefix, which lives in the test's 0700 temp dir. As another
// user nginx runs as that user and the directive is left out.
func StartNginx(t T, opts NginxOptions) *Nginx {
	t.Helper()
	bin := NginxBinary(t)
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	prefix := filepath.Join(t.TempDir(), "nginx")
	n := &Nginx{
		Addr:      loopback(opts.Port),
		Prefix:    prefix,
		ConfPath:  filepath.Join(prefix, "nginx.conf"),
		PIDFile:   filepath.Join(prefix, "nginx.pid"),
		ErrorLog:  filepath.Join(prefix, "logs", "error.log"),
		AccessLog: filepath.Join(prefix, "logs", "access.log"),
		bin:       bin,
	}
	for _, d := range []string{"logs", "tmp", "html"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			fatalf(t, "harness: nginx: make prefix: %v", err)
		}
	}
	conf, err := n.render(opts)
	if err != nil {
		fatalf(t, "harness: nginx: %v", err)
	}
	if err := os.WriteFile(n.ConfPath, []byte(conf), 0o644); err != nil {
		fatalf(t, "harness: nginx: write config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Test(ctx); err != nil {
		fatalf(t, "harness: %v\nconfig %s:\n%s", err, n.ConfPath, conf)
	}
	n.Process = StartProcess(t, ProcessConfig{
		Name:      "nginx",
		Path:      bin,
		Args:      n.baseArgs(),
		Dir:       prefix,
		Ready:     n.ready,
		ExtraLogs: []string{n.ErrorLog},
	})
	return n
}

// URL returns http://<Addr>.
func (n *Nginx) URL() string { return "http://" + n.Addr }

// Test runs `nginx -t` on the current config and returns its output in the error.
func (n *Nginx) Test(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, n.bin, append(n.baseArgs(), "-t")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx: config test of %s: %w\n%s", n.ConfPath, err, out)
	}
	return nil
}

// Reload checks the config, sends the reload signal (`nginx -s reload` with this
// instance's prefix and config) and waits until a worker of the new generation
// runs (at most 30s, or ctx's deadline). Old workers may still be draining when
// it returns.
func (n *Nginx) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, defaultReadyTimeout)
	defer cancel()
	if err := n.Test(ctx); err != nil {
		return err
	}
	before, err := n.PIDs()
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, n.bin, append(n.baseArgs(), "-s", "reload")...).CombinedOutput(); err != nil {
		return fmt.Errorf("nginx: reload: %w\n%s", err, out)
	}
	return WaitFor(ctx, "a new nginx worker after reload", func() error {
		now, err := n.PIDs()
		if err != nil {
			return err
		}
		for _, pid := range now[1:] {
			if !slices.Contains(before, pid) {
				return nil
			}
		}
		return fmt.Errorf("workers still %v", now[1:])
	})
}

// PIDs returns the master's pid (from the pid file) followed by its children's
// pids (the workers, sorted). Tests compare two calls to prove that nothing
// restarted or reloaded.
func (n *Nginx) PIDs() ([]int, error) {
	master, err := readPIDFile(n.PIDFile)
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	workers, err := ChildPIDs(master)
	if err != nil {
		return nil, fmt.Errorf("nginx: workers of %d: %w", master, err)
	}
	slices.Sort(workers)
	return append([]int{master}, workers...), nil
}

func (n *Nginx) baseArgs() []string {
	return []string{"-p", n.Prefix + "/", "-c", n.ConfPath, "-e", n.ErrorLog}
}

// ready passes once the master wrote its pid file and ReadyPath answers 200.
func (n *Nginx) ready(ctx context.Context) error {
	if _, err := readPIDFile(n.PIDFile); err != nil {
		return err
	}
	return wantStatus(n.URL()+ReadyPath, 200)(ctx)
}

func (n *Nginx) render(opts NginxOptions) (string, error) {
	var b strings.Builder
	b.WriteString("# Generated by the cycler integration harness for one test; not the system nginx.\n")
	if opts.LoadLua {
		for _, mod := range []string{"ndk_http_module.so", "ngx_http_lua_module.so"} {
			path, err := findModule(mod)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "load_module %s;\n", path)
		}
	}
	b.WriteString("daemon off;\nmaster_process on;\nworker_processes 1;\n")
	if os.Geteuid() == 0 {
		b.WriteString("user root;  # the prefix is in a 0700 temp dir owned by root\n")
	}
	fmt.Fprintf(&b, "pid %s;\nerror_log %s info;\n", n.PIDFile, n.ErrorLog)
	b.WriteString("events { worker_connections 1024; }\n\nhttp {\n")
	b.WriteString("    log_format harness '$remote_addr \"$request\" $status upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time';\n")
	fmt.Fprintf(&b, "    access_log %s harness;\n", n.AccessLog)
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s;\n", kind, filepath.Join(n.Prefix, "tmp", kind))
	}
	if len(opts.Upstreams) > 0 {
		b.WriteString("\n    upstream harness_backend {\n")
		for _, u := range opts.Upstreams {
			if err := checkHostPort(u); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "        server %s;\n", u)
		}
		b.WriteString("    }\n")
	}
	fmt.Fprintf(&b, "\n    server {\n        listen %s;\n", n.Addr)
	fmt.Fprintf(&b, "        location = %s { access_log off; return 200 \"ready\\n\"; }\n", ReadyPath)
	if len(opts.Upstreams) > 0 {
		b.WriteString("        location / {\n            proxy_pass http://harness_backend;\n            proxy_connect_timeout 2s;\n        }\n")
	}
	if opts.ExtraServer != "" {
		b.WriteString(opts.ExtraServer + "\n")
	}
	b.WriteString("    }\n")
	if opts.ExtraHTTP != "" {
		b.WriteString(opts.ExtraHTTP + "\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// findModule returns the path of a Debian nginx dynamic module.
func findModule(name string) (string, error) {
	for _, dir := range luaModuleDirs {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("nginx module %s not found in %v; install libnginx-mod-http-lua with `make deps`", name, luaModuleDirs)
}

// checkHostPort accepts host:port with no characters that could end an nginx or
// VCL directive, so a test's backend list cannot rewrite the config around it.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("backend %q is not host:port: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("backend %q: port %q is not 1-65535", s, port)
	}
	if host == "" || strings.ContainsAny(host, " \t\n;{}\"'#$\\") {
		return fmt.Errorf("backend %q: host %q is empty or has characters not allowed in a host", s, host)
	}
	return nil
}

// readPIDFile reads a pid file written by nginx.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, errors.New("pid file " + path + " holds " + strconv.Quote(string(b)) + ", not a pid")
	}
	return pid, nil
}

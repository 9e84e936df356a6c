package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/pkgfile"
)

// lab holds one host's values for every placeholder the deploy files use;
// deploy/vagrant/provision.sh fills in the same names.
type lab map[string]string

var (
	serverFirst = lab{"NODE_ID": "cyc-1", "NODE_IP": "192.168.56.11", "JOIN": "[]", "GOSSIP_KEY": "c2VjcmV0LWdvc3NpcC1rZXktb2YtMzItYnl0ZXMhISE="}
	serverJoin  = lab{"NODE_ID": "cyc-2", "NODE_IP": "192.168.56.12", "JOIN": `["192.168.56.11:7400"]`, "GOSSIP_KEY": "c2VjcmV0LWdvc3NpcC1rZXktb2YtMzItYnl0ZXMhISE="}
	appBlue     = lab{"NODE_ID": "web-blue-1", "NODE_IP": "192.168.56.31", "POOL": "blue"}
	appGreen    = lab{"NODE_ID": "web-green-2", "NODE_IP": "192.168.56.42", "POOL": "green"}
	lbHost      = lab{"NODE_ID": "lb", "NODE_IP": "192.168.56.20"}
)

// placeholderRE matches @NAME@.
var placeholderRE = regexp.MustCompile(`@[A-Z_]+@`)

// render fills in src's placeholders from values and fails on any left.
func render(t *testing.T, name string, src []byte, values lab) []byte {
	t.Helper()
	out := placeholderRE.ReplaceAllFunc(src, func(m []byte) []byte {
		if v, ok := values[string(m[1:len(m)-1])]; ok {
			return []byte(v)
		}
		return m
	})
	if left := placeholderRE.FindAll(out, -1); len(left) > 0 {
		t.Fatalf("%s: placeholders without an example value: %s", name, bytes.Join(left, []byte(" ")))
	}
	return out
}

// roleOf maps a deploy/config file name to its cyclerd role.
func roleOf(name string) string {
	switch {
	case name == "server.hcl":
		return config.RoleServer
	case name == "agent.hcl":
		return config.RoleAgent
	case strings.HasPrefix(name, "lb-") && strings.HasSuffix(name, ".hcl"):
		return config.RoleLB
	}
	return ""
}

// hostsFor are the example hosts each role's config is rendered for.
func hostsFor(role string) []lab {
	switch role {
	case config.RoleServer:
		return []lab{serverFirst, serverJoin}
	case config.RoleAgent:
		return []lab{appBlue, appGreen}
	}
	return []lab{lbHost}
}

// renderConfig writes deploy/config/name rendered for host into a temp dir,
// under the same name so problems name the file.
func renderConfig(t *testing.T, name string, host lab) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("config", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, render(t, name, src, host), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigsLoad loads every deploy/config/*.hcl with the real config
// package, for each example host, and fails on any problem. config.Check
// also runs; on a build machine the secret files under /etc/cycler do not
// exist, so only "no such file" problems with absolute paths are allowed.
func TestConfigsLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("config", "*.hcl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/config/*.hcl: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		role := roleOf(name)
		if role == "" {
			t.Errorf("%s: name it server.hcl, agent.hcl or lb-<name>.hcl so its role is known", f)
			continue
		}
		for _, host := range hostsFor(role) {
			t.Run(name+"/"+host["NODE_ID"], func(t *testing.T) {
				path := renderConfig(t, name, host)
				var err error
				switch role {
				case config.RoleServer:
					_, err = config.LoadServer(path)
				case config.RoleAgent:
					_, err = config.LoadAgent(path)
				case config.RoleLB:
					_, err = config.LoadLB(path)
				}
				if err != nil {
					t.Fatalf("%s does not load as a %s config:\n%v", f, role, err)
				}
				err = config.Check(role, path)
				var ps config.Problems
				if err != nil && !errors.As(err, &ps) {
					t.Fatalf("config check %s: %v", f, err)
				}
				for _, p := range ps {
					missing := strings.HasPrefix(p.Value, `"/`) &&
						(strings.Contains(p.Msg, "no such file or directory") || strings.Contains(p.Msg, "executable file not found"))
					if !missing {
						t.Errorf("config check %s: %s", f, p)
					}
				}
			})
		}
	}
}

// TestPlaceholdersFilledByProvision checks that every placeholder in the
// deploy files is one provision.sh fills in and the tests have a value for.
func TestPlaceholdersFilledByProvision(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("vagrant", "provision.sh"))
	if err != nil {
		t.Fatal(err)
	}
	filled := map[string]bool{}
	for _, m := range regexp.MustCompile(`s\|@([A-Z_]+)@\|`).FindAllSubmatch(script, -1) {
		filled[string(m[1])] = true
	}
	known := map[string]bool{}
	for _, h := range []lab{serverFirst, serverJoin, appBlue, appGreen, lbHost} {
		for k := range h {
			known[k] = true
		}
	}
	var files []string
	for _, g := range []string{"config/*", "consul/*"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range placeholderRE.FindAll(src, -1) {
			name := string(m[1 : len(m)-1])
			if !filled[name] {
				t.Errorf("%s uses @%s@, which deploy/vagrant/provision.sh does not fill in", f, name)
			}
			if !known[name] {
				t.Errorf("%s uses @%s@, which this test has no example value for", f, name)
			}
		}
	}
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads a unit file. It handles what these units use: sections,
// key=value lines, comments and repeated keys.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of section.key, failing when it is not set
// exactly once.
func (u unit) one(t *testing.T, name, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("%s: [%s] %s is set %d times, want once", name, section, key, len(vs))
		return ""
	}
	return vs[0]
}

var (
	buildOnce sync.Once
	cyclerd   string
	buildErr  error
)

// cyclerdBinary builds cmd/cyclerd once for the package's tests.
func cyclerdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cycler-deploy-test-")
		if err != nil {
			buildErr = err
			return
		}
		cyclerd = filepath.Join(dir, "cyclerd")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", cyclerd, "github.com/cyclerhq/cycler/cmd/cyclerd").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build ./cmd/cyclerd: " + err.Error() + ": " + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return cyclerd
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cyclerd != "" {
		os.RemoveAll(filepath.Dir(cyclerd))
	}
	os.Exit(code)
}

// flagsOf runs `cyclerd <role> -h` and returns the flag names it lists:
// the flags cyclerd's real flag parsing accepts for that role.
func flagsOf(t *testing.T, role string) map[string]bool {
	t.Helper()
	cmd := exec.Command(cyclerdBinary(t), role, "-h")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("cyclerd %s -h: want exit 2 (usage), got %v\n%s", role, err, out.String())
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["config"] {
		t.Fatalf("cyclerd %s -h lists no -config flag:\n%s", role, out.String())
	}
	return flags
}

// TestUnitsRunCyclerdWithRealFlags parses each cyclerd unit and checks its
// ExecStart (`cyclerd ROLE -config FILE`) against the flags `cyclerd ROLE -h`
// lists, its ExecStartPre (`cyclerd config check -role ROLE FILE`) against
// the same role and file, that FILE is one of deploy/config's files of that
// role, that the unit can write the directories that config names, and the
// hardening every unit must have.
func TestUnitsRunCyclerdWithRealFlags(t *testing.T) {
	units, _ := filepath.Glob(filepath.Join("systemd", "cyclerd-*.service"))
	if len(units) < 4 {
		t.Fatalf("want cyclerd-server, cyclerd-agent, cyclerd-lb and cyclerd-lb@ units in deploy/systemd, found %v", units)
	}
	for _, path := range units {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			u := parseUnit(t, path)
			start := strings.Fields(u.one(t, name, "Service", "ExecStart"))
			if len(start) < 4 || start[0] != "/usr/local/bin/cyclerd" {
				t.Fatalf("ExecStart %q: want /usr/local/bin/cyclerd ROLE -config FILE", start)
			}
			role := start[1]
			if !slices.Contains([]string{config.RoleServer, config.RoleAgent, config.RoleLB}, role) {
				t.Fatalf("ExecStart role %q: want server, agent or lb", role)
			}
			if want := "cyclerd-" + role; !strings.HasPrefix(name, want) {
				t.Errorf("unit %s runs role %s; name it %s*.service", name, role, want)
			}
			flags := flagsOf(t, role)
			cfgPath := ""
			for i := 2; i < len(start); i++ {
				f := strings.TrimLeft(start[i], "-")
				if !strings.HasPrefix(start[i], "-") || f == "" {
					t.Fatalf("ExecStart argument %q: want -flag value pairs after the role", start[i])
				}
				f, v, hasValue := strings.Cut(f, "=")
				if !flags[f] {
					t.Errorf("ExecStart flag -%s is not a flag of `cyclerd %s` (it has %v)", f, role, keys(flags))
				}
				if !hasValue {
					if i+1 >= len(start) {
						t.Fatalf("ExecStart flag -%s has no value", f)
					}
					i++
					v = start[i]
				}
				if f == "config" {
					cfgPath = v
				}
			}
			if cfgPath == "" {
				t.Fatalf("ExecStart has no -config")
			}
			pre := strings.Fields(u.one(t, name, "Service", "ExecStartPre"))
			if want := []string{"/usr/local/bin/cyclerd", "config", "check", "-role", role, cfgPath}; !slices.Equal(pre, want) {
				t.Errorf("ExecStartPre = %q, want %q", pre, want)
			}

			// The files a template instance reads: lb-%i.hcl -> every lb-*.hcl.
			pattern := strings.ReplaceAll(filepath.Base(cfgPath), "%i", "*")
			if !strings.HasPrefix(cfgPath, "/etc/cycler/") {
				t.Errorf("-config %s: the docs and provision.sh install configs under /etc/cycler/", cfgPath)
			}
			matches, _ := filepath.Glob(filepath.Join("config", pattern))
			if len(matches) == 0 && role != config.RoleLB {
				t.Fatalf("-config %s: no deploy/config/%s", cfgPath, pattern)
			}
			hardening(t, name, u)
			writable := writablePaths(u)
			for _, m := range matches {
				if roleOf(filepath.Base(m)) != role {
					t.Errorf("%s reads %s, which is not a %s config", name, m, role)
					continue
				}
				for _, dir := range dirsWritten(t, role, renderConfig(t, filepath.Base(m), hostsFor(role)[0])) {
					if !writable[dir] {
						t.Errorf("%s: %s (from %s) is not in ReadWritePaths %v", name, dir, m, u["Service"]["ReadWritePaths"])
					}
				}
			}
			if role == config.RoleAgent {
				if km := u.one(t, name, "Service", "KillMode"); km != "process" {
					t.Errorf("KillMode=%s: the agent's unit needs KillMode=process so stopping the agent leaves the app it supervises running", km)
				}
			}
		})
	}
}

// hardening checks what every long-running cycler unit must have.
func hardening(t *testing.T, name string, u unit) {
	t.Helper()
	if user := u.one(t, name, "Service", "User"); user == "" || user == "root" {
		t.Errorf("User=%q: run as a dedicated user", user)
	}
	want := map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "Restart": "on-failure", "PrivateTmp": "yes", "ProtectHome": "yes"}
	for k, v := range want {
		if got := u.one(t, name, "Service", k); got != v {
			t.Errorf("%s=%s, want %s", k, got, v)
		}
	}
	for _, k := range []string{"LimitNOFILE", "ReadWritePaths"} {
		if len(u["Service"][k]) == 0 {
			t.Errorf("%s is not set", k)
		}
	}
	stop, err := time.ParseDuration(u.one(t, name, "Service", "TimeoutStopSec"))
	if err != nil || stop < 15*time.Second || stop > 5*time.Minute {
		t.Errorf("TimeoutStopSec=%v (%v): cyclerd drains on SIGTERM; give it 15s to 5m", u["Service"]["TimeoutStopSec"], err)
	}
	if ks := u["Service"]["KillSignal"]; len(ks) > 0 && ks[0] != "SIGTERM" {
		t.Errorf("KillSignal=%s: cyclerd shuts down gracefully on SIGTERM", ks[0])
	}
}

// writablePaths is the set of paths a unit's ReadWritePaths and
// StateDirectory make writable.
func writablePaths(u unit) map[string]bool {
	out := map[string]bool{}
	for _, v := range u["Service"]["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			out[strings.TrimLeft(p, "-+")] = true
		}
	}
	for _, v := range u["Service"]["StateDirectory"] {
		for _, p := range strings.Fields(v) {
			out["/var/lib/"+p] = true
		}
	}
	return out
}

// dirsWritten are the directories a role's config makes cyclerd write.
func dirsWritten(t *testing.T, role, path string) []string {
	t.Helper()
	switch role {
	case config.RoleServer:
		c, err := config.LoadServer(path)
		if err != nil {
			t.Fatal(err)
		}
		return []string{c.DataDir}
	case config.RoleAgent:
		c, err := config.LoadAgent(path)
		if err != nil {
			t.Fatal(err)
		}
		return []string{c.DataDir}
	}
	c, err := config.LoadLB(path)
	if err != nil {
		t.Fatal(err)
	}
	switch c.Driver.Name {
	case config.DriverNginx:
		return []string{c.Driver.Nginx.ConfigDir}
	case config.DriverVarnish:
		return []string{c.Driver.Varnish.VCLDir}
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDemoPackage builds a package with deploy/vagrant/demo-package.sh and
// reads it with the real package reader (every safety rule, the manifest).
func TestDemoPackage(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if err := os.WriteFile(app, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join("vagrant", "demo-package.sh"), "1.2.3", dir)
	cmd.Env = append(os.Environ(), "CYCLER_DEMOAPP_BIN="+app)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo-package.sh: %v\n%s", err, out)
	}
	path := strings.TrimSpace(string(out))
	if path != filepath.Join(dir, "web-1.2.3.tar.gz") {
		t.Fatalf("demo-package.sh printed %q, want the package path", path)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := pkgfile.ReadManifest(f, pkgfile.DefaultLimits())
	if err != nil {
		t.Fatalf("the demo package is refused: %v", err)
	}
	if m.Name != "web" || m.Version != "1.2.3" || m.Start == nil || m.Health == nil || m.Health.HTTPPath != "/health" {
		t.Fatalf("manifest = %+v, want web 1.2.3 with a start command and an HTTP health check", m)
	}
	if want := []string{"./cycler-demoapp", "-listen", "${CYCLER_ADDR}"}; !slices.Equal(m.Start.Command[:3], want) {
		t.Errorf("start command %q, want it to begin with %q", m.Start.Command, want)
	}
	if names := tarNames(t, path); !slices.Equal(names, []string{"cycler.hcl", "cycler-demoapp"}) {
		t.Errorf("package entries %q, want cycler.hcl and cycler-demoapp", names)
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestNginxBaseConfig runs `nginx -t` on deploy/config/nginx.conf with the
// cycler.conf and lua file cyclerd lb renders for lb-nginx.hcl, with every
// absolute path moved into a temp dir. It needs nginx with the lua module.
func TestNginxBaseConfig(t *testing.T) {
	if nginx.DetectMode("") != nginx.ModeDynamic {
		t.Skip("nginx with libnginx-mod-http-lua and lua-resty-core is not installed")
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = nginx.DefaultBinary
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("nginx is not installed")
	}
	cfg, err := config.LoadLB(renderConfig(t, "lb-nginx.hcl", lbHost))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	moved := strings.NewReplacer(
		"/etc/nginx/cycler", filepath.Join(tmp, "generated"),
		"/run/cycler-nginx", filepath.Join(tmp, "run"),
		"/var/log/cycler-nginx", filepath.Join(tmp, "log"),
		"/var/lib/cycler-nginx", filepath.Join(tmp, "lib"),
	)
	for _, d := range []string{"generated", "run", "log", "lib"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base, err := os.ReadFile(filepath.Join("config", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(base, []byte("include "+cfg.Driver.Nginx.ConfigDir+"/cycler.conf;")) {
		t.Fatalf("nginx.conf does not include %s/cycler.conf, which lb-nginx.hcl's config_dir makes cyclerd write", cfg.Driver.Nginx.ConfigDir)
	}
	if cfg.Driver.Nginx.MainConfig != "/etc/cycler/nginx/nginx.conf" {
		t.Fatalf("lb-nginx.hcl main_config = %s; provision.sh installs nginx.conf as /etc/cycler/nginx/nginx.conf", cfg.Driver.Nginx.MainConfig)
	}
	main := filepath.Join(tmp, "nginx.conf")
	if err := os.WriteFile(main, []byte(moved.Replace(string(base))), 0o644); err != nil {
		t.Fatal(err)
	}
	n := cfg.Driver.Nginx
	opts := nginx.Options{
		Mode: nginx.Mode(n.Mode), Binary: bin, ConfigDir: moved.Replace(n.ConfigDir), MainConfig: main,
		AdminAddr: n.AdminAddr, AdminSecret: "0123456789abcdef0123456789abcdef",
	}
	for _, svc := range cfg.Services {
		// nginx -t binds nothing, but port 80 in a test config is a hint
		// of a mistake nobody needs; the check is about syntax and modules.
		opts.Services = append(opts.Services, nginx.Service{Name: svc, Listen: n.Listen(svc)})
	}
	files, err := nginx.Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(f.Path, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-t", "-q", "-c", main).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t on deploy/config/nginx.conf: %v\n%s", err, out)
	}
}

// TestVarnishBootVCL compiles the boot VCL with varnishd -C.
func TestVarnishBootVCL(t *testing.T) {
	bin, err := exec.LookPath("varnishd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/varnishd"); serr != nil {
			t.Skip("varnishd is not installed")
		}
		bin = "/usr/sbin/varnishd"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	abs, err := filepath.Abs(filepath.Join("config", "varnish-boot.vcl"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-C", "-n", t.TempDir(), "-f", abs)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("varnishd -C -f %s: %v\n%s", abs, err, stderr.String())
	}
}

// TestConsulConfigs checks the lab's Consul configs with `consul validate`
// when the Consul binary `make deps` builds is there.
func TestConsulConfigs(t *testing.T) {
	bin := os.Getenv("CYCLER_CONSUL_BIN")
	if bin == "" {
		bin = filepath.Join("..", ".bin", "consul")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no Consul binary at %s (make deps builds it)", bin)
	}
	for _, tt := range []struct {
		file string
		host lab
	}{
		{"server.hcl", lab{"NODE_ID": "consul", "NODE_IP": "192.168.56.10", "GOSSIP_KEY": serverFirst["GOSSIP_KEY"]}},
		{"client.hcl", serverJoin},
	} {
		t.Run(tt.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("consul", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "consul.hcl"), render(t, tt.file, src, tt.host), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "validate", dir).CombinedOutput()
			if err != nil {
				t.Fatalf("consul validate deploy/consul/%s: %v\n%s", tt.file, err, out)
			}
		})
	}
}

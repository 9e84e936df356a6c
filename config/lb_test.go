package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLBRules(t *testing.T) {
	tests := []struct {
		name     string
		give     func(l *LB)
		wantPath string
		wantMsg  string
	}{
		{"lb_id missing", func(l *LB) { l.LBID = "" }, "lb_id", "is not set"},
		{"lb_id charset", func(l *LB) { l.LBID = "LB_1" }, "lb_id", "lower-case letters"},
		{"no services", func(l *LB) { l.Services = nil }, "services", "is not set"},
		{"bad service", func(l *LB) { l.Services = []string{"web", "-api"} }, "services[1]", "starting with a letter"},
		{"service twice", func(l *LB) {
			l.Services = []string{"web", "api", "web"}
			l.Driver.Nginx.Services = append(l.Driver.Nginx.Services, NginxService{Name: "api", Listen: ":81"})
		}, "services[2]", "is listed twice; remove it or services[0]"},
		{"min_live", func(l *LB) { l.MinLive = 0 }, "min_live", "the minimum is 1"},
		{"no driver", func(l *LB) { l.Driver.Name = "" }, "driver", `driver "nginx" { ... }, driver "varnish" { ... } or driver "exec" { ... }`},
		{"unknown driver", func(l *LB) { l.Driver.Name = "haproxy" }, "driver[haproxy]", "use one of: nginx, varnish, exec"},
		{"nginx mode", func(l *LB) { l.Driver.Nginx.Mode = "hot" }, "driver[nginx].mode", "use one of: dynamic, reload"},
		{"nginx binary", func(l *LB) { l.Driver.Nginx.Binary = "" }, "driver[nginx].binary", "is not set"},
		{"nginx reload needs config_dir", func(l *LB) { l.Driver.Nginx.Mode, l.Driver.Nginx.ConfigDir = "reload", "" }, "driver[nginx].config_dir", "is not set"},
		{"nginx dynamic needs config_dir", func(l *LB) { l.Driver.Nginx.ConfigDir = "" }, "driver[nginx].config_dir", "cycler.conf"},
		{"nginx config_dir relative", func(l *LB) { l.Driver.Nginx.ConfigDir = "etc/nginx" }, "driver[nginx].config_dir", "clean absolute path"},
		{"nginx config_dir unclean", func(l *LB) { l.Driver.Nginx.ConfigDir = "/etc/nginx/../cycler" }, "driver[nginx].config_dir", "clean absolute path"},
		{"nginx main_config with a space", func(l *LB) { l.Driver.Nginx.MainConfig = "/etc/nginx/my nginx.conf" }, "driver[nginx].main_config", "clean absolute path"},
		{"nginx prefix with a semicolon", func(l *LB) { l.Driver.Nginx.Prefix = "/srv/nginx;" }, "driver[nginx].prefix", "clean absolute path"},
		{"nginx standalone needs prefix", func(l *LB) { l.Driver.Nginx.Standalone = true }, "driver[nginx].prefix", "is not set; a standalone nginx keeps"},
		{"nginx user", func(l *LB) { l.Driver.Nginx.User = "www data;" }, "driver[nginx].user", "is not a user name"},
		{"nginx service block missing", func(l *LB) { l.Services = []string{"web", "api"} }, "driver[nginx].service[api]", `add service "api" { listen = "0.0.0.0:80" }`},
		{"nginx service block of an unrouted service", func(l *LB) {
			l.Driver.Nginx.Services = append(l.Driver.Nginx.Services, NginxService{Name: "api", Listen: ":81"})
		}, "driver[nginx].service[api]", `is not in services ["web"]`},
		{"nginx listen missing", func(l *LB) { l.Driver.Nginx.Services[0].Listen = "" }, "driver[nginx].service[web].listen", "is not set"},
		{"nginx listen not host:port", func(l *LB) { l.Driver.Nginx.Services[0].Listen = "80" }, "driver[nginx].service[web].listen", "write it as host:port"},
		{"nginx listen hostname", func(l *LB) { l.Driver.Nginx.Services[0].Listen = "www.example.com:80" }, "driver[nginx].service[web].listen", "must use an IP address"},
		{"nginx listen twice", func(l *LB) {
			l.Services = []string{"web", "api"}
			l.Driver.Nginx.Services = []NginxService{{Name: "web", Listen: ":80"}, {Name: "api", Listen: ":80"}}
		}, "driver[nginx].service[api].listen", `is also the listen address of service "web"`},
		{"nginx admin addr missing", func(l *LB) { l.Driver.Nginx.AdminAddr = "" }, "driver[nginx].admin_addr", "is not set"},
		{"nginx admin addr not loopback", func(l *LB) { l.Driver.Nginx.AdminAddr = "10.0.0.9:8081" }, "driver[nginx].admin_addr", "is not a loopback address"},
		{"nginx admin addr all interfaces", func(l *LB) { l.Driver.Nginx.AdminAddr = ":8081" }, "driver[nginx].admin_addr", "the host is missing"},
		{"nginx dynamic needs secret", func(l *LB) { l.Driver.Nginx.AdminSecret = "" }, "driver[nginx].admin_secret", "dynamic mode protects the admin location"},
		{"nginx both secrets", func(l *LB) { l.Driver.Nginx.AdminSecretFile = "/s" }, "driver[nginx].admin_secret_file", "cannot be used together"},
		{"nginx short secret", func(l *LB) { l.Driver.Nginx.AdminSecret = "short" }, "driver[nginx].admin_secret", "at least 16 chars"},
		{"nginx reload timeout", func(l *LB) { l.Driver.Nginx.ReloadTimeout = "ten seconds" }, "driver[nginx].reload_timeout", "is not a duration"},
		{"varnish secret file", func(l *LB) { l.Driver.Name = DriverVarnish }, "driver[varnish].secret_file", "is not set"},
		{"varnish admin addr", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.AdminAddr = DriverVarnish, "/etc/varnish/secret", "localhost"
		}, "driver[varnish].admin_addr", "write it as host:port"},
		{"varnish keep vcls", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.KeepVCLs = DriverVarnish, "/etc/varnish/secret", 0
		}, "driver[varnish].keep_vcls", "the minimum is 1"},
		{"varnish vcl_dir relative", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.VCLDir = DriverVarnish, "/etc/varnish/secret", "vcl"
		}, "driver[varnish].vcl_dir", "clean absolute path"},
		{"varnish include with a quote", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.Include = DriverVarnish, "/etc/varnish/secret", `/etc/varnish/x".vcl`
		}, "driver[varnish].include", "clean absolute path"},
		{"varnish fronts one service", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Services = DriverVarnish, "/etc/varnish/secret", []string{"web", "api"}
		}, "services", `driver "varnish" fronts exactly one`},
		{"verify_interval", func(l *LB) { l.VerifyInterval = "0s" }, "verify_interval", "must be longer than 0"},
		{"exec command missing", func(l *LB) { l.Driver.Name = DriverExec }, "driver[exec].command", "is not set"},
		{"exec timeout", func(l *LB) {
			l.Driver.Name, l.Driver.Exec.Command, l.Driver.Exec.Timeout = DriverExec, []string{"/bin/apply"}, "soon"
		}, "driver[exec].timeout", "is not a duration"},
		{"exec command empty program", func(l *LB) { l.Driver.Name, l.Driver.Exec.Command = DriverExec, []string{""} }, "driver[exec].command[0]", "must be the program to run"},
		{"frontend of an unrouted service", func(l *LB) { l.Frontends = []Frontend{{Service: "api", URL: "http://10.0.0.20:80"}} },
			"frontend[api]", `is not in services ["web"]`},
		{"frontend twice", func(l *LB) {
			l.Frontends = []Frontend{{Service: "web", URL: "http://10.0.0.20:80"}, {Service: "web", URL: "http://10.0.0.21:80"}}
		}, "frontend[web]", "is defined twice"},
		{"frontend url missing", func(l *LB) { l.Frontends = []Frontend{{Service: "web"}} }, "frontend[web].url", "is not set"},
		{"frontend url scheme", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "tcp://10.0.0.20:80"}} }, "frontend[web].url", "unsupported scheme"},
		{"frontend url without scheme", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "10.0.0.20:80"}} }, "frontend[web].url", "write it as http(s)://host:port"},
		{"frontend url without port", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "https://lb.example.com/"}} }, "frontend[web].url", "has no port"},
		{"frontend url port 0", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "http://10.0.0.20:0"}} }, "frontend[web].url", "the port must be 1-65535"},
		{"frontend url query", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "http://10.0.0.20:80/?a=1"}} }, "frontend[web].url", "may hold only"},
		{"frontend url user", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "http://u:p@10.0.0.20:80"}} }, "frontend[web].url", "may hold only"},
		{"frontend url fragment", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "http://10.0.0.20:80/#x"}} }, "frontend[web].url", "may hold only"},
		{"frontend url every interface", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "http://0.0.0.0:80"}} }, "frontend[web].url", "not an address others can connect to"},
		{"frontend url bad host", func(l *LB) { l.Frontends = []Frontend{{Service: "web", URL: "http://bad_host:80"}} }, "frontend[web].url", "an IP address or a DNS name"},
		{"frontend url too long", func(l *LB) {
			l.Frontends = []Frontend{{Service: "web", URL: "http://10.0.0.20:80/" + strings.Repeat("a", 500)}}
		}, "frontend[web].url", "at most 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := validLB()
			tt.give(&l)
			wantOneProblem(t, l.Validate(), tt.wantPath, tt.wantMsg)
		})
	}
}

func TestLBAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name string
		give func(l *LB)
	}{
		{"nginx reload without secret", func(l *LB) { l.Driver.Nginx.Mode, l.Driver.Nginx.AdminSecret = NginxReload, "" }},
		{"nginx localhost admin", func(l *LB) { l.Driver.Nginx.AdminAddr = "localhost:8081" }},
		{"nginx ipv6 loopback admin", func(l *LB) { l.Driver.Nginx.AdminAddr = "[::1]:8081" }},
		{"varnish", func(l *LB) { l.Driver.Name, l.Driver.Varnish.SecretFile = DriverVarnish, "/etc/varnish/secret" }},
		{"varnish keeping one VCL, with an include", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.KeepVCLs = DriverVarnish, "/etc/varnish/secret", 1
			l.Driver.Varnish.Include = "/etc/varnish/cache.vcl"
		}},
		{"nginx standalone", func(l *LB) {
			l.Driver.Nginx.Standalone, l.Driver.Nginx.Prefix, l.Driver.Nginx.User = true, "/var/lib/cycler/nginx", "www-data"
		}},
		{"nginx listen on every interface, ipv6", func(l *LB) {
			l.Services = []string{"web", "api"}
			l.Driver.Nginx.Services = []NginxService{{Name: "api", Listen: ":8080"}, {Name: "web", Listen: "[::]:80"}}
		}},
		{"exec", func(l *LB) {
			l.Driver.Name, l.Driver.Exec.Command = DriverExec, []string{"/usr/local/bin/apply", "--fast"}
		}},
		{"frontends", func(l *LB) {
			l.Services = []string{"web", "api", "admin"}
			l.Driver.Nginx.Services = []NginxService{{Name: "web", Listen: ":80"}, {Name: "api", Listen: ":81"}, {Name: "admin", Listen: ":82"}}
			l.Frontends = []Frontend{
				{Service: "web", URL: "https://lb-1.example.com:443/web/"},
				{Service: "api", URL: "http://[2001:db8::1]:81"},
				{Service: "admin", URL: "http://10.0.0.20:82"},
			}
		}},
		{"frontend with the exec driver", func(l *LB) {
			l.Driver.Name, l.Driver.Exec.Command = DriverExec, []string{"/usr/local/bin/apply"}
			l.Frontends = []Frontend{{Service: "web", URL: "http://haproxy.internal:8080"}}
		}},
		{"several services", func(l *LB) {
			l.Services, l.MinLive = []string{"web", "api", "admin-ui"}, 3
			l.Driver.Nginx.Services = []NginxService{{Name: "web", Listen: ":80"}, {Name: "api", Listen: ":81"}, {Name: "admin-ui", Listen: "127.0.0.1:82"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := validLB()
			tt.give(&l)
			if err := l.Validate(); err != nil {
				t.Errorf("got problems:\n%v", err)
			}
		})
	}
}

func TestLBDriverParsing(t *testing.T) {
	tests := []struct {
		name     string
		give     string
		wantPos  string
		wantPath string
		wantMsg  string
	}{
		{"option of another driver", "driver \"nginx\" {\n  keep_vcls = 3\n}\n", "lb.hcl:2", "driver[nginx].keep_vcls",
			"(driver[nginx] takes: admin_addr, admin_secret, admin_secret_file, binary, config_dir, main_config, mode, prefix, reload_timeout, service, standalone, user)"},
		{"varnishadm is gone", "driver \"varnish\" {\n  varnishadm = \"/usr/bin/varnishadm\"\n}\n", "lb.hcl:2", "driver[varnish].varnishadm",
			"(driver[varnish] takes: admin_addr, ban_on_switch, include, keep_vcls, secret_file, vcl_dir)"},
		{"service block without a label", "driver \"nginx\" {\n  service {\n    listen = \":80\"\n  }\n}\n", "lb.hcl:2", "driver[nginx].service",
			`write it as service "name" { ... }`},
		{"service block twice", "driver \"nginx\" {\n  service \"web\" {\n  }\n  service \"web\" {\n  }\n}\n", "lb.hcl:4", "driver[nginx].service[web]",
			"is defined twice"},
		{"two drivers", "driver \"nginx\" {\n}\ndriver \"varnish\" {\n}\n", "lb.hcl:3", "driver[varnish]", "only one driver block is allowed"},
		{"driver without name", "driver {\n}\n", "lb.hcl:1", "driver", `write it as driver "name" { ... }`},
		{"exec command type", "driver \"exec\" {\n  command = \"/bin/apply --all\"\n}\n", "lb.hcl:2", "driver[exec].command", "must be a list of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLB("lb.hcl", []byte(tt.give))
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			if p := ps[0]; p.Pos != tt.wantPos || p.Path != tt.wantPath || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %q\nwant pos %q, path %q, message containing %q", p, tt.wantPos, tt.wantPath, tt.wantMsg)
			}
		})
	}
}

func TestLBUnknownDriverIsReportedOnceWithItsLine(t *testing.T) {
	path := writeFile(t, "lb.hcl", "lb_id = \"lb-1\"\nservices = [\"web\"]\n\ndriver \"haproxy\" {\n  socket = \"/run/haproxy.sock\"\n}\n"+tokenHCL)
	_, err := LoadLB(path)
	ps := problemsOf(t, err)
	want := Problems{{Pos: path + ":4", Line: 4, Path: "driver[haproxy]", Value: `"haproxy"`,
		Msg: "is not a known driver; use one of: nginx, varnish, exec"}}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("got  %#v\nwant %#v", ps, want)
	}
}

func TestLBDriverBodyKeepsDefaults(t *testing.T) {
	l, err := ParseLB("lb.hcl", []byte("driver \"varnish\" {\n  secret_file = \"/etc/varnish/secret\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultLB().Driver.Varnish
	want.SecretFile = "/etc/varnish/secret"
	if l.Driver.Name != DriverVarnish || l.Driver.Varnish != want {
		t.Errorf("got %q %+v, want varnish %+v", l.Driver.Name, l.Driver.Varnish, want)
	}
}

func TestLBVarnishBanOnSwitch(t *testing.T) {
	tests := []struct {
		name string
		give string
		want bool
	}{
		{name: "default", give: "", want: true},
		{name: "off", give: "  ban_on_switch = false\n", want: false},
		{name: "on", give: "  ban_on_switch = true\n", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "lb_id = \"lb-1\"\nservices = [\"web\"]\ndriver \"varnish\" {\n  secret_file = \"/etc/varnish/secret\"\n" + tt.give + "}\n" + tokenHCL
			l, err := ParseLB("lb.hcl", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Validate(); err != nil {
				t.Fatalf("problems:\n%v", err)
			}
			if got := l.Driver.Varnish.BanOnSwitch; got != tt.want {
				t.Errorf("ban_on_switch = %v, want %v", got, tt.want)
			}
		})
	}
	_, err := ParseLB("lb.hcl", []byte("driver \"varnish\" {\n  ban_on_switch = \"sometimes\"\n}\n"))
	if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Path != "driver[varnish].ban_on_switch" {
		t.Errorf("ban_on_switch = \"sometimes\": got %v, want one problem at driver[varnish].ban_on_switch", ps)
	}
}

func TestLBNginxServiceBlocksParse(t *testing.T) {
	src := `lb_id = "lb-1"
services = ["web", "api"]
verify_interval = "5s"
driver "nginx" {
  admin_addr   = "127.0.0.1:8081"
  admin_secret = "0123456789abcdef"
  standalone   = true
  prefix       = "/var/lib/cycler/nginx"
  service "web" {
    listen = "0.0.0.0:80"
  }
  service "api" {
    listen = ":8080"
  }
}
` + tokenHCL
	l, err := ParseLB("lb.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Validate(); err != nil {
		t.Fatalf("problems:\n%v", err)
	}
	n := l.Driver.Nginx
	tests := []struct {
		name string
		give any
		want any
	}{
		{"web listen", n.Listen("web"), "0.0.0.0:80"},
		{"api listen", n.Listen("api"), ":8080"},
		{"unknown listen", n.Listen("admin"), ""},
		{"standalone main config under prefix", n.MainConfigPath(), "/var/lib/cycler/nginx/nginx.conf"},
		{"verify interval", l.VerifyIntervalDuration(), 5 * time.Second},
		{"config_dir default", n.ConfigDir, "/etc/nginx/cycler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.give, tt.want) {
				t.Errorf("got %#v, want %#v", tt.give, tt.want)
			}
		})
	}
}

func TestLBNginxMissingListenPointsAtTheBlock(t *testing.T) {
	src := "lb_id = \"lb-1\"\nservices = [\"web\"]\ndriver \"nginx\" {\n  admin_addr = \"127.0.0.1:8081\"\n  admin_secret = \"0123456789abcdef\"\n  service \"web\" {\n  }\n}\n" + tokenHCL
	path := writeFile(t, "lb.hcl", src)
	_, err := LoadLB(path)
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Pos != path+":6" || ps[0].Path != "driver[nginx].service[web].listen" {
		t.Fatalf("got %v; want one problem at %s:6 about driver[nginx].service[web].listen", ps, path)
	}
}

func TestNginxMainConfigPath(t *testing.T) {
	tests := []struct {
		name string
		give Nginx
		want string
	}{
		{"default", Nginx{}, "/etc/nginx/nginx.conf"},
		{"standalone", Nginx{Standalone: true, Prefix: "/srv/ngx"}, "/srv/ngx/nginx.conf"},
		{"explicit", Nginx{Standalone: true, Prefix: "/srv/ngx", MainConfig: "/srv/main.conf"}, "/srv/main.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.MainConfigPath(); got != tt.want {
				t.Errorf("MainConfigPath() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLBFrontendURL(t *testing.T) {
	nginx := validLB()
	nginx.Services = []string{"web", "api", "admin"}
	nginx.Driver.Nginx.Services = []NginxService{{Name: "web", Listen: "10.0.0.20:80"}, {Name: "api", Listen: ":8080"}}
	nginx.Frontends = []Frontend{{Service: "admin", URL: "https://lb-1.internal:8443/admin"}, {Service: "api", URL: "http://10.0.0.20:8080"}}
	varnish := validLB()
	varnish.Driver.Name = DriverVarnish
	exec := validLB()
	exec.Driver.Name = DriverExec
	exec.Frontends = []Frontend{{Service: "web", URL: "http://10.0.0.30:80"}}
	tests := []struct {
		name string
		lb   LB
		give string
		want string
	}{
		{"nginx listen", nginx, "web", "http://10.0.0.20:80"},
		{"frontend wins over listen", nginx, "api", "http://10.0.0.20:8080"},
		{"frontend without listen", nginx, "admin", "https://lb-1.internal:8443/admin"},
		{"unknown service", nginx, "blog", ""},
		{"varnish without frontend", varnish, "web", ""},
		{"exec with frontend", exec, "web", "http://10.0.0.30:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.lb.FrontendURL(tt.give); got != tt.want {
				t.Errorf("FrontendURL(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestLBFrontendBlocksParse(t *testing.T) {
	l, err := LoadLB("testdata/lb.hcl")
	if err != nil {
		t.Fatalf("problems:\n%v", err)
	}
	if got, want := l.Frontends, []Frontend{{Service: "web", URL: "https://www.example.com:443"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("frontends = %#v, want %#v", got, want)
	}
	if got := l.FrontendURL("api"); got != "http://0.0.0.0:8080" {
		t.Errorf("FrontendURL(api) = %q, want the nginx listen address", got)
	}

	tests := []struct {
		name     string
		give     string
		wantPos  string
		wantPath string
		wantMsg  string
	}{
		{"no label", "frontend {\n  url = \"http://a:1\"\n}\n", "lb.hcl:1", "frontend", `write it as frontend "service" { ... }`},
		{"twice", "frontend \"web\" {\n}\nfrontend \"web\" {\n}\n", "lb.hcl:3", "frontend[web]", "is defined twice (the first is at lb.hcl:1)"},
		{"unknown key", "frontend \"web\" {\n  uri = \"http://a:1\"\n}\n", "lb.hcl:2", "frontend[web].uri", `did you mean "url"?`},
		{"url type", "frontend \"web\" {\n  url = [\"http://a:1\"]\n}\n", "lb.hcl:2", "frontend[web].url", "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLB("lb.hcl", []byte(tt.give))
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			if p := ps[0]; p.Pos != tt.wantPos || p.Path != tt.wantPath || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %q\nwant pos %q, path %q, message containing %q", p, tt.wantPos, tt.wantPath, tt.wantMsg)
			}
		})
	}
}

func TestLBFrontendProblemsPointAtTheFile(t *testing.T) {
	src := "lb_id = \"lb-1\"\nservices = [\"web\"]\ndriver \"exec\" {\n  command = [\"/bin/apply\"]\n}\n" +
		"frontend \"web\" {\n  url = \"ftp://10.0.0.20:21\"\n}\nfrontend \"api\" {\n  url = \"http://10.0.0.20:81\"\n}\n" + tokenHCL
	path := writeFile(t, "lb.hcl", src)
	_, err := LoadLB(path)
	want := []string{
		path + `:7: frontend[web].url: "ftp://10.0.0.20:21" has an unsupported scheme; write it as http(s)://host:port with an optional path prefix, like http://10.0.0.20:80 or https://lb-1.internal:443/web`,
		path + `:9: frontend[api]: "api" is not in services ["web"]; add it there or remove this block`,
	}
	if got := strings.Split(problemsOf(t, err).Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

package config

import (
	"reflect"
	"strings"
	"testing"
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
		{"service twice", func(l *LB) { l.Services = []string{"web", "api", "web"} }, "services[2]", "is listed twice; remove it or services[0]"},
		{"min_live", func(l *LB) { l.MinLive = 0 }, "min_live", "the minimum is 1"},
		{"no driver", func(l *LB) { l.Driver.Name = "" }, "driver", `driver "nginx" { ... }, driver "varnish" { ... } or driver "exec" { ... }`},
		{"unknown driver", func(l *LB) { l.Driver.Name = "haproxy" }, "driver[haproxy]", "use one of: nginx, varnish, exec"},
		{"nginx mode", func(l *LB) { l.Driver.Nginx.Mode = "hot" }, "driver[nginx].mode", "use one of: dynamic, reload"},
		{"nginx binary", func(l *LB) { l.Driver.Nginx.Binary = "" }, "driver[nginx].binary", "is not set"},
		{"nginx reload needs config_dir", func(l *LB) { l.Driver.Nginx.Mode, l.Driver.Nginx.ConfigDir = "reload", "" }, "driver[nginx].config_dir", "is not set"},
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
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.KeepVCLs = DriverVarnish, "/etc/varnish/secret", 1
		}, "driver[varnish].keep_vcls", "the minimum is 2"},
		{"varnish varnishadm", func(l *LB) {
			l.Driver.Name, l.Driver.Varnish.SecretFile, l.Driver.Varnish.Varnishadm = DriverVarnish, "/etc/varnish/secret", ""
		}, "driver[varnish].varnishadm", "is not set"},
		{"exec command missing", func(l *LB) { l.Driver.Name = DriverExec }, "driver[exec].command", "is not set"},
		{"exec command empty program", func(l *LB) { l.Driver.Name, l.Driver.Exec.Command = DriverExec, []string{""} }, "driver[exec].command[0]", "must be the program to run"},
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
		{"exec", func(l *LB) {
			l.Driver.Name, l.Driver.Exec.Command = DriverExec, []string{"/usr/local/bin/apply", "--fast"}
		}},
		{"several services", func(l *LB) { l.Services, l.MinLive = []string{"web", "api", "admin-ui"}, 3 }},
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
			"(driver[nginx] takes: admin_addr, admin_secret, admin_secret_file, binary, config_dir, mode, reload_timeout)"},
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

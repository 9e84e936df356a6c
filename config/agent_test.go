package config

import (
	"strings"
	"testing"
	"time"
)

func TestAgentRules(t *testing.T) {
	tests := []struct {
		name     string
		give     func(a *Agent)
		wantPath string
		wantMsg  string
	}{
		{"node_id missing", func(a *Agent) { a.NodeID = "" }, "node_id", "is not set"},
		{"data_dir missing", func(a *Agent) { a.DataDir = "" }, "data_dir", "is not set"},
		{"data_dir nul", func(a *Agent) { a.DataDir = "/a\x00b" }, "data_dir", "NUL byte"},
		{"no servers", func(a *Agent) { a.Servers = nil }, "servers", "at least one"},
		{"bad server", func(a *Agent) { a.Servers = []string{"10.0.0.5:7400", "10.0.0.6:70000"} }, "servers[1]", "the port must be 1-65535"},
		{"server twice", func(a *Agent) { a.Servers = []string{"a:1", "a:1"} }, "servers[1]", "is listed twice"},
		{"no server token", func(a *Agent) { a.ServerToken = "" }, "server_token", "set server_token or server_token_file"},
		{"both server tokens", func(a *Agent) { a.ServerTokenFile = "/t" }, "server_token_file", "cannot be used together with server_token"},
		{"short server token", func(a *Agent) { a.ServerToken = "short" }, "server_token", "at least 16 chars"},
		{"service missing", func(a *Agent) { a.Service = "" }, "service", "is not set"},
		{"service upper case", func(a *Agent) { a.Service = "Web" }, "service", "lower-case letters"},
		{"service starts with digit", func(a *Agent) { a.Service = "1web" }, "service", "starting with a letter"},
		{"service too long", func(a *Agent) { a.Service = "w" + strings.Repeat("e", 63) }, "service", "1-63"},
		{"pool missing", func(a *Agent) { a.Pool = "" }, "pool", "is not set"},
		{"pool", func(a *Agent) { a.Pool = "red" }, "pool", "use one of: blue, green"},
		{"instance id", func(a *Agent) { a.InstanceID = "web 1" }, "instance_id", "use 1-128 letters"},
		{"derived instance id too long", func(a *Agent) { a.NodeID = strings.Repeat("n", 100); a.Service = "w" + strings.Repeat("e", 40) },
			"instance_id", "is longer than 128 chars; set instance_id"},
		{"address missing", func(a *Agent) { a.Address = "" }, "address", "is not set"},
		{"address unspecified", func(a *Agent) { a.Address = "0.0.0.0" }, "address", "use the host's own IP address"},
		{"address not a host", func(a *Agent) { a.Address = "web_1!" }, "address", "not an IP address or a DNS name"},
		{"port missing", func(a *Agent) { a.Port = 0 }, "port", "is not set"},
		{"port too big", func(a *Agent) { a.Port = 65536 }, "port", "use 1-65535"},
		{"port negative", func(a *Agent) { a.Port = -1 }, "port", "use 1-65535"},
		{"keep releases", func(a *Agent) { a.KeepReleases = 1 }, "keep_releases", "the minimum is 2"},
		{"restart command empty program", func(a *Agent) { a.App.RestartCommand = []string{" ", "restart"} }, "app.restart_command[0]", "must be the program to run"},
		{"stop timeout no unit", func(a *Agent) { a.App.StopTimeout = "10" }, "app.stop_timeout", `like "10s"`},
		{"health timeout negative", func(a *Agent) { a.App.HealthTimeout = "-1s" }, "app.health_timeout", "longer than 0"},
		{"hook timeout no unit", func(a *Agent) { a.App.HookTimeout = "5" }, "app.hook_timeout", `like "10s"`},
		{"install timeout zero", func(a *Agent) { a.InstallTimeout = "0s" }, "install_timeout", "longer than 0"},
		{"check interval below consul minimum", func(a *Agent) { a.App.CheckInterval = "500ms" }, "app.check_interval", "Consul's minimum"},
		{"check interval garbage", func(a *Agent) { a.App.CheckInterval = "often" }, "app.check_interval", "is not a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAgent()
			tt.give(&a)
			wantOneProblem(t, a.Validate(), tt.wantPath, tt.wantMsg)
		})
	}
}

func TestAgentAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name string
		give func(a *Agent)
	}{
		{"token file", func(a *Agent) { a.ServerToken, a.ServerTokenFile = "", "/etc/cycler/fleet" }},
		{"host name address", func(a *Agent) { a.Address = "web-1.internal" }},
		{"ipv6 address", func(a *Agent) { a.Address = "fd00::7" }},
		{"server urls", func(a *Agent) { a.Servers = []string{"https://cyc.internal:7400", "http://10.0.0.5"} }},
		{"restart command", func(a *Agent) { a.App.RestartCommand = []string{"systemctl", "restart", "web"} }},
		{"explicit instance id", func(a *Agent) { a.InstanceID = "web-blue-7" }},
		{"one second checks", func(a *Agent) { a.App.CheckInterval = "1s" }},
		{"stop with agent", func(a *Agent) { a.App.StopWithAgent = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAgent()
			tt.give(&a)
			if err := a.Validate(); err != nil {
				t.Errorf("got problems:\n%v", err)
			}
		})
	}
}

func TestAgentInstance(t *testing.T) {
	tests := []struct {
		name string
		give Agent
		want string
	}{
		{"derived", Agent{Service: "web", NodeID: "host7"}, "web-host7"},
		{"explicit", Agent{Service: "web", NodeID: "host7", InstanceID: "w7"}, "w7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.Instance(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAgentDurations(t *testing.T) {
	tests := []struct {
		name string
		give func(a *Agent)
		get  func(a *Agent) time.Duration
		want time.Duration
	}{
		{"check interval default", func(*Agent) {}, func(a *Agent) time.Duration { return a.App.CheckIntervalDuration() }, 2 * time.Second},
		{"check interval set", func(a *Agent) { a.App.CheckInterval = "1s" }, func(a *Agent) time.Duration { return a.App.CheckIntervalDuration() }, time.Second},
		{"check interval too short falls back", func(a *Agent) { a.App.CheckInterval = "10ms" }, func(a *Agent) time.Duration { return a.App.CheckIntervalDuration() }, 2 * time.Second},
		{"hook timeout default", func(*Agent) {}, func(a *Agent) time.Duration { return a.App.HookTimeoutDuration() }, 5 * time.Minute},
		{"install timeout set", func(a *Agent) { a.InstallTimeout = "90s" }, func(a *Agent) time.Duration { return a.InstallTimeoutDuration() }, 90 * time.Second},
		{"install timeout default", func(*Agent) {}, func(a *Agent) time.Duration { return a.InstallTimeoutDuration() }, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAgent()
			tt.give(&a)
			if got := tt.get(&a); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

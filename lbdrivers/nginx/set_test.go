package nginx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give []lbdrivers.Backend
	}{
		{name: "ipv4", give: []lbdrivers.Backend{{ID: "web-1", Address: "10.0.0.1", Port: 80}}},
		{name: "ipv6", give: []lbdrivers.Backend{{ID: "web-2", Address: "fd00::1", Port: 65535}}},
		{name: "hostile id", give: []lbdrivers.Backend{{ID: "a b;}{\"\n$%-", Address: "10.0.0.1", Port: 1}}},
		{name: "empty and dash ids", give: []lbdrivers.Backend{{ID: "", Address: "10.0.0.1", Port: 1}, {ID: "-", Address: "10.0.0.2", Port: 1}}},
		{name: "hostname", give: []lbdrivers.Backend{{ID: "x", Address: "app.example.org", Port: 443}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sorted, err := checkSet(tt.give, false)
			if err != nil {
				t.Fatal(err)
			}
			body := encodeSet(99, sorted)
			if strings.ContainsAny(strings.TrimSuffix(string(body), "\n"), "\"{};$\\\r") {
				t.Errorf("encoded set holds a character nginx or Lua would read specially: %q", body)
			}
			gen, got, err := decodeSet(body)
			if err != nil {
				t.Fatal(err)
			}
			if gen != 99 || len(got) != len(sorted) {
				t.Fatalf("decoded gen %d, %d backends; want 99, %d", gen, len(got), len(sorted))
			}
			for i := range got {
				if got[i] != sorted[i] {
					t.Errorf("backend %d = %+v, want %+v", i, got[i], sorted[i])
				}
			}
		})
	}
}

func TestDecodeSetRejectsMalformed(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{name: "no newline", give: "cycler-backends 1\ngeneration 1"},
		{name: "bad header", give: "cycler-backends 2\ngeneration 1\n"},
		{name: "bad generation", give: "cycler-backends 1\ngeneration -1\n"},
		{name: "short line", give: "cycler-backends 1\ngeneration 1\nbackend 10.0.0.1 80\n"},
		{name: "bad port", give: "cycler-backends 1\ngeneration 1\nbackend 10.0.0.1 0 x\n"},
		{name: "bad address", give: "cycler-backends 1\ngeneration 1\nbackend a;b 80 x\n"},
		{name: "bad escape", give: "cycler-backends 1\ngeneration 1\nbackend 10.0.0.1 80 %zz\n"},
		{name: "truncated escape", give: "cycler-backends 1\ngeneration 1\nbackend 10.0.0.1 80 a%2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodeSet([]byte(tt.give)); err == nil {
				t.Errorf("decodeSet(%q) succeeded", tt.give)
			}
		})
	}
}

// hostileBackends are sets no mode may render or send.
var hostileBackends = []struct {
	name string
	give []lbdrivers.Backend
}{
	{name: "empty set", give: nil},
	{name: "space", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1 down", Port: 80}}},
	{name: "brace", give: []lbdrivers.Backend{{ID: "a", Address: "x}", Port: 80}}},
	{name: "semicolon", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1;include /etc/passwd", Port: 80}}},
	{name: "newline", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1\nserver evil", Port: 80}}},
	{name: "quote", give: []lbdrivers.Backend{{ID: "a", Address: `x"`, Port: 80}}},
	{name: "dollar", give: []lbdrivers.Backend{{ID: "a", Address: "$host", Port: 80}}},
	{name: "port zero", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 0}}},
	{name: "port too big", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 65536}}},
	{name: "port negative", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: -1}}},
	{name: "empty address", give: []lbdrivers.Backend{{ID: "a", Address: "", Port: 80}}},
	{name: "ipv6 zone", give: []lbdrivers.Backend{{ID: "a", Address: "fe80::1%eth0", Port: 80}}},
	{name: "bracketed ipv6", give: []lbdrivers.Backend{{ID: "a", Address: "[fd00::1]", Port: 80}}},
	{name: "duplicate host port", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 80}, {ID: "b", Address: "10.0.0.1", Port: 80}}},
	{name: "one bad among good", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 80}, {ID: "b", Address: "x{", Port: 80}}},
}

func TestCheckSetRejectsHostileInput(t *testing.T) {
	for _, mode := range []Mode{ModeDynamic, ModeReload} {
		for _, tt := range hostileBackends {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				if _, err := checkSet(tt.give, mode == ModeDynamic); err == nil {
					t.Errorf("checkSet accepted %+v", tt.give)
				}
			})
		}
	}
}

func TestCheckSetModeRules(t *testing.T) {
	host := []lbdrivers.Backend{{ID: "a", Address: "app.example.org", Port: 80}}
	if _, err := checkSet(host, true); err == nil || !strings.Contains(err.Error(), "reload") {
		t.Errorf("dynamic mode accepted a hostname or gave no hint: %v", err)
	}
	if _, err := checkSet(host, false); err != nil {
		t.Errorf("reload mode refused a hostname: %v", err)
	}
	if _, err := checkSet(nil, false); !errors.Is(err, ErrEmptySet) {
		t.Errorf("empty set: err %v, want ErrEmptySet", err)
	}
}

// TestApplyRejectsBeforeIO proves hostile input is refused before the driver
// talks to nginx: nothing listens on the admin address, so any attempt
// would fail with a connection error instead of the validation error.
func TestApplyRejectsBeforeIO(t *testing.T) {
	for _, mode := range []Mode{ModeDynamic, ModeReload} {
		o := goldenOpts(mode)
		o.AdminAddr = "127.0.0.1:9" // discard port; nothing answers HTTP
		d, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range hostileBackends {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := d.Apply(ctx, 5, tt.give)
				if err == nil {
					t.Fatal("Apply accepted hostile input")
				}
				if strings.Contains(err.Error(), "admin") || strings.Contains(err.Error(), "config check") {
					t.Errorf("Apply reached nginx before refusing: %v", err)
				}
			})
		}
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		give func(*Options)
		want string
	}{
		{name: "unknown mode", give: func(o *Options) { o.Mode = "hot" }, want: `mode "hot"`},
		{name: "public admin", give: func(o *Options) { o.AdminAddr = "0.0.0.0:7403" }, want: "loopback"},
		{name: "short secret", give: func(o *Options) { o.AdminSecret = "short" }, want: "at least 16"},
		{name: "secret with newline", give: func(o *Options) { o.AdminSecret = "0123456789abcdef\nX: y" }, want: "control characters"},
		{name: "service not listed", give: func(o *Options) { o.Service = "db" }, want: `service "db"`},
		{name: "quote in path", give: func(o *Options) { o.ConfigDir = `/etc/nginx/"x` }, want: "config_dir"},
		{name: "relative path", give: func(o *Options) { o.MainConfig = "nginx.conf" }, want: "main_config"},
		{name: "bad service name", give: func(o *Options) { o.Services = append(o.Services, Service{Name: "Web;", Listen: ":81"}) }, want: `"Web;"`},
		{name: "duplicate listen", give: func(o *Options) { o.Services[1].Listen = o.Services[0].Listen }, want: "both listen"},
		{name: "bad listen", give: func(o *Options) { o.Services[0].Listen = "localhost:80" }, want: "not an IP"},
		{name: "standalone without prefix", give: func(o *Options) { o.Prefix = "" }, want: "prefix is empty"},
		{name: "bad user", give: func(o *Options) { o.User = "root; daemon on" }, want: "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goldenOpts(ModeDynamic)
			o.Services = append([]Service(nil), o.Services...)
			tt.give(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	// Several problems are reported together.
	o := goldenOpts(ModeDynamic)
	o.AdminAddr, o.AdminSecret = "10.0.0.1:1", ""
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "admin_secret") {
		t.Errorf("New did not report both problems: %v", err)
	}
}

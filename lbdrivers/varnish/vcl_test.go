package varnish

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var goldenSet = []lbdrivers.Backend{
	{ID: "web-green-2", Address: "fd00::2", Port: 8080},
	{ID: "web green 1", Address: "10.0.0.11", Port: 8080},
	{ID: "", Address: "app-3.internal.example", Port: 9000},
}

func goldenOptions() Options {
	return Options{
		AdminAddr:  "127.0.0.1:6082",
		SecretFile: "/etc/varnish/secret",
		VCLDir:     "/etc/varnish/cycler",
		KeepVCLs:   2,
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update if intended)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestRenderVCLGolden(t *testing.T) {
	withProbe := goldenOptions()
	withProbe.Probe = &Probe{URL: "/health", Interval: 2 * time.Second, Timeout: 500 * time.Millisecond, Window: 5, Threshold: 3}
	withProbe.Include = "/etc/varnish/site.vcl"
	noBan := goldenOptions()
	noBan.BanOnSwitch = new(bool)
	tests := []struct {
		golden string
		give   Options
	}{
		{golden: "plain.vcl.golden", give: goldenOptions()},
		{golden: "probe_include.vcl.golden", give: withProbe},
		{golden: "no_ban.vcl.golden", give: noBan},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			sorted, err := checkSet(goldenSet)
			if err != nil {
				t.Fatal(err)
			}
			src := renderVCL(tt.give, sorted)
			checkGolden(t, tt.golden, src)

			// What the driver renders, it can read back.
			info, err := parseVCL(string(src))
			if err != nil {
				t.Fatal(err)
			}
			var got []lbdrivers.Backend
			for _, b := range info.defs {
				got = append(got, b)
			}
			if info.legacy || !slices.Equal(lbdrivers.Sorted(got), sorted) {
				t.Errorf("parseVCL = legacy %v %v, want %v", info.legacy, lbdrivers.Sorted(got), sorted)
			}
		})
	}
}

func TestParseVCLRefusesEdits(t *testing.T) {
	sorted, err := checkSet(goldenSet[:1])
	if err != nil {
		t.Fatal(err)
	}
	src := string(renderVCL(goldenOptions(), sorted))
	edited := strings.Replace(src, `"8080"`, `"8081"`, 1)
	if _, err := parseVCL(edited); err == nil {
		t.Error("parseVCL accepted a backend whose address no longer matches its name")
	}
	if _, err := parseVCL("vcl 4.1;\nbackend default { .host = \"x\"; }\n"); err == nil {
		t.Error("parseVCL accepted a VCL cyclerd did not render")
	}
	// A VCL of an older cyclerd, with the generation compiled in, is read
	// as legacy so that the next Apply replaces it.
	legacy := "vcl 4.1;\n# cycler-generation 7\n\n# id a\nbackend b_x {\n"
	if info, err := parseVCL(legacy); err != nil || !info.legacy || info.legacyGen != 7 {
		t.Errorf("parseVCL(legacy) = %+v, %v; want legacy generation 7", info, err)
	}
}

var hostileBackends = []struct {
	name string
	give []lbdrivers.Backend
}{
	{name: "empty set", give: nil},
	{name: "space", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1 x", Port: 80}}},
	{name: "brace", give: []lbdrivers.Backend{{ID: "a", Address: "x}", Port: 80}}},
	{name: "semicolon", give: []lbdrivers.Backend{{ID: "a", Address: "x;", Port: 80}}},
	{name: "newline", give: []lbdrivers.Backend{{ID: "a", Address: "x\nsub vcl_recv {}", Port: 80}}},
	{name: "quote", give: []lbdrivers.Backend{{ID: "a", Address: `x"; .port = "1`, Port: 80}}},
	{name: "port zero", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 0}}},
	{name: "port too big", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 70000}}},
	{name: "ipv6 zone", give: []lbdrivers.Backend{{ID: "a", Address: "fe80::1%eth0", Port: 80}}},
	{name: "duplicate", give: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 80}, {ID: "b", Address: "10.0.0.1", Port: 80}}},
}

func TestCheckSetRejectsHostileInput(t *testing.T) {
	for _, tt := range hostileBackends {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := checkSet(tt.give); err == nil {
				t.Errorf("checkSet accepted %+v", tt.give)
			}
		})
	}
	if _, err := checkSet(nil); !errors.Is(err, ErrEmptySet) {
		t.Errorf("empty set: err %v, want ErrEmptySet", err)
	}
}

// TestApplyRejectsBeforeIO: nothing listens on the admin address, so any
// contact would fail differently from the validation error.
func TestApplyRejectsBeforeIO(t *testing.T) {
	o := goldenOptions()
	o.AdminAddr = "127.0.0.1:9"
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range hostileBackends {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := d.Apply(ctx, 1, tt.give)
			if err == nil || strings.Contains(err.Error(), "connect") {
				t.Errorf("Apply: err %v, want a validation error before any connection", err)
			}
		})
	}
}

func TestVCLNames(t *testing.T) {
	tests := []struct {
		give   string
		want   vclName
		wantOK bool
	}{
		{give: "cycler_42_1", want: vclName{gen: 42, n: 1}, wantOK: true},
		{give: "cycler_18446744073709551615_3", want: vclName{gen: 1<<64 - 1, n: 3}, wantOK: true},
		{give: "cycler_18446744073709551616_1"},
		{give: "boot"},
		{give: "cycler_1"},
		{give: "cycler_1_1x"},
	}
	for _, tt := range tests {
		got, ok := parseVCLName(tt.give)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("parseVCLName(%q) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
		if ok && got.String() != tt.give {
			t.Errorf("%q round-trips to %q", tt.give, got.String())
		}
	}
	loaded := []vclEntry{{Name: "boot"}, {Name: "cycler_7_1"}, {Name: "cycler_7_3"}, {Name: "cycler_8_1"}}
	if got := nextName(loaded, 7); got != (vclName{gen: 7, n: 4}) {
		t.Errorf("nextName(7) = %v, want cycler_7_4", got)
	}
	if got := nextName(loaded, 9); got != (vclName{gen: 9, n: 1}) {
		t.Errorf("nextName(9) = %v, want cycler_9_1", got)
	}
}

func TestNewReportsProblems(t *testing.T) {
	tests := []struct {
		name string
		give func(*Options)
		want string
	}{
		{name: "no admin", give: func(o *Options) { o.AdminAddr = "" }, want: "admin_addr"},
		{name: "no secret", give: func(o *Options) { o.SecretFile = "" }, want: "secret_file"},
		{name: "relative vcl dir", give: func(o *Options) { o.VCLDir = "cycler" }, want: "vcl_dir"},
		{name: "quote in include", give: func(o *Options) { o.Include = `/etc/x".vcl` }, want: "include"},
		{name: "keep none", give: func(o *Options) { o.KeepVCLs = -1 }, want: "keep_vcls"},
		{name: "probe url", give: func(o *Options) {
			o.Probe = &Probe{URL: `/h"`, Interval: time.Second, Timeout: time.Second, Window: 3, Threshold: 2}
		}, want: "probe url"},
		{name: "probe threshold", give: func(o *Options) {
			o.Probe = &Probe{URL: "/h", Interval: time.Second, Timeout: time.Second, Window: 3, Threshold: 4}
		}, want: "threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goldenOptions()
			tt.give(&o)
			if _, err := New(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestRenderedVCLCompiles compiles the rendered VCL with the real varnishd
// (-C prints the generated C and exits; nothing is started). -j none keeps
// varnishd as the test's user: as root it would switch to the varnish user,
// which cannot read the test's 0700 temp dir. It skips only when varnishd is
// not installed.
func TestRenderedVCLCompiles(t *testing.T) {
	bin, err := exec.LookPath("varnishd")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/varnishd"); err != nil {
			t.Skipf("varnishd not installed (install it with `make deps`): %v", err)
		}
	}
	dir := t.TempDir()
	site := filepath.Join(dir, "site.vcl")
	if err := os.WriteFile(site, []byte("sub vcl_recv {\n    return (pass);\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := goldenOptions()
	o.Include = site
	o.Probe = &Probe{URL: "/health", Interval: time.Second, Timeout: 500 * time.Millisecond, Window: 3, Threshold: 2}
	sorted, err := checkSet([]lbdrivers.Backend{{ID: "a", Address: "127.0.0.1", Port: 8080}, {ID: "b", Address: "::1", Port: 8081}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cycler_1_1.vcl")
	if err := os.WriteFile(path, renderVCL(o, sorted), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-C", "-j", "none", "-n", filepath.Join(dir, "work"), "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("varnishd -C refused the rendered VCL: %v\n%s", err, out)
	}
}

package execdriver

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/lbdrivers"
)

func TestParseInfo(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    Info
		wantErr error
	}{
		{name: "ok", give: `{"protocol":1,"name":"haproxy"}`, want: Info{Protocol: 1, Name: "haproxy"}},
		{name: "unknown fields allowed", give: `{"protocol":1,"name":"f5","vendor":"x"}` + "\n", want: Info{Protocol: 1, Name: "f5"}},
		{name: "newer protocol", give: `{"protocol":2,"name":"haproxy"}`, wantErr: ErrProtocolVersion},
		{name: "protocol zero", give: `{"protocol":0,"name":"haproxy"}`, wantErr: ErrProtocolVersion},
		{name: "no protocol", give: `{"name":"haproxy"}`, wantErr: ErrBadOutput},
		{name: "protocol as string", give: `{"protocol":"1","name":"haproxy"}`, wantErr: ErrBadOutput},
		{name: "no name", give: `{"protocol":1}`, wantErr: ErrBadOutput},
		{name: "name with space", give: `{"protocol":1,"name":"ha proxy"}`, wantErr: ErrBadOutput},
		{name: "upper-case name", give: `{"protocol":1,"name":"HAProxy"}`, wantErr: ErrBadOutput},
		{name: "not json", give: `haproxy 2.6`, wantErr: ErrBadOutput},
		{name: "empty", give: ``, wantErr: ErrBadOutput},
		{name: "two values", give: `{"protocol":1,"name":"a"}{"protocol":1,"name":"b"}`, wantErr: ErrBadOutput},
		{name: "trailing garbage", give: `{"protocol":1,"name":"a"} ok`, wantErr: ErrBadOutput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInfo([]byte(tt.give))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("parseInfo(%q) = %+v, %v; want %+v, %v", tt.give, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseApplied(t *testing.T) {
	b1 := lbdrivers.Backend{ID: "web-blue-1", Address: "10.0.0.1", Port: 8080}
	b2 := lbdrivers.Backend{ID: "web-blue-2", Address: "fd00::2", Port: 8080}
	tests := []struct {
		name     string
		give     string
		wantGen  uint64
		wantSet  []lbdrivers.Backend
		wantErr  error
		errMatch string
	}{
		{
			name:    "ok, sorted",
			give:    `{"generation":12,"backends":[{"id":"web-blue-2","address":"fd00::2","port":8080},{"id":"web-blue-1","address":"10.0.0.1","port":8080}]}`,
			wantGen: 12, wantSet: []lbdrivers.Backend{b1, b2},
		},
		{
			name:    "unknown fields allowed",
			give:    `{"protocol":1,"generation":3,"backends":[{"id":"web-blue-1","address":"10.0.0.1","port":8080,"weight":10}],"lb":"x"}`,
			wantGen: 3, wantSet: []lbdrivers.Backend{b1},
		},
		{name: "before first apply", give: `{"generation":0,"backends":[]}`, wantGen: 0, wantSet: []lbdrivers.Backend{}},
		{name: "no generation", give: `{"backends":[]}`, wantErr: ErrBadOutput, errMatch: "no generation"},
		{name: "null generation", give: `{"generation":null,"backends":[]}`, wantErr: ErrBadOutput, errMatch: "no generation"},
		{name: "negative generation", give: `{"generation":-1,"backends":[]}`, wantErr: ErrBadOutput},
		{name: "fractional generation", give: `{"generation":1.5,"backends":[]}`, wantErr: ErrBadOutput},
		{name: "no backends", give: `{"generation":1}`, wantErr: ErrBadOutput, errMatch: "no backends"},
		{name: "null backends", give: `{"generation":1,"backends":null}`, wantErr: ErrBadOutput, errMatch: "no backends"},
		{name: "backends not an array", give: `{"generation":1,"backends":{}}`, wantErr: ErrBadOutput},
		{name: "other protocol", give: `{"protocol":2,"generation":1,"backends":[]}`, wantErr: ErrBadOutput, errMatch: "protocol 2"},
		{
			name:    "hostile address",
			give:    `{"generation":1,"backends":[{"id":"x","address":"10.0.0.1;reboot","port":80}]}`,
			wantErr: ErrBadOutput, errMatch: "neither an IP address",
		},
		{name: "port zero", give: `{"generation":1,"backends":[{"id":"x","address":"10.0.0.1","port":0}]}`, wantErr: ErrBadOutput, errMatch: "out of range"},
		{name: "no id", give: `{"generation":1,"backends":[{"address":"10.0.0.1","port":80}]}`, wantErr: ErrBadOutput, errMatch: "id is empty"},
		{name: "truncated", give: `{"generation":1,"backends":[`, wantErr: ErrBadOutput},
		{name: "two answers", give: `{"generation":1,"backends":[]} {"generation":2,"backends":[]}`, wantErr: ErrBadOutput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gen, set, err := parseApplied([]byte(tt.give))
			if !errors.Is(err, tt.wantErr) || !strings.Contains(errString(err), tt.errMatch) {
				t.Fatalf("parseApplied(%q) error = %v; want %v containing %q", tt.give, err, tt.wantErr, tt.errMatch)
			}
			if gen != tt.wantGen || !slices.Equal(set, tt.wantSet) {
				t.Fatalf("parseApplied(%q) = %d %v; want %d %v", tt.give, gen, set, tt.wantGen, tt.wantSet)
			}
		})
	}
}

func TestTailBuffer(t *testing.T) {
	long := strings.Repeat("y", 300)
	tests := []struct {
		name   string
		writes []string
		max    int
		want   string
	}{
		{name: "short", writes: []string{"one\n", "two\n"}, max: 100, want: "one\ntwo"},
		{name: "blank lines and space dropped", writes: []string{"\n  one  \n\n\ttwo\n\n"}, max: 100, want: "one\ntwo"},
		{name: "control characters replaced", writes: []string{"a\x1b[31mred\x00\n"}, max: 100, want: "a [31mred"},
		{name: "invalid utf-8 replaced", writes: []string{"a\xffb\n"}, max: 100, want: "a\uFFFDb"},
		{name: "limit at a line start", writes: []string{"first line\n", "second\n", "last\n"}, max: 12, want: "second\nlast"},
		{name: "cut line dropped", writes: []string{"first line\n", "second\n", "last\n"}, max: 10, want: "last"},
		{name: "many small writes", writes: slices.Repeat([]string{"x\n"}, 1000), max: 6, want: "x\nx\nx"},
		{name: "one long line kept in part", writes: []string{long}, max: 10, want: strings.Repeat("y", 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := &tailBuffer{max: tt.max}
			for _, w := range tt.writes {
				if n, err := tb.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := tb.String(); got != tt.want {
				t.Fatalf("tail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCommandErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		give CommandError
		want string
	}{
		{name: "exit", give: CommandError{Verb: "apply", ExitCode: 1, Stderr: "a\nb"}, want: "apply: exit status 1: a; b"},
		{name: "signal", give: CommandError{Verb: "applied", ExitCode: -1, Signal: "killed"}, want: "applied: killed by killed: (nothing on stderr)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.Error(); got != tt.want {
				t.Fatalf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSameAddrs(t *testing.T) {
	b := func(addr string, port int) lbdrivers.Backend {
		return lbdrivers.Backend{ID: addr, Address: addr, Port: port}
	}
	tests := []struct {
		name string
		a, b []lbdrivers.Backend
		want bool
	}{
		{name: "same order", a: []lbdrivers.Backend{b("10.0.0.1", 80)}, b: []lbdrivers.Backend{b("10.0.0.1", 80)}, want: true},
		{name: "any order", a: []lbdrivers.Backend{b("10.0.0.1", 80), b("10.0.0.2", 80)}, b: []lbdrivers.Backend{b("10.0.0.2", 80), b("10.0.0.1", 80)}, want: true},
		{name: "ids are labels", a: []lbdrivers.Backend{{ID: "a", Address: "10.0.0.1", Port: 80}}, b: []lbdrivers.Backend{{ID: "s1", Address: "10.0.0.1", Port: 80}}, want: true},
		{name: "IPv6 written two ways", a: []lbdrivers.Backend{b("fd00:0:0::1", 80)}, b: []lbdrivers.Backend{b("fd00::1", 80)}, want: true},
		{name: "hostname case", a: []lbdrivers.Backend{b("App.example", 80)}, b: []lbdrivers.Backend{b("app.example", 80)}, want: true},
		{name: "other port", a: []lbdrivers.Backend{b("10.0.0.1", 80)}, b: []lbdrivers.Backend{b("10.0.0.1", 81)}, want: false},
		{name: "duplicate is not a second backend", a: []lbdrivers.Backend{b("10.0.0.1", 80), b("10.0.0.1", 80)}, b: []lbdrivers.Backend{b("10.0.0.1", 80), b("10.0.0.2", 80)}, want: false},
		{name: "fewer", a: []lbdrivers.Backend{b("10.0.0.1", 80)}, b: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameAddrs(tt.a, tt.b); got != tt.want {
				t.Fatalf("sameAddrs(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

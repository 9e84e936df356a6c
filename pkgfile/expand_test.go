package pkgfile_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/cyclerhq/cycler/pkgfile"
)

func TestExpandString(t *testing.T) {
	env := map[string]string{
		pkgfile.EnvAddr:       "127.0.0.1:9001",
		pkgfile.EnvPort:       "9001",
		pkgfile.EnvVersion:    "2.4.1",
		pkgfile.EnvReleaseDir: "/srv/releases/2.4.1-abc",
		"HOME":                "/root",
	}
	tests := []struct {
		name string
		give string
		want string
	}{
		{"no dollar", "--listen", "--listen"},
		{"whole argument", "$CYCLER_ADDR", "127.0.0.1:9001"},
		{"whole argument braces", "${CYCLER_ADDR}", "127.0.0.1:9001"},
		{"embedded braces", "127.0.0.1:${CYCLER_PORT}", "127.0.0.1:9001"},
		{"embedded bare", "--port=$CYCLER_PORT", "--port=9001"},
		{"braces end the name", "${CYCLER_PORT}0", "90010"},
		{"bare name is greedy", "$CYCLER_PORTX", "$CYCLER_PORTX"},
		{"bare name stops at punctuation", "$CYCLER_RELEASE_DIR/bin", "/srv/releases/2.4.1-abc/bin"},
		{"two references", "${CYCLER_VERSION}@$CYCLER_ADDR", "2.4.1@127.0.0.1:9001"},
		{"escaped dollar", "$$CYCLER_ADDR", "$CYCLER_ADDR"},
		{"escaped braces", "$${CYCLER_ADDR}", "${CYCLER_ADDR}"},
		{"escaped then reference", "$$$CYCLER_PORT", "$9001"},
		{"known but unset is empty", "[${CYCLER_POOL}]", "[]"},
		{"other variables are not expanded", "$HOME ${HOME}", "$HOME ${HOME}"},
		{"lone dollar at the end", "cost 5$", "cost 5$"},
		{"dollar digit", "$1", "$1"},
		{"dollar space", "a $ b", "a $ b"},
		{"unterminated braces", "${CYCLER_ADDR", "${CYCLER_ADDR"},
		{"empty braces", "${}x", "${}x"},
		{"invalid name in braces", "${CYCLER-ADDR}", "${CYCLER-ADDR}"},
		{"lower-case name", "$cycler_addr", "$cycler_addr"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pkgfile.ExpandString(tt.give, env); got != tt.want {
				t.Errorf("ExpandString(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestExpandArgs(t *testing.T) {
	env := map[string]string{pkgfile.EnvAddr: "10.0.0.1:80", pkgfile.EnvInstance: "web-1"}
	tests := []struct {
		name string
		give []string
		want []string
	}{
		{"nil", nil, nil},
		{"empty", []string{}, []string{}},
		{"demo app", []string{"./cycler-demoapp", "-listen", "${CYCLER_ADDR}", "-instance", "$CYCLER_INSTANCE"},
			[]string{"./cycler-demoapp", "-listen", "10.0.0.1:80", "-instance", "web-1"}},
		{"no word splitting", []string{"${CYCLER_ADDR} x"}, []string{"10.0.0.1:80 x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.give)
			got := pkgfile.ExpandArgs(tt.give, env)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ExpandArgs(%q) = %q, want %q", tt.give, got, tt.want)
			}
			if !reflect.DeepEqual(tt.give, in) {
				t.Errorf("ExpandArgs modified its input: %q, was %q", tt.give, in)
			}
		})
	}
}

func TestVariables(t *testing.T) {
	want := []string{"CYCLER_ADDR", "CYCLER_HOST", "CYCLER_PORT", "CYCLER_VERSION", "CYCLER_INSTANCE", "CYCLER_POOL", "CYCLER_RELEASE_DIR"}
	got := pkgfile.Variables()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Variables() = %q, want %q", got, want)
	}
	got[0] = "changed"
	if pkgfile.Variables()[0] != "CYCLER_ADDR" {
		t.Error("Variables returns the package's own slice")
	}
	// Every variable is accepted by Validate, as a whole argument and
	// embedded.
	for _, v := range want {
		m := pkgfile.Manifest{Name: "web", Version: "1", Start: &pkgfile.Start{Command: []string{"x", "$" + v, "a${" + v + "}b"}}}
		if err := m.Validate(); err != nil {
			t.Errorf("Validate with %s: %v", v, err)
		}
	}
}

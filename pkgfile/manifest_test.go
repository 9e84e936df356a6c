package pkgfile_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/pkgfile"
)

const fullHCL = `name    = "web"
version = "2.4.1"
start {
  command = ["./bin/web", "--listen", "${CYCLER_ADDR}", "127.0.0.1:$CYCLER_PORT"]
  env     = { LOG_LEVEL = "info", "DIR" = "${CYCLER_RELEASE_DIR}/data" }
}
health {
  http_path = "/health"
  timeout   = "45s"
}
hooks {
  pre_switch  = [["./bin/migrate", "--check"], ["true"]]
  post_switch = []
}
`

const fullJSON = `{
  "name": "web",
  "version": "2.4.1",
  "start": {
    "command": ["./bin/web", "--listen", "${CYCLER_ADDR}", "127.0.0.1:$CYCLER_PORT"],
    "env": {"LOG_LEVEL": "info", "DIR": "${CYCLER_RELEASE_DIR}/data"}
  },
  "health": {"http_path": "/health", "timeout": "45s"},
  "hooks": {"pre_switch": [["./bin/migrate", "--check"], ["true"]], "post_switch": []}
}`

func fullManifest() pkgfile.Manifest {
	return pkgfile.Manifest{
		Name:    "web",
		Version: "2.4.1",
		Start: &pkgfile.Start{
			Command: []string{"./bin/web", "--listen", "${CYCLER_ADDR}", "127.0.0.1:$CYCLER_PORT"},
			Env:     map[string]string{"LOG_LEVEL": "info", "DIR": "${CYCLER_RELEASE_DIR}/data"},
		},
		Health: &pkgfile.Health{HTTPPath: "/health", Timeout: 45 * time.Second},
		Hooks:  pkgfile.Hooks{PreSwitch: [][]string{{"./bin/migrate", "--check"}, {"true"}}, PostSwitch: [][]string{}},
	}
}

func TestParseManifestValid(t *testing.T) {
	minimalHealth := &pkgfile.Health{TCP: true, Timeout: pkgfile.DefaultHealthTimeout}
	tests := []struct {
		name string
		file string
		give string
		want pkgfile.Manifest
	}{
		{"hcl full", "cycler.hcl", fullHCL, fullManifest()},
		{"json full", "cycler.json", fullJSON, func() pkgfile.Manifest {
			m := fullManifest()
			m.Hooks.PostSwitch = [][]string{}
			return m
		}()},
		{"hcl minimal", "cycler.hcl", "name = \"web\"\nversion = \"1\"\n", pkgfile.Manifest{Name: "web", Version: "1"}},
		{"json minimal", "cycler.json", `{"name": "web", "version": "1"}`, pkgfile.Manifest{Name: "web", Version: "1"}},
		{"hcl tcp health gets the default timeout", "cycler.hcl", "name = \"web\"\nversion = \"1\"\nhealth {\n tcp = true\n}\n",
			pkgfile.Manifest{Name: "web", Version: "1", Health: minimalHealth}},
		{"json tcp health gets the default timeout", "cycler.json", `{"name": "web", "version": "1", "health": {"tcp": true}}`,
			pkgfile.Manifest{Name: "web", Version: "1", Health: minimalHealth}},
		{"hcl null means unset", "cycler.hcl", "name = \"web\"\nversion = \"1\"\nhealth {\n tcp = true\n timeout = null\n}\n",
			pkgfile.Manifest{Name: "web", Version: "1", Health: minimalHealth}},
		{"hcl escaped template", "cycler.hcl", "name = \"web\"\nversion = \"1\"\nstart {\n command = [\"a\", \"$${CYCLER_ADDR}\", \"$$x\"]\n}\n",
			pkgfile.Manifest{Name: "web", Version: "1", Start: &pkgfile.Start{Command: []string{"a", "${CYCLER_ADDR}", "$$x"}}}},
		{"path picks the format", "pkg/dir/cycler.json", `{"name": "web", "version": "1"}`, pkgfile.Manifest{Name: "web", Version: "1"}},
		{"version characters", "cycler.json", `{"name": "a-1", "version": "1.2.3-rc.1+build_7"}`, pkgfile.Manifest{Name: "a-1", Version: "1.2.3-rc.1+build_7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pkgfile.ParseManifest(tt.file, []byte(tt.give))
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseManifest =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestParseManifestProblems(t *testing.T) {
	const head = "name = \"web\"\nversion = \"1\"\n" // lines 1-2
	tests := []struct {
		name string
		file string
		give string
		want []string // substrings of the error, each expected
	}{
		// HCL strictness: every problem with its line.
		{"hcl syntax", "cycler.hcl", head + "start {\n", []string{"cycler.hcl:3"}},
		{"hcl unknown top key", "cycler.hcl", head + "nmae = \"x\"\n", []string{`cycler.hcl:3: nmae: is not a known setting (the manifest takes: name, version, health, hooks, start)`}},
		{"hcl unknown block", "cycler.hcl", head + "stop {\n}\n", []string{"cycler.hcl:3: stop: is not a known setting"}},
		{"hcl unknown key in start", "cycler.hcl", head + "start {\n  command = [\"a\"]\n  cmd = [\"a\"]\n}\n", []string{"cycler.hcl:5: start.cmd: is not a known setting (start takes: command, env)"}},
		{"hcl unknown key in health", "cycler.hcl", head + "health {\n  tcp = true\n  path = \"/\"\n}\n", []string{"cycler.hcl:5: health.path: is not a known setting"}},
		{"hcl unknown key in hooks", "cycler.hcl", head + "hooks {\n  pre = []\n}\n", []string{"cycler.hcl:4: hooks.pre: is not a known setting"}},
		{"hcl block as setting", "cycler.hcl", head + "start = {}\n", []string{"cycler.hcl:3: start: is a block, not a setting"}},
		{"hcl setting as block", "cycler.hcl", head + "start {\n  env {\n  }\n  command = [\"a\"]\n}\n", []string{"cycler.hcl:4: start.env: is a setting, not a block"}},
		{"hcl duplicate block", "cycler.hcl", head + "health {\n tcp = true\n}\nhealth {\n tcp = true\n}\n", []string{"cycler.hcl:6: health: appears twice; only one health block is allowed (the first is at cycler.hcl:3)"}},
		{"hcl block label", "cycler.hcl", head + "start \"x\" {\n command = [\"a\"]\n}\n", []string{"cycler.hcl:3: start: takes no label"}},
		{"hcl number for string", "cycler.hcl", "name = \"web\"\nversion = 1\n", []string{"cycler.hcl:2: version 1: must be a string in double quotes"}},
		{"hcl function call", "cycler.hcl", "name = upper(\"web\")\nversion = \"1\"\n", []string{`cycler.hcl:1: name upper("web"): must be a string`}},
		{"hcl bare reference", "cycler.hcl", head + "start {\n command = [CYCLER_ADDR]\n}\n", []string{"cycler.hcl:4: start.command[0] CYCLER_ADDR: is a reference, not a value"}},
		{"hcl expression in template", "cycler.hcl", head + "start {\n command = [\"${1 + 1}\"]\n}\n", []string{"cycler.hcl:4: start.command[0] 1 + 1: is not allowed in a string"}},
		{"hcl attribute reference in template", "cycler.hcl", head + "start {\n command = [\"${a.b}\"]\n}\n", []string{"cycler.hcl:4: start.command[0] a.b: is not allowed in a string"}},
		{"hcl command is a string", "cycler.hcl", head + "start {\n command = \"./bin/web --x\"\n}\n", []string{"cycler.hcl:4: start.command \"./bin/web --x\": must be a list of strings"}},
		{"hcl env not an object", "cycler.hcl", head + "start {\n command = [\"a\"]\n env = [\"A=b\"]\n}\n", []string{"cycler.hcl:5: start.env [\"A=b\"]: must be an object of strings"}},
		{"hcl env duplicate key", "cycler.hcl", head + "start {\n command = [\"a\"]\n env = {\n  A = \"1\"\n  \"A\" = \"2\"\n }\n}\n", []string{"cycler.hcl:7: start.env.A: is set twice (the first is at cycler.hcl:6)"}},
		{"hcl env computed key", "cycler.hcl", head + "start {\n command = [\"a\"]\n env = { (A) = \"1\" }\n}\n", []string{"cycler.hcl:5: start.env", "has a key that is not a name or a plain string"}},
		{"hcl tcp not bool", "cycler.hcl", head + "health {\n tcp = \"yes\"\n}\n", []string{"cycler.hcl:4: health.tcp \"yes\": must be true or false"}},
		{"hcl bad timeout", "cycler.hcl", head + "health {\n tcp = true\n timeout = \"30\"\n}\n", []string{`cycler.hcl:5: health.timeout "30": must be a duration like "30s"`}},
		{"hcl hooks not a list of lists", "cycler.hcl", head + "hooks {\n pre_switch = \"./x\"\n}\n", []string{"cycler.hcl:4: hooks.pre_switch \"./x\": must be a list of commands"}},
		{"hcl hook not a list", "cycler.hcl", head + "hooks {\n pre_switch = [\"./x\"]\n}\n", []string{"cycler.hcl:4: hooks.pre_switch[0] \"./x\": must be a list of strings"}},
		{"hcl several problems", "cycler.hcl", "nam = \"web\"\nversion = 2\nextra = 1\n", []string{"(3 problems)", "cycler.hcl:1: nam", "cycler.hcl:2: version", "cycler.hcl:3: extra"}},

		// Validation rules, with the line of the offending value.
		{"name missing", "cycler.hcl", "version = \"1\"\n", []string{"cycler.hcl: name: is required"}},
		{"name uppercase", "cycler.hcl", "name = \"Web\"\nversion = \"1\"\n", []string{`cycler.hcl:1: name "Web": must be 1 to 63 lowercase letters`}},
		{"name starts with digit", "cycler.json", `{"name": "1web", "version": "1"}`, []string{`cycler.json: name "1web": must be`}},
		{"name too long", "cycler.json", `{"name": "a` + strings.Repeat("b", 63) + `", "version": "1"}`, []string{"name \"abbb", "must be 1 to 63"}},
		{"version missing", "cycler.hcl", "name = \"web\"\n", []string{"cycler.hcl: version: is required"}},
		{"version with slash", "cycler.hcl", "name = \"web\"\nversion = \"1/2\"\n", []string{`cycler.hcl:2: version "1/2": must be 1 to 64 characters`}},
		{"version with space", "cycler.hcl", "name = \"web\"\nversion = \"1 2\"\n", []string{`version "1 2": must be`}},
		{"version heredoc keeps its newline", "cycler.hcl", "name = \"web\"\nversion = <<EOT\n1.0\nEOT\n", []string{`cycler.hcl:2: version "1.0\n": must be`}},
		{"version dots", "cycler.hcl", "name = \"web\"\nversion = \"..\"\n", []string{`cycler.hcl:2: version "..": must not be only dots`}},
		{"version too long", "cycler.json", `{"name": "web", "version": "` + strings.Repeat("1", 65) + `"}`, []string{"version \"111", "must be 1 to 64"}},
		{"start without command", "cycler.hcl", head + "start {\n}\n", []string{"cycler.hcl:3: start.command: is required when start is set"}},
		{"empty program", "cycler.hcl", head + "start {\n command = [\"\", \"x\"]\n}\n", []string{`cycler.hcl:4: start.command[0] "": is the program to run and must not be empty`}},
		{"NUL in argument", "cycler.json", `{"name": "web", "version": "1", "start": {"command": ["a", "b\u0000c"]}}`, []string{`start.command[1] "b\x00c": contains a NUL byte`}},
		{"unknown variable", "cycler.hcl", head + "start {\n command = [\"a\",\n  \"--home=${HOME}\"]\n}\n", []string{`cycler.hcl:5: start.command[1] "--home=${HOME}": references $HOME, which the agent does not set`}},
		{"unknown bare variable", "cycler.hcl", head + "start {\n command = [\"a\", \"$CYCLER_PORTS\"]\n}\n", []string{`start.command[1] "$CYCLER_PORTS": references $CYCLER_PORTS`}},
		{"unterminated reference", "cycler.json", `{"name": "web", "version": "1", "start": {"command": ["a", "${CYCLER_ADDR"]}}`, []string{`start.command[1] "${CYCLER_ADDR": has a ${ without a closing }`}},
		{"empty reference", "cycler.json", `{"name": "web", "version": "1", "start": {"command": ["a", "${}"]}}`, []string{`start.command[1] "${}": has ${}, which is not a variable reference`}},
		{"env bad key", "cycler.json", `{"name": "web", "version": "1", "start": {"command": ["a"], "env": {"1A": "x"}}}`, []string{"start.env.1A: is not an environment variable name"}},
		{"env reserved key", "cycler.hcl", head + "start {\n command = [\"a\"]\n env = { CYCLER_ADDR = \"x\" }\n}\n", []string{"cycler.hcl:5: start.env.CYCLER_ADDR: is set by the agent"}},
		{"env bad reference", "cycler.hcl", head + "start {\n command = [\"a\"]\n env = { A = \"$PATH:x\" }\n}\n", []string{`cycler.hcl:5: start.env.A "$PATH:x": references $PATH`}},
		{"health both", "cycler.hcl", head + "health {\n http_path = \"/h\"\n tcp = true\n}\n", []string{"cycler.hcl:3: health: sets both http_path and tcp"}},
		{"health neither", "cycler.hcl", head + "health {\n timeout = \"5s\"\n}\n", []string{"cycler.hcl:3: health: needs http_path"}},
		{"health relative path", "cycler.hcl", head + "health {\n http_path = \"health\"\n}\n", []string{`cycler.hcl:4: health.http_path "health": must start with "/"`}},
		{"health path with space", "cycler.json", `{"name": "web", "version": "1", "health": {"http_path": "/a b"}}`, []string{`health.http_path "/a b": must start with "/"`}},
		{"health zero timeout", "cycler.hcl", head + "health {\n tcp = true\n timeout = \"0s\"\n}\n", []string{`cycler.hcl:5: health.timeout "0s": must be more than 0s and at most 1h0m0s`}},
		{"health negative timeout", "cycler.json", `{"name": "web", "version": "1", "health": {"tcp": true, "timeout": "-1s"}}`, []string{`health.timeout "-1s": must be more than 0s`}},
		{"health long timeout", "cycler.json", `{"name": "web", "version": "1", "health": {"tcp": true, "timeout": "2h"}}`, []string{`health.timeout "2h0m0s": must be more than 0s and at most 1h0m0s`}},
		{"empty hook", "cycler.hcl", head + "hooks {\n post_switch = [[\"ok\"], []]\n}\n", []string{"cycler.hcl:4: hooks.post_switch[1]: is an empty command"}},
		{"hook empty program", "cycler.json", `{"name": "web", "version": "1", "hooks": {"pre_switch": [[""]]}}`, []string{`hooks.pre_switch[0][0] "": is the program to run`}},
		{"hook unknown variable", "cycler.json", `{"name": "web", "version": "1", "hooks": {"pre_switch": [["x", "$USER"]]}}`, []string{`hooks.pre_switch[0][1] "$USER": references $USER`}},
		{"every problem at once", "cycler.json", `{"name": "Web", "version": "", "start": {"command": []}, "health": {}}`, []string{"(4 problems)", "name \"Web\"", "version: is required", "start.command: is required", "health: needs http_path"}},

		// JSON strictness.
		{"json unknown field", "cycler.json", "{\n\"name\": \"web\",\n\"version\": \"1\",\n\"start\": {\"command\": [\"cmd\"],\n \"cmd\": [\"a\"]}\n}", []string{`cycler.json:5: unknown field "cmd"`}},
		{"json wrong type", "cycler.json", "{\n\"name\": \"web\",\n\"version\": 1\n}", []string{"cycler.json:3: version: is a JSON number; it must be a string"}},
		{"json list for string", "cycler.json", `{"name": "web", "version": "1", "start": {"command": "a b"}}`, []string{"start.command: is a JSON string; it must be a list of strings"}},
		{"json not an object", "cycler.json", `["web"]`, []string{"cycler.json:1: is a JSON array; a manifest is a JSON object"}},
		{"json syntax", "cycler.json", "{\n\"name\": \"web\",,\n}", []string{"cycler.json:2: is not valid JSON"}},
		{"json trailing data", "cycler.json", `{"name": "web", "version": "1"} {}`, []string{"has more data after the manifest object"}},
		{"json empty", "cycler.json", "", []string{"cycler.json: is empty"}},
		{"json bad timeout", "cycler.json", `{"name": "web", "version": "1", "health": {"tcp": true, "timeout": "soon"}}`, []string{`cycler.json: health.timeout "soon": must be a duration`}},
		{"json timeout number", "cycler.json", `{"name": "web", "version": "1", "health": {"tcp": true, "timeout": 30}}`, []string{"health.timeout: is a JSON number"}},

		{"unknown file type", "cycler.yaml", "name: web", []string{"cycler.yaml: a manifest is named cycler.hcl or cycler.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := pkgfile.ParseManifest(tt.file, []byte(tt.give))
			if err == nil {
				t.Fatalf("ParseManifest accepted it: %#v", m)
			}
			if !errors.Is(err, pkgfile.ErrBadManifest) {
				t.Errorf("error %v does not wrap ErrBadManifest", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
			if !reflect.DeepEqual(m, pkgfile.Manifest{}) {
				t.Errorf("ParseManifest returned %#v with its error, want the zero Manifest", m)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		give pkgfile.Manifest
		want string // "" for valid
	}{
		{"full", fullManifest(), ""},
		{"minimal", pkgfile.Manifest{Name: "w", Version: "0"}, ""},
		{"literal dollars", pkgfile.Manifest{Name: "w", Version: "0", Start: &pkgfile.Start{Command: []string{"echo", "$$HOME", "5$", "$1", "a$"}}}, ""},
		{"no timeout", pkgfile.Manifest{Name: "w", Version: "0", Health: &pkgfile.Health{TCP: true}}, `health.timeout "0s": must be more than 0s`},
		{"nil command", pkgfile.Manifest{Name: "w", Version: "0", Start: &pkgfile.Start{}}, "start.command: is required"},
		{"bad name, no position", pkgfile.Manifest{Name: "w_1", Version: "0"}, `invalid package manifest: name "w_1": must be`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, pkgfile.ErrBadManifest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrBadManifest containing %q", err, tt.want)
			}
		})
	}
}

func TestManifestJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give pkgfile.Manifest
	}{
		{"full", fullManifest()},
		{"minimal", pkgfile.Manifest{Name: "web", Version: "1"}},
		{"tcp", pkgfile.Manifest{Name: "web", Version: "1", Health: &pkgfile.Health{TCP: true, Timeout: 90 * time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			var got pkgfile.Manifest
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			parsed, err := pkgfile.ParseManifest("cycler.json", b)
			if err != nil {
				t.Fatalf("ParseManifest(%s): %v", b, err)
			}
			want := tt.give
			if len(want.Hooks.PostSwitch) == 0 {
				want.Hooks.PostSwitch = nil // omitted when empty
			}
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(parsed, want) {
				t.Errorf("round trip of %s:\nUnmarshal     %#v\nParseManifest %#v\nwant          %#v", b, got, parsed, want)
			}
		})
	}
	var m pkgfile.Manifest
	if err := json.Unmarshal([]byte(`{"health": {"timeout": "x"}}`), &m); err == nil {
		t.Error("Unmarshal accepted a bad timeout")
	}
}

func TestProblemFieldsAreOneLine(t *testing.T) {
	_, err := pkgfile.ParseManifest("cycler.json", []byte(`{"name": "web", "version": "1", "start": {"command": ["a"], "env": {"A\nB": "x", "\n": "${X}"}}}`))
	if err == nil {
		t.Fatal("ParseManifest accepted env keys with newlines")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 { // the header and three problems
		t.Errorf("error has %d lines, want 4:\n%v", len(lines), err)
	}
	if !strings.Contains(err.Error(), `"start.env.A\nB": is not an environment variable name`) {
		t.Errorf("error does not quote the field:\n%v", err)
	}
}

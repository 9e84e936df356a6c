package pkgfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// manifestJSON is cycler.json's layout, and Manifest's JSON encoding.
type manifestJSON struct {
	Name    string      `json:"name"`
	Version string      `json:"version"`
	Start   *startJSON  `json:"start,omitempty"`
	Health  *healthJSON `json:"health,omitempty"`
	Hooks   *hooksJSON  `json:"hooks,omitempty"`
}

type startJSON struct {
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
}

type healthJSON struct {
	HTTPPath string `json:"http_path,omitempty"`
	TCP      bool   `json:"tcp,omitempty"`
	// Timeout is a duration string like "30s"; empty means the default.
	Timeout string `json:"timeout,omitempty"`
}

type hooksJSON struct {
	PreSwitch  [][]string `json:"pre_switch,omitempty"`
	PostSwitch [][]string `json:"post_switch,omitempty"`
}

// parseJSON decodes src strictly: unknown fields, wrong types and trailing
// data are problems. Positions are "file:line" for decoding problems and
// the file name for validation problems.
func parseJSON(name string, src []byte) (Manifest, func(string) string, []problem) {
	pos := func(string) string { return name }
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.DisallowUnknownFields()
	var w manifestJSON
	if err := dec.Decode(&w); err != nil {
		return Manifest{}, pos, []problem{jsonProblem(name, src, err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		line := lineAt(src, dec.InputOffset())
		return Manifest{}, pos, []problem{{pos: fmt.Sprintf("%s:%d", name, line), msg: "has more data after the manifest object; a manifest is one JSON object"}}
	}
	m, err := w.manifest()
	if err != nil {
		return Manifest{}, pos, []problem{{pos: name, field: "health.timeout", value: quote(w.Health.Timeout), msg: "must be a duration like \"30s\" or \"2m\""}}
	}
	return m, pos, nil
}

// jsonProblem turns a decoding error into a problem with a line.
func jsonProblem(name string, src []byte, err error) problem {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return problem{pos: name, msg: "is empty; a manifest is a JSON object like {\"name\": \"web\", \"version\": \"1.0.0\"}"}
	case errors.As(err, &syntax):
		return problem{pos: fmt.Sprintf("%s:%d", name, lineAt(src, syntax.Offset)), msg: "is not valid JSON: " + syntax.Error()}
	case errors.As(err, &typ):
		p := problem{pos: fmt.Sprintf("%s:%d", name, lineAt(src, typ.Offset)), field: typ.Field}
		if typ.Field == "" {
			p.msg = fmt.Sprintf("is a JSON %s; a manifest is a JSON object", typ.Value)
		} else {
			p.msg = fmt.Sprintf("is a JSON %s; it must be %s", typ.Value, describeJSON(typ.Type.String()))
		}
		return p
	default:
		// Unknown fields: `json: unknown field "cmd"`. The decoder reports
		// them at the end of the document, so look for the key instead.
		p := problem{pos: name, msg: strings.TrimPrefix(err.Error(), "json: ") +
			" (the manifest takes: name, version, start {command, env}, health {http_path, tcp, timeout}, hooks {pre_switch, post_switch})"}
		if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if i := keyOffset(src, key); i >= 0 {
				p.pos = fmt.Sprintf("%s:%d", name, lineAt(src, int64(i)))
			}
		}
		return p
	}
}

// keyOffset returns the offset of the first occurrence of the quoted key
// that is followed by a colon, or -1.
func keyOffset(src []byte, key string) int {
	for off := 0; off < len(src); {
		i := bytes.Index(src[off:], []byte(key))
		if i < 0 {
			return -1
		}
		at := off + i
		off = at + len(key)
		if rest := bytes.TrimLeft(src[off:], " \t\r\n"); len(rest) > 0 && rest[0] == ':' {
			return at
		}
	}
	return -1
}

// describeJSON says in words what a Go type accepts in JSON.
func describeJSON(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "[]string":
		return "a list of strings"
	case "[][]string":
		return "a list of lists of strings"
	case "map[string]string":
		return "an object of strings"
	default:
		return "an object"
	}
}

// lineAt returns the 1-based line of byte offset off in src.
func lineAt(src []byte, off int64) int {
	off = max(0, min(off, int64(len(src))))
	return 1 + bytes.Count(src[:off], []byte("\n"))
}

// manifest converts the wire layout, applying the default health timeout.
func (w manifestJSON) manifest() (Manifest, error) {
	m := Manifest{Name: w.Name, Version: w.Version}
	if w.Start != nil {
		m.Start = &Start{Command: w.Start.Command, Env: w.Start.Env}
	}
	if w.Health != nil {
		m.Health = &Health{HTTPPath: w.Health.HTTPPath, TCP: w.Health.TCP, Timeout: DefaultHealthTimeout}
		if w.Health.Timeout != "" {
			d, err := time.ParseDuration(w.Health.Timeout)
			if err != nil {
				return Manifest{}, fmt.Errorf("health timeout %q: %w", w.Health.Timeout, err)
			}
			m.Health.Timeout = d
		}
	}
	if w.Hooks != nil {
		m.Hooks = Hooks{PreSwitch: w.Hooks.PreSwitch, PostSwitch: w.Hooks.PostSwitch}
	}
	return m, nil
}

// MarshalJSON encodes m in cycler.json's layout, with the health timeout
// as a duration string ("30s"). It encodes an invalid manifest as it is.
func (m Manifest) MarshalJSON() ([]byte, error) {
	w := manifestJSON{Name: m.Name, Version: m.Version}
	if m.Start != nil {
		w.Start = &startJSON{Command: m.Start.Command, Env: m.Start.Env}
	}
	if m.Health != nil {
		w.Health = &healthJSON{HTTPPath: m.Health.HTTPPath, TCP: m.Health.TCP}
		if m.Health.Timeout != 0 {
			w.Health.Timeout = m.Health.Timeout.String()
		}
	}
	if len(m.Hooks.PreSwitch) > 0 || len(m.Hooks.PostSwitch) > 0 {
		w.Hooks = &hooksJSON{PreSwitch: m.Hooks.PreSwitch, PostSwitch: m.Hooks.PostSwitch}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes what MarshalJSON encodes, for example manifests
// stored with package metadata. It ignores unknown fields and does not
// validate; read untrusted manifests with ParseManifest.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	var w manifestJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	v, err := w.manifest()
	if err != nil {
		return err
	}
	*m = v
	return nil
}

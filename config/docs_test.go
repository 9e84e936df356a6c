package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// docsPath is the operator reference this package's keys must appear in.
const docsPath = "../docs/config.md"

// allKeys lists every HCL key of struct type t and the structs under it,
// including the driver settings, which carry no block tag.
func allKeys(t reflect.Type, into map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if tag, ok := f.Tag.Lookup("hcl"); ok {
			name, kind, _ := strings.Cut(tag, ",")
			if kind != "label" {
				into[name] = true
			}
		}
		if ft.Kind() == reflect.Struct {
			allKeys(ft, into)
		}
	}
}

func TestDocsNameEveryKey(t *testing.T) {
	doc, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatalf("reading the config reference: %v", err)
	}
	keys := map[string]bool{}
	for _, v := range []any{Server{}, Agent{}, LB{}} {
		allKeys(reflect.TypeOf(v), keys)
	}
	for k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") && !strings.Contains(string(doc), "`"+k+" \"") {
			t.Errorf("%s does not document key %q", docsPath, k)
		}
	}
}

func TestDocsExamplesValidate(t *testing.T) {
	doc, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatalf("reading the config reference: %v", err)
	}
	var examples []string
	for _, part := range strings.Split(string(doc), "```hcl\n")[1:] {
		examples = append(examples, part[:strings.Index(part, "```")])
	}
	if len(examples) != 3 {
		t.Fatalf("found %d hcl examples, want 3 (server, agent, lb)", len(examples))
	}
	tests := []struct {
		name string
		give func(src []byte) error
	}{
		{"server", func(src []byte) error {
			s, err := ParseServer("server.hcl", src)
			if err != nil {
				return err
			}
			return s.Validate()
		}},
		{"agent", func(src []byte) error {
			a, err := ParseAgent("agent.hcl", src)
			if err != nil {
				return err
			}
			a.NodeID = "web-7" // the example relies on the host name
			return a.Validate()
		}},
		{"lb", func(src []byte) error {
			l, err := ParseLB("lb.hcl", src)
			if err != nil {
				return err
			}
			return l.Validate()
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give([]byte(examples[i])); err != nil {
				t.Errorf("the %s example in %s has problems:\n%v", tt.name, docsPath, err)
			}
		})
	}
}

package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	log, err := New("json", "info", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Named("lb.nginx").Debug("hidden at info")
	log.Named("lb.nginx").Info("backend applied")
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("output is not one JSON line: %q: %v", buf.String(), err)
	}
	if line["logger"] != "lb.nginx" || line["msg"] != "backend applied" || line["level"] != "info" {
		t.Fatalf("unexpected fields: %v", line)
	}
}

func TestNewConsole(t *testing.T) {
	var buf bytes.Buffer
	log, err := New("console", "debug", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("host deployed")
	if !strings.Contains(buf.String(), "DEBUG") || !strings.Contains(buf.String(), "host deployed") {
		t.Fatalf("console output = %q", buf.String())
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		format, level, want string
	}{
		{"xml", "info", `log format "xml"`},
		{"json", "loud", `log level "loud"`},
		{"json", "fatal", `log level "fatal"`},
	}
	for _, tt := range tests {
		_, err := New(tt.format, tt.level, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %q) error = %v; want it to mention %s", tt.format, tt.level, err, tt.want)
		}
	}
}

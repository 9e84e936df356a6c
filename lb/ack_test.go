package lb

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers"
)

func TestSplitAckKey(t *testing.T) {
	tests := []struct {
		give    string
		wantSvc string
		wantID  string
		wantOK  bool
	}{
		{give: "cycler/web/lb/lb-1", wantSvc: "web", wantID: "lb-1", wantOK: true},
		{give: "cycler/web/state"},
		{give: "cycler/web/lb/"},
		{give: "cycler/web/lb/lb-1/extra"},
		{give: "cycler//lb/lb-1"},
		{give: "other/web/lb/lb-1"},
	}
	for _, tt := range tests {
		svc, id, ok := splitAckKey(tt.give)
		if svc != tt.wantSvc || id != tt.wantID || ok != tt.wantOK {
			t.Errorf("splitAckKey(%q) = %q, %q, %v; want %q, %q, %v", tt.give, svc, id, ok, tt.wantSvc, tt.wantID, tt.wantOK)
		}
	}
}

// TestAckWireFormat pins the public contract fields and the optional extras.
func TestAckWireFormat(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := json.Marshal(Ack{Generation: 42, Backends: []lbdrivers.Backend{{ID: "web-1", Address: "10.0.0.7", Port: 8080}},
		AppliedAt: at, Driver: "nginx", CheckedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"generation":42,"backends":[{"id":"web-1","address":"10.0.0.7","port":8080}],"applied_at":"2025-01-02T03:04:05Z","driver":"nginx","checked_at":"2025-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Errorf("ack JSON\n got %s\nwant %s", b, want)
	}
	// A reader of the bare contract (older LB) parses fine, with no nil set.
	a, err := ParseAck([]byte(`{"generation":3,"applied_at":"2025-01-02T03:04:05Z","driver":"varnish","future":true}`))
	if err != nil || a.Generation != 3 || a.Backends == nil || !a.AppliedAt.Equal(at) {
		t.Errorf("ParseAck = %+v, %v", a, err)
	}
	if _, err := ParseAck([]byte(`{`)); err == nil || !strings.Contains(err.Error(), "ack document") {
		t.Errorf("ParseAck of garbage: %v", err)
	}
}

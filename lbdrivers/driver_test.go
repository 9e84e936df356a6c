package lbdrivers

import (
	"strings"
	"testing"
)

func TestBackendValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    Backend
		wantErr string
	}{
		{name: "ipv4", give: Backend{ID: "a", Address: "10.0.0.1", Port: 80}},
		{name: "ipv6", give: Backend{ID: "a", Address: "fd00::1", Port: 8080}},
		{name: "hostname", give: Backend{ID: "a", Address: "app-1.dc1.example", Port: 443}},
		{name: "port zero", give: Backend{ID: "a", Address: "10.0.0.1", Port: 0}, wantErr: "port 0 is out of range"},
		{name: "port high", give: Backend{ID: "a", Address: "10.0.0.1", Port: 70000}, wantErr: "port 70000"},
		{name: "injection", give: Backend{ID: "a", Address: "x; } server evil", Port: 80}, wantErr: "neither an IP"},
		{name: "empty", give: Backend{ID: "a", Address: "", Port: 80}, wantErr: "neither an IP"},
		{name: "newline", give: Backend{ID: "a", Address: "a\nb", Port: 80}, wantErr: "neither an IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestHostPortBracketsIPv6(t *testing.T) {
	if got := (Backend{Address: "fd00::1", Port: 80}).HostPort(); got != "[fd00::1]:80" {
		t.Fatalf("HostPort = %q", got)
	}
}

func TestEqualIgnoresOrder(t *testing.T) {
	a := []Backend{{ID: "1", Address: "10.0.0.1", Port: 80}, {ID: "2", Address: "10.0.0.2", Port: 80}}
	b := []Backend{a[1], a[0]}
	if !Equal(a, b) {
		t.Fatal("same sets in another order compare unequal")
	}
	if Equal(a, a[:1]) {
		t.Fatal("different sets compare equal")
	}
}

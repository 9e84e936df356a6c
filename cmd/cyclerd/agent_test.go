package main

import "testing"

func TestAgentAPIAddr(t *testing.T) {
	tests := []struct {
		name    string
		listen  string
		address string
		want    string
	}{
		{"specific host", "10.0.1.7:7401", "10.0.1.7", "10.0.1.7:7401"},
		{"every interface", "0.0.0.0:7401", "10.0.1.7", "10.0.1.7:7401"},
		{"empty host", ":7401", "web-7.internal", "web-7.internal:7401"},
		{"ipv6 every interface", "[::]:7401", "fd00::7", "[fd00::7]:7401"},
		{"not host:port", "garbage", "10.0.1.7", "garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := agentAPIAddr(tt.listen, tt.address); got != tt.want {
				t.Errorf("agentAPIAddr(%q, %q) = %q, want %q", tt.listen, tt.address, got, tt.want)
			}
		})
	}
}

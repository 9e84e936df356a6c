package config

import (
	"errors"
	"testing"
)

func TestServerAgentTokenRules(t *testing.T) {
	tests := []struct {
		name     string
		give     func(s *Server)
		wantPath string
		wantMsg  string
	}{
		{"agent token short", func(s *Server) { s.AgentToken = "short" }, "agent_token", "at least 16 chars"},
		{"both agent tokens", func(s *Server) { s.AgentToken, s.AgentTokenFile = "0123456789abcdef", "/t" },
			"agent_token_file", "cannot be used together with agent_token"},
		{"agent token file nul", func(s *Server) { s.AgentTokenFile = "/a\x00b" }, "agent_token_file", "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServer()
			tt.give(&s)
			wantOneProblem(t, s.Validate(), tt.wantPath, tt.wantMsg)
		})
	}
}

func TestServerResolvedAgentToken(t *testing.T) {
	file := writeFile(t, "agents", "agents-secret-0123456789\n")
	short := writeFile(t, "short", "short\n")
	tests := []struct {
		name    string
		give    func(s *Server)
		want    string
		wantErr error
		anyErr  bool
	}{
		{"inline", func(s *Server) { s.AgentToken = "inline-secret-0123456" }, "inline-secret-0123456", nil, false},
		{"file", func(s *Server) { s.AgentTokenFile = file }, "agents-secret-0123456789", nil, false},
		{"neither", func(*Server) {}, "", ErrNoAgentToken, true},
		{"short file", func(s *Server) { s.AgentTokenFile = short }, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServer()
			tt.give(&s)
			got, err := s.ResolvedAgentToken()
			if got != tt.want || (err != nil) != tt.anyErr || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("got %q, %v; want %q, error %v (any error: %v)", got, err, tt.want, tt.wantErr, tt.anyErr)
			}
		})
	}
}

package raftstore

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestConfigValidate(t *testing.T) {
	valid := Config{NodeID: "s1", DataDir: "/tmp/x", BindAddr: "127.0.0.1:7000"}
	tests := []struct {
		name    string
		give    func(c *Config)
		wantErr []string
	}{
		{name: "valid", give: func(*Config) {}},
		{name: "missing everything", give: func(c *Config) { *c = Config{} }, wantErr: []string{"node_id", "data_dir", "bind_addr"}},
		{name: "bad timing", give: func(c *Config) { c.Timing = "turbo" }, wantErr: []string{`timing: "turbo"`}},
		{name: "negative retain", give: func(c *Config) { c.SnapshotRetain = -1 }, wantErr: []string{"snapshot_retain: -1"}},
		{name: "half the stores", give: func(c *Config) { c.LogStore = raft.NewInmemStore() }, wantErr: []string{"inject both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.give(&c)
			err := c.Validate()
			if (err != nil) != (len(tt.wantErr) > 0) {
				t.Fatalf("err = %v, want errors mentioning %v", err, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestTimingProfiles(t *testing.T) {
	tests := []struct {
		give          string
		wantHeartbeat time.Duration
	}{
		{give: "", wantHeartbeat: 500 * time.Millisecond},
		{give: TimingProduction, wantHeartbeat: 500 * time.Millisecond},
		{give: TimingFast, wantHeartbeat: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			rc := Config{NodeID: "s1", Timing: tt.give}.raftConfig()
			if rc.HeartbeatTimeout != tt.wantHeartbeat {
				t.Errorf("heartbeat = %v, want %v", rc.HeartbeatTimeout, tt.wantHeartbeat)
			}
			if err := raft.ValidateConfig(rc); err != nil {
				t.Errorf("raft rejects the profile: %v", err)
			}
			// Worst-case failover without a split vote: detection within
			// 2×HeartbeatTimeout; with one split vote, plus 2×ElectionTimeout.
			if worst := 2*rc.HeartbeatTimeout + 2*rc.ElectionTimeout; worst >= 3*time.Second {
				t.Errorf("worst-case failover %v is not under 3s", worst)
			}
		})
	}
}

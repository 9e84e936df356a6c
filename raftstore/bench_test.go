package raftstore

import (
	"testing"
)

// BenchmarkApply measures committed writes per second through the leader of a
// 3-node in-memory cluster.
func BenchmarkApply(b *testing.B) {
	c := NewTestCluster(b, 3)
	leader := c.Leader()
	ctx := testCtx(b)
	e := AuditEntry{TokenName: "bench", Action: "deploy", Target: "web", Detail: "benchmark entry"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := leader.AppendAudit(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

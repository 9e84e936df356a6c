package raftstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// fillState makes a few writes of every kind through the leader.
func fillState(t *testing.T, s *Store, gen uint64) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := s.SetServiceState(ctx, svc("web", gen, PoolGreen)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, AuditEntry{TokenName: "ops", Action: "deploy", Target: "web", Detail: "v1.1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBreakerData(ctx, "gobreaker:state:web", []byte(`{"state":0}`)); err != nil {
		t.Fatal(err)
	}
}

func saveSnapshot(t *testing.T, s *Store) ([]byte, SnapshotMeta) {
	t.Helper()
	var buf bytes.Buffer
	meta, err := s.SaveSnapshot(testCtx(t), &buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), meta
}

func TestOperatorSnapshotRoundTrip(t *testing.T) {
	c := NewTestCluster(t, 3)
	ctx := testCtx(t)
	leader := c.Leader()
	fillState(t, leader, 4)
	want := stateBytes(t, leader)
	file, meta := saveSnapshot(t, leader)
	if meta.Index != leader.AppliedIndex() || meta.NodeID != leader.ID() || meta.FormatVersion != SnapshotFormatVersion {
		t.Errorf("meta = %+v", meta)
	}

	// Change everything, then restore: the state is the saved one again.
	if _, err := leader.SetServiceState(ctx, svc("web", 9, PoolBlue)); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.SetServiceState(ctx, svc("api", 1, PoolBlue)); err != nil {
		t.Fatal(err)
	}
	if err := leader.RestoreSnapshot(ctx, bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	c.WaitReplicated()
	for _, s := range c.Nodes() {
		if got := stateBytes(t, s); !bytes.Equal(got, want) {
			t.Errorf("%s after restore:\n got %s\nwant %s", s.ID(), got, want)
		}
	}

	// VerifySnapshot reports the same meta as SaveSnapshot.
	got, err := VerifySnapshot(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != meta.SHA256 || got.Index != meta.Index || !got.CreatedAt.Equal(meta.CreatedAt) {
		t.Errorf("VerifySnapshot = %+v, SaveSnapshot = %+v", got, meta)
	}
}

func TestRestoreKeepsAuditSequenceMonotonic(t *testing.T) {
	c := NewTestCluster(t, 1)
	ctx := testCtx(t)
	s := c.Leader()
	fillState(t, s, 1) // audit seq 1
	file, _ := saveSnapshot(t, s)
	for range 3 { // seqs 2..4, not in the snapshot
		if _, err := s.AppendAudit(ctx, AuditEntry{Action: "later"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RestoreSnapshot(ctx, bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	if a := s.Audit(0, 0); len(a) != 1 || a[0].Seq != 1 {
		t.Fatalf("audit after restore = %+v, want only the snapshot's entry 1", a)
	}
	e, err := s.AppendAudit(ctx, AuditEntry{Action: "after-restore"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 5 {
		t.Errorf("seq after restore = %d, want 5: sequence numbers must never repeat", e.Seq)
	}
}

func TestRestoreSnapshotOnFollower(t *testing.T) {
	c := NewTestCluster(t, 3)
	file, _ := saveSnapshot(t, c.Leader())
	err := c.Followers()[0].RestoreSnapshot(testCtx(t), bytes.NewReader(file))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("err = %v, want ErrNotLeader", err)
	}
}

// reframe rebuilds a file with the given sections and a correct checksum,
// to craft files that pass the checksum but are wrong inside.
func reframe(version uint16, meta, state []byte) []byte {
	var b []byte
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(state)))
	b = append(b, state...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func TestRestoreSnapshotRejectsBadFiles(t *testing.T) {
	c := NewTestCluster(t, 3)
	leader := c.Leader()
	fillState(t, leader, 2)
	good, _ := saveSnapshot(t, leader)
	metaJSON := []byte(`{"index":1,"term":1,"node_id":"x","created_at":"2025-01-01T00:00:00Z"}`)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	// Only the state section changes here, so the header stays valid.
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 0xff

	tests := []struct {
		name string
		give []byte
		want string
	}{
		{name: "empty", give: nil, want: "the file is empty"},
		{name: "short magic", give: []byte("CYC"), want: "truncated in the magic header"},
		{name: "wrong magic", give: append([]byte("PK\x03\x04xxxx"), good[8:]...), want: "bad magic"},
		{name: "future version", give: reframe(2, metaJSON, []byte(`{}`)), want: "unsupported format version 2"},
		{name: "truncated in meta", give: good[:20], want: "truncated in the meta"},
		{name: "truncated in state", give: good[:len(good)-60], want: "truncated in the state"},
		{name: "missing checksum", give: good[:len(good)-sha256.Size], want: "truncated in the checksum"},
		{name: "flipped bit", give: flipped, want: "checksum mismatch"},
		{name: "wrong checksum", give: badSum, want: "checksum mismatch"},
		{name: "trailing data", give: append(bytes.Clone(good), 'x'), want: "unexpected data after the checksum"},
		{name: "zero meta length", give: reframe(1, nil, []byte(`{}`)), want: "meta length 0"},
		{name: "zero state length", give: reframe(1, metaJSON, nil), want: "state length 0"},
		{name: "meta not json", give: reframe(1, []byte("nope"), []byte(`{}`)), want: "meta: decode"},
		{name: "state not json", give: reframe(1, metaJSON, []byte("nope")), want: "state: decode"},
		{name: "state null", give: reframe(1, metaJSON, []byte("null")), want: "state is null"},
		{name: "state inconsistent", give: reframe(1, metaJSON, []byte(`{"services":{"web":{"service":"web","generation":0,"live":"blue"}}}`)), want: "generation: must be 1 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := stateBytes(t, leader)
			err := leader.RestoreSnapshot(testCtx(t), bytes.NewReader(tt.give))
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("err = %v, want ErrInvalidSnapshot", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
			if after := stateBytes(t, leader); !bytes.Equal(before, after) {
				t.Error("state changed after a rejected restore")
			}
		})
	}
}

func TestReadSnapshotLargeDeclaredLengthIsCheap(t *testing.T) {
	// A header claiming a huge state must fail on the missing bytes without
	// allocating the claimed size.
	var b []byte
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint32(b, 2)
	b = append(b, "{}"...)
	b = binary.BigEndian.AppendUint64(b, MaxSnapshotStateSize)
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := VerifySnapshot(bytes.NewReader(b)); !errors.Is(err, ErrInvalidSnapshot) {
			t.Fatalf("err = %v", err)
		}
	})
	if allocs > 100 {
		t.Errorf("%v allocations for a tiny file", allocs)
	}
}

func FuzzReadSnapshot(f *testing.F) {
	state := mustEncode(f, NewState())
	meta := []byte(`{"index":3,"term":2,"node_id":"s1","created_at":"2025-01-01T00:00:00Z"}`)
	f.Add(reframe(1, meta, state))
	f.Add([]byte{})
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, st, err := readSnapshot(bytes.NewReader(data))
		if err != nil {
			if m != (SnapshotMeta{}) || st != nil {
				t.Fatalf("error %v came with a result", err)
			}
			return
		}
		// Anything accepted must decode and survive a write/read round trip.
		if _, err := decodeState(st); err != nil {
			t.Fatalf("accepted state does not decode: %v", err)
		}
		var buf bytes.Buffer
		fm := snapshotFileMeta{Index: m.Index, Term: m.Term, NodeID: m.NodeID, CreatedAt: m.CreatedAt}
		if _, err := writeSnapshot(&buf, fm, st); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readSnapshot(&buf); err != nil {
			t.Fatalf("re-written file rejected: %v", err)
		}
	})
}

func TestSaveSnapshotHonoursContext(t *testing.T) {
	c := NewTestCluster(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := c.Leader().SaveSnapshot(ctx, &buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

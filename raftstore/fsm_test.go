package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// applyTo feeds one command to f as raft would and returns the response.
func applyTo(t *testing.T, f *fsm, index uint64, ct CommandType, body any) any {
	t.Helper()
	data, err := encodeCommand(ct, body)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
}

func mustEncode(t testing.TB, st *State) []byte {
	t.Helper()
	b, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func svc(name string, gen uint64, live string) ServiceState {
	return ServiceState{
		Service:    name,
		Generation: gen,
		Live:       live,
		Pools:      Pools{Blue: Release{Version: "1.0", Digest: "sha256:aa"}, Green: Release{Version: "1.1", Digest: "sha256:bb"}},
		Hidden:     []string{"web-2"},
		UpdatedAt:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(gen) * time.Minute),
	}
}

func TestApplyUnknownCommandType(t *testing.T) {
	tests := []struct {
		name      string
		give      []byte
		wantPanic bool
	}{
		{name: "unknown required type", give: []byte{42, '{', '}'}, wantPanic: true},
		{name: "highest required type", give: []byte{127}, wantPanic: true},
		{name: "empty entry", give: []byte{}, wantPanic: true},
		{name: "unknown optional type", give: []byte{byte(IgnoreUnknownTypeFlag | 42), '{', '}'}, wantPanic: false},
		{name: "optional flag alone", give: []byte{byte(IgnoreUnknownTypeFlag)}, wantPanic: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFSM(zap.NewNop())
			before := mustEncode(t, f.state)
			var panicked any
			func() {
				defer func() { panicked = recover() }()
				f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: tt.give})
			}()
			if got := panicked != nil; got != tt.wantPanic {
				t.Fatalf("panicked = %v (%v), want panic %v", got, panicked, tt.wantPanic)
			}
			if after := mustEncode(t, f.state); !bytes.Equal(before, after) {
				t.Errorf("state changed: %s -> %s", before, after)
			}
			wantIndex := uint64(7)
			if tt.wantPanic {
				wantIndex = 0
			}
			if got, _ := f.applied(); got != wantIndex {
				t.Errorf("applied index = %d, want %d", got, wantIndex)
			}
		})
	}
}

func TestApplyServiceStateGeneration(t *testing.T) {
	f := newFSM(zap.NewNop())
	if resp := applyTo(t, f, 1, ServiceStateCommand, svc("web", 5, PoolBlue)); resp == nil {
		t.Fatal("first state: nil response")
	} else if err, ok := resp.(error); ok {
		t.Fatalf("first state: %v", err)
	}

	retry := svc("web", 5, PoolBlue)
	retry.UpdatedAt = retry.UpdatedAt.Add(time.Hour) // a retry is stamped anew
	tests := []struct {
		name    string
		give    ServiceState
		wantErr error
		wantGen uint64
	}{
		{name: "lower generation", give: svc("web", 4, PoolGreen), wantErr: ErrStaleGeneration, wantGen: 5},
		{name: "same generation, different state", give: svc("web", 5, PoolGreen), wantErr: ErrStaleGeneration, wantGen: 5},
		{name: "same state again is idempotent", give: retry, wantGen: 5},
		{name: "higher generation", give: svc("web", 6, PoolGreen), wantGen: 6},
		{name: "generation zero", give: svc("api", 0, PoolBlue), wantErr: ErrInvalidCommand, wantGen: 6},
		{name: "bad live pool", give: svc("web", 9, "red"), wantErr: ErrInvalidCommand, wantGen: 6},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := applyTo(t, f, uint64(i+2), ServiceStateCommand, tt.give)
			err, _ := resp.(error)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := f.state.Services["web"].Generation; got != tt.wantGen {
				t.Errorf("generation = %d, want %d", got, tt.wantGen)
			}
		})
	}
	if got, want := f.state.Services["web"].UpdatedAt, svc("web", 6, PoolGreen).UpdatedAt; !got.Equal(want) {
		t.Errorf("updated_at = %v, want %v", got, want)
	}
}

func TestApplyServiceStateIdempotentKeepsOriginalTime(t *testing.T) {
	f := newFSM(zap.NewNop())
	first := svc("web", 1, PoolBlue)
	applyTo(t, f, 1, ServiceStateCommand, first)
	retry := first
	retry.UpdatedAt = first.UpdatedAt.Add(time.Hour)
	resp := applyTo(t, f, 2, ServiceStateCommand, retry)
	got, ok := resp.(ServiceState)
	if !ok {
		t.Fatalf("response = %#v, want a ServiceState", resp)
	}
	if !got.UpdatedAt.Equal(first.UpdatedAt) {
		t.Errorf("updated_at = %v, want the original %v", got.UpdatedAt, first.UpdatedAt)
	}
}

func TestAuditRingKeepsNewest(t *testing.T) {
	f := newFSM(zap.NewNop())
	const extra = 25
	for i := range AuditRetain + extra {
		resp := applyTo(t, f, uint64(i+1), AuditAppendCommand, AuditEntry{Action: "deploy", Target: fmt.Sprint(i)})
		if got := resp.(AuditEntry).Seq; got != uint64(i+1) {
			t.Fatalf("entry %d: seq = %d, want %d", i, got, i+1)
		}
	}
	entries := f.state.Audit.entries()
	if len(entries) != AuditRetain {
		t.Fatalf("kept %d entries, want %d", len(entries), AuditRetain)
	}
	if first, last := entries[0].Seq, entries[len(entries)-1].Seq; first != extra+1 || last != AuditRetain+extra {
		t.Errorf("seq range = %d..%d, want %d..%d", first, last, extra+1, AuditRetain+extra)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Seq != entries[i-1].Seq+1 {
			t.Fatalf("entries out of order at %d: %d after %d", i, entries[i].Seq, entries[i-1].Seq)
		}
	}

	// The ring survives an encode/decode round trip, and keeps counting.
	st, err := decodeState(mustEncode(t, f.state))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Audit.append(AuditEntry{Action: "x"}).Seq; got != AuditRetain+extra+1 {
		t.Errorf("next seq after decode = %d, want %d", got, AuditRetain+extra+1)
	}
}

// memSink is a raft.SnapshotSink in memory that can fail writes.
type memSink struct {
	bytes.Buffer
	failWrite bool
	cancelled bool
	closed    bool
}

func (m *memSink) Write(p []byte) (int, error) {
	if m.failWrite {
		return 0, errors.New("disk full")
	}
	return m.Buffer.Write(p)
}
func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { m.closed = true; return nil }

func populatedFSM(t *testing.T) *fsm {
	t.Helper()
	f := newFSM(zap.NewNop())
	applyTo(t, f, 1, ServiceStateCommand, svc("web", 3, PoolGreen))
	applyTo(t, f, 2, AuditAppendCommand, AuditEntry{At: time.Unix(100, 0).UTC(), TokenName: "ci", Action: "deploy", Target: "web"})
	applyTo(t, f, 3, BreakerDataCommand, breakerDataBody{Name: "gobreaker:state:web", Data: []byte(`{"state":2}`)})
	applyTo(t, f, 4, NodeMetaCommand, nodeMetaBody{NodeMeta: NodeMeta{ID: "s1", APIAddr: "http://s1"}})
	return f
}

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	f := populatedFSM(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after Snapshot must not leak into the persisted copy.
	applyTo(t, f, 5, ServiceStateCommand, svc("web", 4, PoolBlue))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}

	g := newFSM(zap.NewNop())
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := g.state.Services["web"].Generation; got != 3 {
		t.Errorf("restored generation = %d, want 3 (the snapshot's)", got)
	}
	if idx, term := g.applied(); idx != 4 || term != 1 {
		t.Errorf("restored applied = (%d, %d), want (4, 1)", idx, term)
	}
	want := populatedFSM(t)
	if a, b := mustEncode(t, g.state), mustEncode(t, want.state); !bytes.Equal(a, b) {
		t.Errorf("restored state differs:\n got %s\nwant %s", a, b)
	}
}

func TestFSMPersistCancelsOnError(t *testing.T) {
	snap, err := populatedFSM(t).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{failWrite: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Errorf("sink closed=%v cancelled=%v, want cancelled only", sink.closed, sink.cancelled)
	}
}

func TestFSMRestoreRejectsCorruptInput(t *testing.T) {
	validState := string(mustEncode(t, populatedFSM(t).state))
	tests := []struct {
		name string
		give string
	}{
		{name: "empty", give: ""},
		{name: "not json", give: "garbage"},
		{name: "truncated", give: `{"index":4,"term":1,"state":{"services":`},
		{name: "state null", give: `{"index":4,"term":1,"state":null}`},
		{name: "service key mismatch", give: `{"state":{"services":{"web":{"service":"api","generation":1,"live":"blue"}}}}`},
		{name: "audit out of order", give: `{"state":{"audit":{"last_seq":5,"entries":[{"seq":3},{"seq":2}]}}}`},
		{name: "audit seq beyond last_seq", give: `{"state":{"audit":{"last_seq":1,"entries":[{"seq":3}]}}}`},
		{name: "trailing data after the document", give: `{"state":` + validState[:len(validState)-1] + `}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := populatedFSM(t)
			before := mustEncode(t, f.state)
			beforeIdx, _ := f.applied()
			if err := f.Restore(io.NopCloser(strings.NewReader(tt.give))); err == nil {
				t.Fatal("Restore accepted corrupt input")
			}
			if after := mustEncode(t, f.state); !bytes.Equal(before, after) {
				t.Errorf("state changed after a failed restore")
			}
			if idx, _ := f.applied(); idx != beforeIdx {
				t.Errorf("applied index changed to %d", idx)
			}
		})
	}
}

func TestStateCloneIsDeep(t *testing.T) {
	f := populatedFSM(t)
	c := f.state.clone()
	c.Services["web"].Hidden[0] = "changed"
	c.Breakers["gobreaker:state:web"][0] = 'X'
	c.Audit.buf[0].Action = "changed"
	if f.state.Services["web"].Hidden[0] == "changed" || f.state.Breakers["gobreaker:state:web"][0] == 'X' ||
		f.state.Audit.entries()[0].Action == "changed" {
		t.Fatal("clone shares memory with the original")
	}
}

func TestCommandWireFormat(t *testing.T) {
	data, err := encodeCommand(BreakerDataCommand, breakerDataBody{Name: "b", Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != 3 {
		t.Fatalf("type byte = %d, want 3", data[0])
	}
	var body map[string]any
	if err := json.Unmarshal(data[1:], &body); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if body["name"] != "b" || body["data"] != "eA==" {
		t.Errorf("body = %v", body)
	}
}

func TestFreezeRoundTrip(t *testing.T) {
	c := NewTestCluster(t, 3)
	leader := c.WaitLeader()
	ctx := context.Background()
	if err := leader.SetFreeze(ctx, Freeze{Service: "web", Reason: "black friday", By: "ops"}, true); err != nil {
		t.Fatal(err)
	}
	c.WaitReplicated()
	for _, n := range c.Nodes() {
		f, ok := n.Freeze("web")
		if !ok || f.Reason != "black friday" || f.By != "ops" || f.At.IsZero() {
			t.Fatalf("node %s: freeze = %+v, %v", n.ID(), f, ok)
		}
	}
	if err := c.Followers()[0].SetFreeze(ctx, Freeze{Service: "web"}, false); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower unfreeze: err = %v; want ErrNotLeader", err)
	}
	if err := leader.SetFreeze(ctx, Freeze{Service: "web"}, false); err != nil {
		t.Fatal(err)
	}
	c.WaitReplicated()
	for _, n := range c.Nodes() {
		if f, ok := n.Freeze("web"); ok {
			t.Fatalf("node %s still frozen: %+v", n.ID(), f)
		}
	}
}

package pool

import (
	"context"
	"errors"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

// scripted answers blocking queries from a list and records the WaitIndex
// each query carried.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	waits   []uint64
	done    func()
}

type answer struct {
	v     string
	index uint64
	err   error
}

func (s *scripted) fetch(ctx context.Context, q *consulapi.QueryOptions) (string, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, q.WaitIndex)
	if len(s.answers) == 0 {
		s.done()
		<-ctx.Done()
		return "", 0, ctx.Err()
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a.v, a.index, a.err
}

func TestWatchIndexHandling(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &scripted{done: cancel, answers: []answer{
		{v: "a", index: 5},               // first value: emitted
		{v: "a", index: 5},               // blocking query timed out: skipped
		{v: "b", index: 7},               // moved: emitted
		{v: "c", index: 3},               // went backwards: reset, not emitted
		{v: "c", index: 4},               // from 0 again: emitted
		{err: errors.New("consul down")}, // error: reported, retried
		{v: "d", index: 9},               // emitted
	}}
	var got []string
	var errs []error
	watch(ctx, s.fetch, func(v string) { got = append(got, v) }, func(err error) { errs = append(errs, err) })
	want := []string{"a", "b", "c", "d"}
	if len(got) != len(want) {
		t.Fatalf("emitted %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("emitted %v; want %v", got, want)
		}
	}
	if len(errs) != 1 {
		t.Fatalf("errors reported: %v; want 1", errs)
	}
	wantWaits := []uint64{0, 5, 5, 7, 0, 4, 4, 9}
	for i := range wantWaits {
		if s.waits[i] != wantWaits[i] {
			t.Fatalf("wait indexes %v; want %v", s.waits, wantWaits)
		}
	}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr bool
	}{
		{name: "ok", give: `{"generation":3,"live":"green","pools":{"blue":{"version":"1"}},"hidden":["a"],"future":1}`},
		{name: "zero generation", give: `{"generation":0,"live":"green"}`, wantErr: true},
		{name: "bad live", give: `{"generation":1,"live":"red"}`, wantErr: true},
		{name: "not json", give: `{`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseState([]byte(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseState(%s) error = %v; wantErr %v", tt.give, err, tt.wantErr)
			}
		})
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"generation":3,"live":"green","pools":{"blue":{"version":"1","digest":"sha256:ab"}},"hidden":["a"]}`))
	f.Add([]byte(`{"generation":18446744073709551615,"live":"blue"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err == nil && (s.Generation == 0 || (s.Live != Blue && s.Live != Green)) {
			t.Fatalf("accepted an invalid state: %+v", s)
		}
	})
}

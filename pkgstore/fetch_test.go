package pkgstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/raftstore"
)

// memSource serves fixed bytes (or an error) as a blob, whatever the digest
// asked for, so it can lie. With gate set it blocks until gate is closed.
type memSource struct {
	name  string
	data  []byte
	err   error
	gate  chan struct{}
	calls atomic.Int32
}

func (m *memSource) Name() string { return m.name }

func (m *memSource) Blob(ctx context.Context, _ string) (io.ReadCloser, error) {
	m.calls.Add(1)
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	return io.NopCloser(bytes.NewReader(m.data)), nil
}

var _ Source = (*memSource)(nil)

func TestFetchVerifiesDigest(t *testing.T) {
	good := pkg(t, "web", "1.0")
	other := pkg(t, "web", "6.6.6")
	digest := digestOf(good)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0xff
	size := int64(len(good))
	tests := []struct {
		name    string
		give    []*memSource
		size    int64
		wantErr error // nil: the blob must be stored, from the last source
	}{
		{name: "honest source", give: []*memSource{{name: "b", data: good}}, size: size},
		{name: "unknown size", give: []*memSource{{name: "b", data: good}}},
		{name: "liar then honest", give: []*memSource{{name: "liar", data: other}, {name: "b", data: good}}, size: size},
		{name: "down then honest", give: []*memSource{{name: "down", err: errors.New("connection refused")}, {name: "b", data: good}}, size: size},
		{name: "only a liar", give: []*memSource{{name: "liar", data: other}}, wantErr: ErrDigestMismatch},
		{name: "liar of the right size", give: []*memSource{{name: "liar", data: flipped}}, size: size, wantErr: ErrDigestMismatch},
		{name: "only a truncating source", give: []*memSource{{name: "short", data: good[:len(good)-10]}}, size: size},
		{name: "longer than the metadata says", give: []*memSource{{name: "long", data: append(append([]byte(nil), good...), 'x')}}, size: size, wantErr: ErrTooLarge},
		{name: "no sources", wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			var srcs []Source
			for _, m := range tt.give {
				srcs = append(srcs, m)
			}
			err := s.Fetch(context.Background(), digest, tt.size, srcs)
			stored := len(tt.give) > 0 && bytes.Equal(tt.give[len(tt.give)-1].data, good) && tt.give[len(tt.give)-1].err == nil
			switch {
			case stored && err != nil:
				t.Fatalf("Fetch: %v", err)
			case !stored && err == nil:
				t.Fatal("Fetch stored bytes that do not match the digest")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if s.Has(digest) != stored {
				t.Fatalf("Has = %v, want %v", s.Has(digest), stored)
			}
			if stored {
				if err := s.Verify(digest); err != nil {
					t.Error(err)
				}
			}
			if got := dirEntries(t, s); len(got) != map[bool]int{true: 1, false: 0}[stored] {
				t.Errorf("blob dir holds %q", got)
			}
		})
	}
}

func TestFetchSharesOneDownload(t *testing.T) {
	s := newStore(t)
	good := pkg(t, "web", "1.0")
	src := &memSource{name: "b", data: good, gate: make(chan struct{})}
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Fetch(context.Background(), digestOf(good), int64(len(good)), []Source{src})
		}()
	}
	// Let every caller reach the shared call before the download finishes.
	deadline := time.Now().Add(10 * time.Second)
	for src.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(src.gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	// Late callers may find the blob already stored; none downloads twice
	// while one download is running, and at most one runs after it.
	if c := src.calls.Load(); c != 1 {
		t.Errorf("source asked %d times, want 1", c)
	}
}

func TestFetchWaiterRetriesAfterOwnerCancelled(t *testing.T) {
	s := newStore(t)
	good := pkg(t, "web", "1.0")
	blocked := &memSource{name: "slow", data: good, gate: make(chan struct{})}
	ownerCtx, cancelOwner := context.WithCancel(context.Background())
	ownerDone := make(chan error, 1)
	go func() { ownerDone <- s.Fetch(ownerCtx, digestOf(good), 0, []Source{blocked}) }()
	for blocked.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiterDone := make(chan error, 1)
	honest := &memSource{name: "b", data: good}
	go func() { waiterDone <- s.Fetch(context.Background(), digestOf(good), 0, []Source{honest}) }()
	cancelOwner()
	if err := <-ownerDone; !errors.Is(err, context.Canceled) {
		t.Errorf("owner: err = %v, want context.Canceled", err)
	}
	if err := <-waiterDone; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if !s.Has(digestOf(good)) {
		t.Error("blob not stored")
	}
}

// catalog is a Catalog over a fixed list.
type catalog struct {
	mu   sync.Mutex
	pkgs []raftstore.PackageMeta
}

func (c *catalog) Packages() []raftstore.PackageMeta {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]raftstore.PackageMeta(nil), c.pkgs...)
}

func (c *catalog) set(p ...raftstore.PackageMeta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pkgs = p
}

func metaOf(b []byte) raftstore.PackageMeta {
	return raftstore.PackageMeta{Digest: digestOf(b), Name: "web", Version: "x", Size: int64(len(b))}
}

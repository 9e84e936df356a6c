package pkgstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/raftstore"
)

// put stores data and releases Put's pin, as the controller does after
// committing the metadata.
func put(t *testing.T, s *Store, data []byte) string {
	t.Helper()
	m, err := s.Put(context.Background(), bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s.Release(m.Digest, true)
	return m.Digest
}

func TestSyncFetchesMissingAndRemovesDeleted(t *testing.T) {
	leader, follower := newStore(t), newStore(t)
	v1, v2 := pkg(t, "web", "1"), pkg(t, "web", "2")
	put(t, leader, v1)
	put(t, leader, v2)
	cat := &catalog{}
	cat.set(metaOf(v1), metaOf(v2))
	y := follower.newSyncer(SyncConfig{Catalog: cat, Sources: func() []Source { return []Source{&blobSource{s: leader}} }})

	res := y.pass(context.Background())
	slices.Sort(res.Fetched)
	want := []string{digestOf(v1), digestOf(v2)}
	slices.Sort(want)
	if !slices.Equal(res.Fetched, want) || len(res.Failed) != 0 {
		t.Fatalf("first pass fetched %v, failed %v; want %v", res.Fetched, res.Failed, want)
	}

	// The state drops v1: the next pass removes it at once.
	cat.set(metaOf(v2))
	res = y.pass(context.Background())
	if !slices.Equal(res.Removed, []string{digestOf(v1)}) || follower.Has(digestOf(v1)) || !follower.Has(digestOf(v2)) {
		t.Fatalf("second pass removed %v; v1 stored %v, v2 stored %v", res.Removed, follower.Has(digestOf(v1)), follower.Has(digestOf(v2)))
	}
}

// blobSource serves blobs from another Store, as a peer server does.
type blobSource struct{ s *Store }

func (b *blobSource) Name() string { return "peer" }

func (b *blobSource) Blob(_ context.Context, digest string) (io.ReadCloser, error) {
	f, _, err := b.s.Open(digest)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func TestSyncOrphans(t *testing.T) {
	s := newStore(t)
	// An upload whose commit failed: not seen, so only the grace applies.
	o, err := s.Put(context.Background(), bytes.NewReader(pkg(t, "web", "orphan")), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s.Release(o.Digest, false)
	orphan := o.Digest
	pinned, err := s.Put(context.Background(), bytes.NewReader(pkg(t, "web", "pinned")), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name        string
		now         time.Time
		ready       bool
		wantOrphan  bool // still stored after the pass
		wantPinned  bool
		wantRemoved int
	}{
		{name: "young orphan is kept", now: now, ready: true, wantOrphan: true, wantPinned: true},
		{name: "not ready removes nothing", now: now.Add(2 * DefaultOrphanGrace), ready: false, wantOrphan: true, wantPinned: true},
		{name: "old orphan is removed, a pinned upload is not", now: now.Add(2 * DefaultOrphanGrace), ready: true, wantOrphan: false, wantPinned: true, wantRemoved: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.SyncOnce(context.Background(), SyncConfig{
				Catalog: &catalog{}, Sources: func() []Source { return nil },
				Ready: func() bool { return tt.ready }, Now: func() time.Time { return tt.now },
			})
			if s.Has(orphan) != tt.wantOrphan || s.Has(pinned.Digest) != tt.wantPinned || len(res.Removed) != tt.wantRemoved {
				t.Errorf("orphan stored %v, pinned stored %v, removed %v; want %v, %v, %d",
					s.Has(orphan), s.Has(pinned.Digest), res.Removed, tt.wantOrphan, tt.wantPinned, tt.wantRemoved)
			}
		})
	}
	s.Release(pinned.Digest, false)
	res := s.SyncOnce(context.Background(), SyncConfig{Catalog: &catalog{}, Sources: func() []Source { return nil },
		Now: func() time.Time { return now.Add(2 * DefaultOrphanGrace) }})
	if len(res.Removed) != 1 || s.Has(pinned.Digest) {
		t.Errorf("after Unpin: removed %v, still stored %v", res.Removed, s.Has(pinned.Digest))
	}
}

func TestSyncBacksOffAfterAFailedFetch(t *testing.T) {
	s := newStore(t)
	data := pkg(t, "web", "1")
	cat := &catalog{}
	cat.set(metaOf(data))
	down := &memSource{name: "down", err: errors.New("connection refused")}
	now := time.Now()
	clock := func() time.Time { return now }
	y := s.newSyncer(SyncConfig{Catalog: cat, Sources: func() []Source { return []Source{down} }, Now: clock, Interval: time.Second})
	if res := y.pass(context.Background()); len(res.Failed) != 1 {
		t.Fatalf("failed = %v, want the one package", res.Failed)
	}
	y.pass(context.Background()) // within the backoff: not asked again
	if c := down.calls.Load(); c != 1 {
		t.Errorf("source asked %d times within the backoff, want 1", c)
	}
	now = now.Add(maxFetchBackoff + time.Second)
	down.err, down.data = nil, data
	if res := y.pass(context.Background()); len(res.Fetched) != 1 {
		t.Fatalf("after the backoff: fetched %v, failed %v", res.Fetched, res.Failed)
	}
}

func TestSyncLoopStopsWithContext(t *testing.T) {
	leader, follower := newStore(t), newStore(t)
	data := pkg(t, "web", "1")
	put(t, leader, data)
	cat := &catalog{}
	cat.set(metaOf(data))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		follower.Sync(ctx, SyncConfig{Catalog: cat, Sources: func() []Source { return []Source{&blobSource{s: leader}} }, Interval: 10 * time.Millisecond})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !follower.Has(digestOf(data)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if !follower.Has(digestOf(data)) {
		t.Fatal("the sync loop did not fetch the blob")
	}
	if _, err := os.Stat(follower.dir); err != nil {
		t.Fatal(err)
	}
}

var (
	_ Catalog = (*catalog)(nil)
	_ Source  = (*blobSource)(nil)
)
var _ Catalog = (*raftstore.Store)(nil)

// TestSyncRemovesACommittedBlobDroppedBetweenPasses covers a package pushed
// and deleted again (by GC) between two passes: the pass never saw it
// listed, but the uploader's Release said it was committed, so it goes at
// once rather than after the orphan grace.
func TestSyncRemovesACommittedBlobDroppedBetweenPasses(t *testing.T) {
	s := newStore(t)
	y := s.newSyncer(SyncConfig{Catalog: &catalog{}, Sources: func() []Source { return nil }})
	y.pass(context.Background())
	d := put(t, s, pkg(t, "web", "1")) // committed, then deleted before the next pass
	res := y.pass(context.Background())
	if !slices.Equal(res.Removed, []string{d}) || s.Has(d) {
		t.Fatalf("removed %v, still stored %v; want it removed", res.Removed, s.Has(d))
	}
	if s.wasSeen(d) {
		t.Error("a removed, unlisted digest stays in the seen set")
	}
}

package pkgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/raftstore"
)

func gcMeta(name string, i int, t0 time.Time) raftstore.PackageMeta {
	return raftstore.PackageMeta{
		Digest: DigestPrefix + strings.Repeat(fmt.Sprintf("%x", i%16), 64)[:62] + fmt.Sprintf("%02x", len(name)),
		Name:   name, Version: fmt.Sprint(i), Size: 1, UploadedAt: t0.Add(time.Duration(i) * time.Minute),
	}
}

func versions(es []GCEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name+"@"+e.Version)
	}
	return out
}

func TestPlanGC(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var web []raftstore.PackageMeta
	for i := range 6 {
		web = append(web, gcMeta("web", i, t0))
	}
	api := []raftstore.PackageMeta{gcMeta("api", 7, t0), gcMeta("api", 8, t0)}
	all := append(slices.Clone(web), api...)
	reversed := slices.Clone(web)
	slices.Reverse(reversed)
	tests := []struct {
		name        string
		give        []raftstore.PackageMeta
		refs        map[string][]string
		keep        int
		wantRemoved []string
		wantKept    []string
	}{
		{name: "nothing", keep: 2},
		{name: "keep newest per name", give: all, keep: 2,
			wantRemoved: []string{"web@0", "web@1", "web@2", "web@3"},
			wantKept:    []string{"web@4", "web@5", "api@7", "api@8"}},
		{name: "referenced old packages stay", give: all, keep: 2,
			refs:        map[string][]string{web[0].Digest: {"standby package of service web (pool green)"}, web[2].Digest: {"live package of service web (pool blue)"}},
			wantRemoved: []string{"web@1", "web@3"},
			wantKept:    []string{"web@0", "web@2", "web@4", "web@5", "api@7", "api@8"}},
		{name: "keep one", give: all, keep: 1,
			wantRemoved: []string{"web@0", "web@1", "web@2", "web@3", "web@4", "api@7"},
			wantKept:    []string{"web@5", "api@8"}},
		{name: "keep more than there are", give: all, keep: 10,
			wantKept: []string{"web@0", "web@1", "web@2", "web@3", "web@4", "web@5", "api@7", "api@8"}},
		{name: "input order does not matter", give: append(slices.Clone(api), reversed...), keep: 2,
			wantRemoved: []string{"web@0", "web@1", "web@2", "web@3"},
			wantKept:    []string{"web@4", "web@5", "api@7", "api@8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := PlanGC(tt.give, tt.refs, tt.keep)
			if got := versions(res.Removed); !slices.Equal(got, tt.wantRemoved) {
				t.Errorf("removed %v, want %v", got, tt.wantRemoved)
			}
			if got := versions(res.Kept); !slices.Equal(got, tt.wantKept) {
				t.Errorf("kept %v, want %v", got, tt.wantKept)
			}
			for _, e := range append(res.Removed, res.Kept...) {
				if e.Reason == "" {
					t.Errorf("%s@%s has no reason", e.Name, e.Version)
				}
			}
		})
	}
}

// stopFollowersFirst makes the cluster's teardown kill the followers before
// the leader, so no new leader is elected mid-teardown and left with a write
// raft never resolves (which goleak would report).
func stopFollowersFirst(t *testing.T, c *raftstore.TestCluster) {
	t.Cleanup(func() {
		for _, f := range c.Followers() {
			c.Kill(f)
		}
	})
}

// TestGCProtectsReferencedPackages runs GC against a real replicated state:
// the live and standby packages of a service survive however old they are,
// everything else beyond the newest keep is deleted from the state, and each
// server's sync then removes exactly those blobs.
func TestGCProtectsReferencedPackages(t *testing.T) {
	c := raftstore.NewTestCluster(t, 3)
	stopFollowersFirst(t, c)
	leader := c.WaitLeader()
	blobs := newStore(t)
	ctx := context.Background()
	var metas []raftstore.PackageMeta
	for i := range 6 {
		data := pkg(t, "web", fmt.Sprintf("1.%d", i))
		m, err := blobs.Put(ctx, bytes.NewReader(data), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := leader.AddPackage(ctx, raftstore.PackageMeta{Digest: m.Digest, Name: m.Manifest.Name, Version: m.Manifest.Version, Size: m.Size, Uploader: "ci"})
		if err != nil {
			t.Fatal(err)
		}
		blobs.Release(m.Digest, true)
		metas = append(metas, pm)
	}
	// 1.0 is the standby pool's release, 1.1 the live pool's.
	_, err := leader.SetServiceState(ctx, raftstore.ServiceState{
		Service: "web", Generation: 1, Live: raftstore.PoolGreen,
		Pools: raftstore.Pools{
			Blue:  raftstore.Release{Version: "1.0", Digest: metas[0].Digest},
			Green: raftstore.Release{Version: "1.1", Digest: metas[1].Digest},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sync := SyncConfig{Catalog: leader, Sources: func() []Source { return nil }}
	y := blobs.newSyncer(sync)
	y.pass(ctx) // learn what is listed

	res, err := GC(ctx, leader, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := versions(res.Removed), []string{"web@1.2", "web@1.3"}; !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if got, want := versions(res.Kept), []string{"web@1.0", "web@1.1", "web@1.4", "web@1.5"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	for _, e := range res.Kept {
		switch e.Version {
		case "1.0":
			if !strings.Contains(e.Reason, "standby package of service web (pool blue)") {
				t.Errorf("1.0 kept because %q, want the standby reason", e.Reason)
			}
		case "1.1":
			if !strings.Contains(e.Reason, "live package of service web (pool green)") {
				t.Errorf("1.1 kept because %q, want the live reason", e.Reason)
			}
		}
	}

	c.WaitReplicated()
	for _, n := range c.Nodes() {
		var got []string
		for _, p := range n.Packages() {
			got = append(got, p.Version)
		}
		if want := []string{"1.0", "1.1", "1.4", "1.5"}; !slices.Equal(got, want) {
			t.Errorf("node %s lists %v, want %v", n.ID(), got, want)
		}
	}
	swept := y.pass(ctx)
	slices.Sort(swept.Removed)
	want := []string{metas[2].Digest, metas[3].Digest}
	slices.Sort(want)
	if !slices.Equal(swept.Removed, want) {
		t.Errorf("sync removed %v, want %v", swept.Removed, want)
	}
	for i, m := range metas {
		if stored, wantStored := blobs.Has(m.Digest), i != 2 && i != 3; stored != wantStored {
			t.Errorf("blob of 1.%d stored = %v, want %v", i, stored, wantStored)
		}
	}

	// A second run finds nothing more to do, and the state refuses to
	// delete a referenced package even when asked directly.
	again, err := GC(ctx, leader, 2)
	if err != nil || len(again.Removed) != 0 {
		t.Errorf("second GC removed %v (err %v), want nothing", versions(again.Removed), err)
	}
	if _, err := leader.DeletePackage(ctx, metas[1].Digest); !errors.Is(err, raftstore.ErrPackageProtected) {
		t.Errorf("deleting the live package: err = %v, want ErrPackageProtected", err)
	}
}

// racyState is a GCState whose service starts using a package between the
// plan and the delete.
type racyState struct {
	*raftstore.Store
	before func()
}

func (r racyState) DeletePackage(ctx context.Context, digest string) (bool, error) {
	r.before()
	return r.Store.DeletePackage(ctx, digest)
}

func TestGCHonoursAReferenceMadeAfterThePlan(t *testing.T) {
	c := raftstore.NewTestCluster(t, 1)
	leader := c.WaitLeader()
	ctx := context.Background()
	t0 := time.Now()
	old, err := leader.AddPackage(ctx, gcMeta("web", 1, t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.AddPackage(ctx, gcMeta("web", 2, t0)); err != nil {
		t.Fatal(err)
	}
	st := racyState{Store: leader, before: func() {
		_, err := leader.SetServiceState(ctx, raftstore.ServiceState{Service: "web", Generation: 1, Live: raftstore.PoolBlue,
			Pools: raftstore.Pools{Blue: raftstore.Release{Version: old.Version, Digest: old.Digest}}})
		if err != nil {
			t.Error(err)
		}
	}}
	res, err := GC(ctx, st, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || len(res.Kept) != 2 {
		t.Fatalf("removed %v, kept %v; want both kept", versions(res.Removed), versions(res.Kept))
	}
	if !strings.Contains(res.Kept[0].Reason, "in use") {
		t.Errorf("reason = %q", res.Kept[0].Reason)
	}
	if _, ok := leader.Package(old.Digest); !ok {
		t.Error("the package a service started using was deleted")
	}
}

var (
	_ GCState = (*raftstore.Store)(nil)
	_ GCState = racyState{}
)

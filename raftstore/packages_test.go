package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// testDigest returns a valid digest whose hex digits are all c.
func testDigest(c byte) string {
	return "sha256:" + strings.Repeat(string(c), 64)
}

func pkgMeta(c byte, name, version string, at time.Time) PackageMeta {
	return PackageMeta{Digest: testDigest(c), Name: name, Version: version, Size: 100 + int64(c), Uploader: "ci", UploadedAt: at}
}

func TestApplyPackageAdd(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newFSM(zap.NewNop())
	first := pkgMeta('a', "web", "1.0", t0)
	if got := applyTo(t, f, 1, PackageAddCommand, first); got != first {
		t.Fatalf("first add = %#v, want %#v", got, first)
	}
	again := first
	again.Uploader, again.UploadedAt = "someone-else", t0.Add(time.Hour)
	bad := func(mut func(*PackageMeta)) PackageMeta { m := pkgMeta('b', "web", "2.0", t0); mut(&m); return m }
	tests := []struct {
		name    string
		give    PackageMeta
		want    any // the response: a PackageMeta, or an error to match
		wantLen int
	}{
		{name: "same digest again keeps the first upload", give: again, want: first, wantLen: 1},
		{name: "new digest", give: pkgMeta('b', "web", "2.0", t0), want: pkgMeta('b', "web", "2.0", t0), wantLen: 2},
		{name: "digest not hex", give: bad(func(m *PackageMeta) { m.Digest = "sha256:" + strings.Repeat("g", 64) }), want: ErrInvalidCommand, wantLen: 2},
		{name: "digest upper case", give: bad(func(m *PackageMeta) { m.Digest = "sha256:" + strings.Repeat("A", 64) }), want: ErrInvalidCommand, wantLen: 2},
		{name: "digest without algorithm", give: bad(func(m *PackageMeta) { m.Digest = strings.Repeat("c", 64) }), want: ErrInvalidCommand, wantLen: 2},
		{name: "digest short", give: bad(func(m *PackageMeta) { m.Digest = "sha256:abc" }), want: ErrInvalidCommand, wantLen: 2},
		{name: "no name", give: bad(func(m *PackageMeta) { m.Digest, m.Name = testDigest('c'), "" }), want: ErrInvalidCommand, wantLen: 2},
		{name: "no version", give: bad(func(m *PackageMeta) { m.Digest, m.Version = testDigest('c'), "" }), want: ErrInvalidCommand, wantLen: 2},
		{name: "zero size", give: bad(func(m *PackageMeta) { m.Digest, m.Size = testDigest('c'), 0 }), want: ErrInvalidCommand, wantLen: 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := applyTo(t, f, uint64(i+2), PackageAddCommand, tt.give)
			if wantErr, ok := tt.want.(error); ok {
				if err, _ := got.(error); !errors.Is(err, wantErr) {
					t.Fatalf("response = %v, want an error matching %v", got, wantErr)
				}
			} else if got != tt.want {
				t.Fatalf("response = %#v, want %#v", got, tt.want)
			}
			if n := len(f.state.Packages); n != tt.wantLen {
				t.Errorf("state holds %d packages, want %d", n, tt.wantLen)
			}
		})
	}
}

func TestApplyPackageDeleteRespectsReferences(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newFSM(zap.NewNop())
	for i, c := range []byte("abcd") {
		applyTo(t, f, uint64(i+1), PackageAddCommand, pkgMeta(c, "web", fmt.Sprint(i), t0))
	}
	st := svc("web", 1, PoolGreen)
	st.Pools = Pools{Blue: Release{Version: "0", Digest: testDigest('a')}, Green: Release{Version: "1", Digest: testDigest('b')}}
	applyTo(t, f, 5, ServiceStateCommand, st)

	tests := []struct {
		name    string
		give    string
		want    any // true or false for a delete, or the error to match
		wantHas bool
	}{
		{name: "standby package", give: testDigest('a'), want: ErrPackageProtected, wantHas: true},
		{name: "live package", give: testDigest('b'), want: ErrPackageProtected, wantHas: true},
		{name: "unreferenced package", give: testDigest('c'), want: true, wantHas: false},
		{name: "already deleted", give: testDigest('c'), want: false, wantHas: false},
		{name: "never added", give: testDigest('e'), want: false, wantHas: false},
		{name: "malformed digest", give: "sha256:zz", want: ErrInvalidCommand, wantHas: false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := applyTo(t, f, uint64(i+6), PackageDeleteCommand, packageDeleteBody{Digest: tt.give})
			if wantErr, ok := tt.want.(error); ok {
				if err, _ := got.(error); !errors.Is(err, wantErr) {
					t.Fatalf("response = %v, want an error matching %v", got, wantErr)
				}
			} else if got != tt.want {
				t.Fatalf("response = %#v, want %#v", got, tt.want)
			}
			if _, has := f.state.Packages[tt.give]; has != tt.wantHas {
				t.Errorf("package present = %v, want %v", has, tt.wantHas)
			}
		})
	}
	if _, ok := f.state.Packages[testDigest('d')]; !ok {
		t.Error("an unrelated package was deleted")
	}
}

// TestApplyPackagesDeterministic feeds the same log to two FSMs and expects
// byte-identical states and identical responses.
func TestApplyPackagesDeterministic(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	st := svc("web", 1, PoolBlue)
	st.Pools.Blue.Digest = testDigest('b')
	log := []struct {
		ct   CommandType
		body any
	}{
		{PackageAddCommand, pkgMeta('a', "web", "1", t0)},
		{PackageAddCommand, pkgMeta('b', "web", "2", t0.Add(time.Minute))},
		{PackageAddCommand, pkgMeta('c', "api", "1", t0.Add(2*time.Minute))},
		{ServiceStateCommand, st},
		{PackageDeleteCommand, packageDeleteBody{Digest: testDigest('a')}},
		{PackageDeleteCommand, packageDeleteBody{Digest: testDigest('b')}}, // refused: live
		{PackageAddCommand, pkgMeta('a', "web", "1", t0.Add(time.Hour))},
	}
	run := func() (*fsm, []string) {
		f := newFSM(zap.NewNop())
		var resps []string
		for i, e := range log {
			resps = append(resps, fmt.Sprintf("%#v", applyTo(t, f, uint64(i+1), e.ct, e.body)))
		}
		return f, resps
	}
	a, ra := run()
	b, rb := run()
	if !reflect.DeepEqual(ra, rb) {
		t.Errorf("responses differ:\n%v\n%v", ra, rb)
	}
	if x, y := mustEncode(t, a.state), mustEncode(t, b.state); !bytes.Equal(x, y) {
		t.Errorf("states differ:\n%s\n%s", x, y)
	}
	if got := len(a.state.Packages); got != 3 {
		t.Errorf("%d packages, want 3 (a re-added, b kept as live, c)", got)
	}
	if got := a.state.Packages[testDigest('a')].UploadedAt; !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("re-added package uploaded_at = %v, want the new upload's time", got)
	}
}

func TestFSMSnapshotIncludesPackages(t *testing.T) {
	f := populatedFSM(t)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	applyTo(t, f, 5, PackageAddCommand, pkgMeta('a', "web", "1.0", t0))
	applyTo(t, f, 6, PackageAddCommand, pkgMeta('b', "api", "2.0", t0.Add(time.Second)))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(zap.NewNop())
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.state.Packages, f.state.Packages) {
		t.Errorf("restored packages = %#v, want %#v", g.state.Packages, f.state.Packages)
	}
	if a, b := mustEncode(t, g.state), mustEncode(t, f.state); !bytes.Equal(a, b) {
		t.Errorf("restored state differs:\n got %s\nwant %s", a, b)
	}

	c := f.state.clone()
	m := c.Packages[testDigest('a')]
	m.Name = "changed"
	c.Packages[testDigest('a')] = m
	delete(c.Packages, testDigest('b'))
	if f.state.Packages[testDigest('a')].Name != "web" || len(f.state.Packages) != 2 {
		t.Error("clone shares the packages map with the original")
	}
}

func TestDecodeStateChecksPackages(t *testing.T) {
	d := testDigest('a')
	tests := []struct {
		name string
		give string
	}{
		{name: "key differs from digest", give: `{"packages":{"` + d + `":{"digest":"` + testDigest('b') + `","name":"web","version":"1","size":1}}}`},
		{name: "invalid digest", give: `{"packages":{"sha256:x":{"digest":"sha256:x","name":"web","version":"1","size":1}}}`},
		{name: "no name", give: `{"packages":{"` + d + `":{"digest":"` + d + `","version":"1","size":1}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeState([]byte(tt.give)); err == nil {
				t.Fatal("decodeState accepted an inconsistent packages map")
			}
		})
	}
	st, err := decodeState([]byte(`{}`))
	if err != nil || st.Packages == nil {
		t.Fatalf("decode of a state without packages: %v, packages map %v; want an empty map", err, st.Packages)
	}
}

// stopFollowersFirst makes the cluster's teardown kill the followers before
// the leader. Killing the leader first lets the survivors elect a new one
// whose first write (its NodeMeta) can be cut off by the teardown, which
// leaves a goroutine waiting on a future raft never resolves.
func stopFollowersFirst(t *testing.T, c *TestCluster) {
	t.Cleanup(func() {
		for _, f := range c.Followers() {
			c.Kill(f)
		}
	})
}

func TestPackagesReplicate(t *testing.T) {
	c := NewTestCluster(t, 3)
	stopFollowersFirst(t, c)
	leader := c.WaitLeader()
	ctx := context.Background()
	var added []PackageMeta
	for i, d := range []byte("cab") {
		m, err := leader.AddPackage(ctx, PackageMeta{Digest: testDigest(d), Name: "web", Version: fmt.Sprint(i), Size: 10, Uploader: "ci"})
		if err != nil {
			t.Fatal(err)
		}
		if m.UploadedAt.IsZero() {
			t.Fatalf("add %d: uploaded_at not stamped", i)
		}
		added = append(added, m)
	}
	again, err := leader.AddPackage(ctx, PackageMeta{Digest: testDigest('c'), Name: "web", Version: "0", Size: 10, Uploader: "other"})
	if err != nil || again != added[0] {
		t.Fatalf("re-add = %#v, %v; want the first upload %#v", again, err, added[0])
	}
	if _, err := c.Followers()[0].AddPackage(ctx, PackageMeta{Digest: testDigest('d'), Name: "web", Version: "9", Size: 1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower add: err = %v, want ErrNotLeader", err)
	}
	c.WaitReplicated()
	for _, n := range c.Nodes() {
		if got := n.Packages(); !reflect.DeepEqual(got, added) {
			t.Errorf("node %s lists %#v, want upload order %#v", n.ID(), got, added)
		}
		if m, ok := n.Package(testDigest('a')); !ok || m != added[1] {
			t.Errorf("node %s: Package = %#v, %v", n.ID(), m, ok)
		}
	}

	st := svc("web", 1, PoolBlue)
	st.Pools.Blue.Digest = testDigest('a')
	if _, err := leader.SetServiceState(ctx, st); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.DeletePackage(ctx, testDigest('a')); !errors.Is(err, ErrPackageProtected) {
		t.Fatalf("delete of the live package: err = %v, want ErrPackageProtected", err)
	}
	if refs := leader.PackageRefs()[testDigest('a')]; len(refs) != 1 || refs[0] != "live package of service web (pool blue)" {
		t.Errorf("refs = %q", refs)
	}
	if ok, err := leader.DeletePackage(ctx, testDigest('c')); err != nil || !ok {
		t.Fatalf("delete = %v, %v; want true, nil", ok, err)
	}
	c.WaitReplicated()
	for _, n := range c.Nodes() {
		if _, ok := n.Package(testDigest('c')); ok {
			t.Errorf("node %s still has the deleted package", n.ID())
		}
		if got := len(n.Packages()); got != 2 {
			t.Errorf("node %s lists %d packages, want 2", n.ID(), got)
		}
	}
}

package pkgstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cyclerhq/cycler/raftstore"
)

// GCState is what GC reads and changes: the replicated package list and
// the references to it. *raftstore.Store implements it; GC runs on the
// leader, since DeletePackage commits.
type GCState interface {
	Packages() []raftstore.PackageMeta
	PackageRefs() map[string][]string
	DeletePackage(ctx context.Context, digest string) (bool, error)
}

// GCEntry is one package GC considered, with why it was kept or removed.
type GCEntry struct {
	raftstore.PackageMeta
	Reason string `json:"reason"`
}

// GCResult is what one GC run did. Both lists are in upload order.
type GCResult struct {
	// Keep is the number of packages per name GC keeps.
	Keep    int       `json:"keep"`
	Removed []GCEntry `json:"removed"`
	Kept    []GCEntry `json:"kept"`
}

// PlanGC decides which packages to remove: per package name, the newest
// keep are kept, and so is every package a service references (refs, as
// from raftstore.Store.PackageRefs: the live and standby packages of every
// service; the last-known-good package joins them with the cycle work).
// Every other package is removed. pkgs may be in any order.
func PlanGC(pkgs []raftstore.PackageMeta, refs map[string][]string, keep int) GCResult {
	res := GCResult{Keep: keep, Removed: []GCEntry{}, Kept: []GCEntry{}}
	byName := map[string][]raftstore.PackageMeta{}
	for _, p := range pkgs {
		byName[p.Name] = append(byName[p.Name], p)
	}
	rank := map[string]int{} // digest -> 0 for the newest of its name
	for _, list := range byName {
		sort.Slice(list, func(i, j int) bool { return newer(list[i], list[j]) })
		for i, p := range list {
			rank[p.Digest] = i
		}
	}
	all := append([]raftstore.PackageMeta(nil), pkgs...)
	sort.Slice(all, func(i, j int) bool { return newer(all[j], all[i]) })
	for _, p := range all {
		var why []string
		if rank[p.Digest] < keep {
			why = append(why, fmt.Sprintf("one of the newest %d of %s", keep, p.Name))
		}
		why = append(why, refs[p.Digest]...)
		if len(why) == 0 {
			res.Removed = append(res.Removed, GCEntry{PackageMeta: p,
				Reason: fmt.Sprintf("older than the newest %d of %s and no service uses it", keep, p.Name)})
			continue
		}
		res.Kept = append(res.Kept, GCEntry{PackageMeta: p, Reason: strings.Join(why, "; ")})
	}
	return res
}

// newer orders packages newest first, ties broken by digest so that every
// run plans the same.
func newer(a, b raftstore.PackageMeta) bool {
	if !a.UploadedAt.Equal(b.UploadedAt) {
		return a.UploadedAt.After(b.UploadedAt)
	}
	return a.Digest > b.Digest
}

// GC plans with PlanGC and commits a delete for each package to remove. A
// delete the state refuses because a service started using the package
// after the plan was made (raftstore.ErrPackageProtected) moves that
// package to Kept. Every server's Sync then removes the blobs. On another
// error GC stops and returns what it did so far with the error.
func GC(ctx context.Context, st GCState, keep int) (GCResult, error) {
	plan := PlanGC(st.Packages(), st.PackageRefs(), keep)
	res := GCResult{Keep: keep, Removed: []GCEntry{}, Kept: plan.Kept}
	for i, e := range plan.Removed {
		_, err := st.DeletePackage(ctx, e.Digest)
		switch {
		case err == nil:
			res.Removed = append(res.Removed, e)
		case errors.Is(err, raftstore.ErrPackageProtected):
			e.Reason = "in use: " + err.Error()
			res.Kept = append(res.Kept, e)
		default:
			// Those not tried yet are kept, as far as this run goes.
			for _, rest := range plan.Removed[i:] {
				rest.Reason = "not removed: GC stopped early"
				res.Kept = append(res.Kept, rest)
			}
			sort.Slice(res.Kept, func(a, b int) bool { return newer(res.Kept[b].PackageMeta, res.Kept[a].PackageMeta) })
			return res, fmt.Errorf("pkgstore: gc: deleting %s: %w", e.Digest, err)
		}
	}
	sort.Slice(res.Kept, func(a, b int) bool { return newer(res.Kept[b].PackageMeta, res.Kept[a].PackageMeta) })
	return res, nil
}

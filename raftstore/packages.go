package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cyclerhq/cycler/cycle"
	"regexp"
	"sort"
	"time"
)

// ErrPackageProtected is returned when a package delete names a package that
// a service still references (see PackageRefs); deleting it could leave a
// pool with nothing to roll back to.
var ErrPackageProtected = errors.New("package is protected")

// digestRE is the one digest form the state holds: "sha256:" and 64
// lower-case hex digits.
var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// PackageMeta is the replicated metadata of one uploaded package. The Raft
// log carries only this; the blob is on the servers' disks.
type PackageMeta struct {
	// Digest is "sha256:<64 hex>" of the package file; it identifies the package.
	Digest string `json:"digest"`
	// Name and Version come from the package manifest.
	Name    string `json:"name"`
	Version string `json:"version"`
	// Size is the package file's size in bytes.
	Size int64 `json:"size"`
	// Uploader is the name of the API token that pushed it.
	Uploader string `json:"uploader"`
	// UploadedAt is stamped by the leader when it commits the upload.
	UploadedAt time.Time `json:"uploaded_at"`
}

// validate checks a package's own fields. It is pure, so Apply may call it.
func (m PackageMeta) validate() error {
	var errs []error
	if !digestRE.MatchString(m.Digest) {
		errs = append(errs, fmt.Errorf("digest: %q is not \"sha256:\" and 64 lower-case hex digits", m.Digest))
	}
	if m.Name == "" {
		errs = append(errs, errors.New("name: must be set"))
	}
	if m.Version == "" {
		errs = append(errs, errors.New("version: must be set"))
	}
	if m.Size <= 0 {
		errs = append(errs, fmt.Errorf("size: %d is not positive", m.Size))
	}
	return errors.Join(errs...)
}

// packageDeleteBody removes one package's metadata.
type packageDeleteBody struct {
	Digest string `json:"digest"`
}

// applyPackageAdd records a package. Adding a digest that is already there
// is a no-op that returns the stored metadata, so a re-upload of the same
// bytes keeps the original uploader and time.
func applyPackageAdd(st *State, body []byte) any {
	var m PackageMeta
	if err := json.Unmarshal(body, &m); err != nil {
		return invalid(PackageAddCommand, err)
	}
	if err := m.validate(); err != nil {
		return invalid(PackageAddCommand, err)
	}
	if cur, ok := st.Packages[m.Digest]; ok {
		return cur
	}
	st.Packages[m.Digest] = m
	return m
}

// applyPackageDelete forgets a package unless a service references it. The
// check runs here, in Apply, rather than only in the GC that proposes the
// delete: a service state committed between GC's read and this entry is then
// still honoured, on every replica alike (invariant 4).
func applyPackageDelete(st *State, body []byte) any {
	var cmd packageDeleteBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(PackageDeleteCommand, err)
	}
	if !digestRE.MatchString(cmd.Digest) {
		return invalid(PackageDeleteCommand, fmt.Errorf("digest: %q is not \"sha256:\" and 64 lower-case hex digits", cmd.Digest))
	}
	if refs := packageRefs(st)[cmd.Digest]; len(refs) > 0 {
		return fmt.Errorf("package %s: %w: it is the %s", cmd.Digest, ErrPackageProtected, refs[0])
	}
	_, existed := st.Packages[cmd.Digest]
	delete(st.Packages, cmd.Digest)
	return existed
}

// packageRefs maps each digest a service references to why, for example
// "live package of service web (pool blue)". A digest is referenced while it
// is the release of either pool of any service: the live pool's and the
// standby pool's, plus the last-known-good release, the packages of running
// cycles and the packages staged for a deploy window.
func packageRefs(st *State) map[string][]string {
	refs := map[string][]string{}
	names := make([]string, 0, len(st.Services))
	for n := range st.Services {
		names = append(names, n)
	}
	sort.Strings(names) // a deterministic first reason on every replica
	for _, n := range names {
		s := st.Services[n]
		for _, p := range []struct {
			pool string
			rel  Release
		}{{PoolBlue, s.Pools.Blue}, {PoolGreen, s.Pools.Green}} {
			if p.rel.Digest == "" {
				continue
			}
			role := "standby"
			if p.pool == s.Live {
				role = "live"
			}
			refs[p.rel.Digest] = append(refs[p.rel.Digest], fmt.Sprintf("%s package of service %s (pool %s)", role, n, p.pool))
		}
	}
	// The last-known-good package: what was live before the newest cycle
	// that finished, so `cyclerctl rollback` can still redeploy it when
	// the standby pool no longer holds it. Active cycles' packages are
	// kept too, so GC cannot pull a blob from under an install.
	svcs := make([]string, 0, len(st.Cycles))
	for n := range st.Cycles {
		svcs = append(svcs, n)
	}
	sort.Strings(svcs)
	for _, n := range svcs {
		cs := st.Cycles[n]
		for i := len(cs) - 1; i >= 0; i-- {
			c := cs[i]
			if c.Active() && c.Package.Digest != "" {
				refs[c.Package.Digest] = append(refs[c.Package.Digest], fmt.Sprintf("package of running cycle %s", c.ID))
				continue
			}
			if c.Phase == cycle.Done && c.Previous.Digest != "" {
				refs[c.Previous.Digest] = append(refs[c.Previous.Digest], fmt.Sprintf("last-known-good package of service %s (live before cycle %s)", n, c.ID))
				break
			}
		}
	}
	stagedRefs(st, refs)
	return refs
}

// AddPackage commits the metadata of an uploaded package and returns it as
// stored. UploadedAt is stamped here. Adding a digest already present
// succeeds and returns the metadata of the first upload.
func (s *Store) AddPackage(ctx context.Context, m PackageMeta) (PackageMeta, error) {
	if err := m.validate(); err != nil {
		return PackageMeta{}, fmt.Errorf("raftstore: add package: %w", invalid(PackageAddCommand, err))
	}
	m.UploadedAt = s.now()
	resp, err := s.apply(ctx, "add package", PackageAddCommand, m)
	if err != nil {
		return PackageMeta{}, err
	}
	return resp.(PackageMeta), nil
}

// DeletePackage forgets the package digest and reports whether it was
// there. It fails with ErrPackageProtected while a service references the
// package. Deleting an unknown digest succeeds, so a retry is harmless.
func (s *Store) DeletePackage(ctx context.Context, digest string) (bool, error) {
	if !digestRE.MatchString(digest) {
		return false, fmt.Errorf("raftstore: delete package: %w", invalid(PackageDeleteCommand,
			fmt.Errorf("digest: %q is not \"sha256:\" and 64 lower-case hex digits", digest)))
	}
	resp, err := s.apply(ctx, "delete package", PackageDeleteCommand, packageDeleteBody{Digest: digest})
	if err != nil {
		return false, err
	}
	return resp.(bool), nil
}

// Package returns the metadata of the package digest.
func (s *Store) Package(digest string) (m PackageMeta, ok bool) {
	s.fsm.read(func(state *State) { m, ok = state.Packages[digest] })
	return m, ok
}

// Packages returns every package, oldest upload first (ties by digest).
func (s *Store) Packages() []PackageMeta {
	var out []PackageMeta
	s.fsm.read(func(state *State) {
		out = make([]PackageMeta, 0, len(state.Packages))
		for _, m := range state.Packages {
			out = append(out, m)
		}
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].UploadedAt.Equal(out[j].UploadedAt) {
			return out[i].UploadedAt.Before(out[j].UploadedAt)
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}

// PackageRefs maps each digest that a service references to the reasons,
// such as "live package of service web (pool blue)". GC never deletes
// these, and DeletePackage refuses them.
func (s *Store) PackageRefs() map[string][]string {
	var out map[string][]string
	s.fsm.read(func(state *State) { out = packageRefs(state) })
	return out
}

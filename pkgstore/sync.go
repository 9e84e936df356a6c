package pkgstore

import (
	"context"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/raftstore"
)

// Sync defaults.
const (
	// DefaultSyncInterval is how often Sync compares the disk with the state.
	DefaultSyncInterval = 2 * time.Second
	// DefaultOrphanGrace is how old a blob the state has never listed must be
	// before Sync removes it. It covers the time between an upload being
	// stored and its metadata committing, and a restarted server catching
	// up with the log, during which a new blob is legitimately unlisted.
	DefaultOrphanGrace = time.Hour
	// maxFetchBackoff caps the wait before retrying a blob no server had.
	maxFetchBackoff = time.Minute
)

// Catalog is the replicated list of packages that Sync makes the disk
// follow. *raftstore.Store implements it.
type Catalog interface {
	Packages() []raftstore.PackageMeta
}

// SyncConfig configures Sync.
type SyncConfig struct {
	// Catalog is the replicated package list. Required.
	Catalog Catalog
	// Sources returns where to fetch missing blobs from, best first (the
	// leader, then the other servers). It is called on every pass, so it
	// follows membership and leadership changes. Required.
	Sources func() []Source
	// Ready reports whether the catalog is current: this server follows a
	// leader and has applied every committed entry. Blobs are removed only
	// while it is true, so a server replaying its log never deletes a blob
	// the state is about to list again. Nil means always ready.
	Ready func() bool
	// Interval is the time between passes (default DefaultSyncInterval).
	Interval time.Duration
	// OrphanGrace is how old an unlisted blob must be before it is
	// removed, unless this process saw the state list it (or committed it,
	// see Store.Release) and then drop it (default DefaultOrphanGrace).
	OrphanGrace time.Duration
	// Now is the clock (default time.Now), for tests.
	Now func() time.Time
}

// SyncResult is what one pass did.
type SyncResult struct {
	// Fetched and Removed are digests.
	Fetched, Removed []string
	// Failed maps a digest that could not be fetched or removed to why.
	Failed map[string]error
}

// syncer is Sync's state between passes.
type syncer struct {
	s   *Store
	cfg SyncConfig
	// retry holds, per digest that could not be fetched, when to try again
	// and the backoff to use next.
	retry map[string]fetchRetry
}

type fetchRetry struct {
	at      time.Time
	backoff time.Duration
}

// Sync runs until ctx ends, making the disk follow cfg.Catalog: it fetches
// every listed blob this server lacks (verifying each digest) and removes
// blobs the catalog no longer lists. Every server runs it, the leader too.
func (s *Store) Sync(ctx context.Context, cfg SyncConfig) {
	y := s.newSyncer(cfg)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res := y.pass(ctx)
		for d, err := range res.Failed {
			if ctx.Err() == nil {
				s.log.Warn("package sync", zap.String("digest", d), zap.Error(err))
			}
		}
		timer.Reset(y.cfg.Interval)
	}
}

// SyncOnce runs a single pass, for tests and tools. A blob the catalog has
// never listed is removed only once older than OrphanGrace.
func (s *Store) SyncOnce(ctx context.Context, cfg SyncConfig) SyncResult {
	return s.newSyncer(cfg).pass(ctx)
}

func (s *Store) newSyncer(cfg SyncConfig) *syncer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSyncInterval
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = DefaultOrphanGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	return &syncer{s: s, cfg: cfg, retry: map[string]fetchRetry{}}
}

// pass fetches what is missing, then removes what is no longer listed.
func (y *syncer) pass(ctx context.Context) SyncResult {
	res := SyncResult{Failed: map[string]error{}}
	// Read readiness before the catalog: if it held then, the catalog read
	// after it is at least as current.
	ready := y.cfg.Ready()
	pkgs := y.cfg.Catalog.Packages()
	listed := make(map[string]bool, len(pkgs))
	now := y.cfg.Now()
	for _, p := range pkgs {
		listed[p.Digest] = true
		if y.s.Has(p.Digest) {
			delete(y.retry, p.Digest)
			continue
		}
		if r, ok := y.retry[p.Digest]; ok && now.Before(r.at) {
			continue
		}
		if ctx.Err() != nil {
			return res
		}
		if err := y.s.Fetch(ctx, p.Digest, p.Size, y.cfg.Sources()); err != nil {
			res.Failed[p.Digest] = err
			b := min(max(2*y.retry[p.Digest].backoff, y.cfg.Interval), maxFetchBackoff)
			// Jitter keeps the servers that all lack a blob from asking
			// the same peers in lockstep.
			y.retry[p.Digest] = fetchRetry{at: now.Add(b/2 + rand.N(b/2+1)), backoff: b}
			continue
		}
		delete(y.retry, p.Digest)
		res.Fetched = append(res.Fetched, p.Digest)
	}
	for d := range y.retry {
		if !listed[d] {
			delete(y.retry, d)
		}
	}
	y.s.markSeen(listed)
	if ready {
		y.sweep(listed, now, &res)
	}
	y.s.forgetUnlisted(listed)
	return res
}

// sweep removes the blobs the catalog does not list: at once when this
// process saw them listed (the state deleted them), otherwise only after
// OrphanGrace (an upload whose commit failed, or a blob deleted while this
// server was down). Held blobs stay.
func (y *syncer) sweep(listed map[string]bool, now time.Time, res *SyncResult) {
	blobs, err := y.s.List()
	if err != nil {
		res.Failed["*"] = err
		return
	}
	for _, b := range blobs {
		if listed[b.Digest] {
			continue
		}
		seen := y.s.wasSeen(b.Digest)
		if !seen && now.Sub(b.ModTime) < y.cfg.OrphanGrace {
			continue
		}
		removed, err := y.s.deleteUnheld(b.Digest)
		if err != nil {
			res.Failed[b.Digest] = err
			continue
		}
		if !removed {
			continue
		}
		y.s.log.Info("blob removed", zap.String("digest", b.Digest), zap.Bool("was_listed", seen))
		res.Removed = append(res.Removed, b.Digest)
	}
}

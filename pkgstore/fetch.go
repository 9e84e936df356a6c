package pkgstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
)

// Source is somewhere a missing blob can be fetched from: another server.
type Source interface {
	// Name identifies the source in errors and logs, such as its address.
	Name() string
	// Blob opens the bytes of digest. The caller closes the reader.
	Blob(ctx context.Context, digest string) (io.ReadCloser, error)
}

// fetchCall is one fetch in progress; later callers for the same digest
// wait for it instead of downloading the blob again.
type fetchCall struct {
	done chan struct{}
	err  error
}

// Fetch makes sure the blob of digest is stored here, downloading it from
// the first of sources that delivers exactly size bytes hashing to digest.
// Bytes that do not match (a corrupt or lying source) are discarded and the
// next source is tried; nothing unverified is ever stored. size is the
// expected size from the package metadata, or 0 to accept any size up to
// MaxUploadBytes.
//
// Fetch is for digests the replicated state lists: Sync removes a fetched
// blob as soon as the state stops listing it.
//
// Concurrent calls for one digest share one download. If that download
// ended only because its caller's ctx did, a waiter whose own ctx is still
// live starts another.
func (s *Store) Fetch(ctx context.Context, digest string, size int64, sources []Source) error {
	if _, err := ParseDigest(digest); err != nil {
		return fmt.Errorf("pkgstore: fetch: %w", err)
	}
	for {
		if s.Has(digest) {
			return nil
		}
		s.mu.Lock()
		call, running := s.fetches[digest]
		if !running {
			call = &fetchCall{done: make(chan struct{})}
			s.fetches[digest] = call
		}
		s.mu.Unlock()
		if !running {
			call.err = s.fetch(ctx, digest, size, sources)
			s.mu.Lock()
			delete(s.fetches, digest)
			s.mu.Unlock()
			close(call.done)
			return call.err
		}
		select {
		case <-call.done:
		case <-ctx.Done():
			return fmt.Errorf("pkgstore: fetch %s: %w", digest, ctx.Err())
		}
		if call.err == nil || ctx.Err() != nil || !errors.Is(call.err, context.Canceled) && !errors.Is(call.err, context.DeadlineExceeded) {
			return call.err
		}
	}
}

// fetch tries each source in turn.
func (s *Store) fetch(ctx context.Context, digest string, size int64, sources []Source) error {
	if len(sources) == 0 {
		return fmt.Errorf("pkgstore: fetch %s: %w here and there is no other server to fetch it from", digest, ErrNotFound)
	}
	var errs []error
	for _, src := range sources {
		err := s.fetchFrom(ctx, digest, size, src)
		if err == nil {
			s.log.Info("blob fetched", zap.String("digest", digest), zap.String("from", src.Name()))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pkgstore: fetch %s: %w", digest, ctx.Err())
		}
		s.log.Warn("blob fetch failed", zap.String("digest", digest), zap.String("from", src.Name()), zap.Error(err))
		errs = append(errs, fmt.Errorf("from %s: %w", src.Name(), err))
	}
	return fmt.Errorf("pkgstore: fetch %s: no server delivered it: %w", digest, errors.Join(errs...))
}

// fetchFrom downloads digest from one source into a temporary file and
// renames it into place only if its size and hash are right.
func (s *Store) fetchFrom(ctx context.Context, digest string, size int64, src Source) error {
	rc, err := src.Blob(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	limit := s.maxSize
	if size > 0 {
		limit = size
	}
	tmp, n, sum, err := s.receive(ctx, rc, limit)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // finds nothing after the rename
	defer tmp.Close()
	if size > 0 && n != size {
		return fmt.Errorf("truncated blob: got %d of %d bytes", n, size)
	}
	if got := DigestPrefix + hex.EncodeToString(sum); got != digest {
		return fmt.Errorf("%w: the bytes hash to %s", ErrDigestMismatch, got)
	}
	if err := s.commit(tmp, digest); err != nil {
		return err
	}
	s.markSeen(map[string]bool{digest: true})
	return nil
}

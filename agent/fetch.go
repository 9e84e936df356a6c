package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"

	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/pkgfile"
)

// BlobSource is one place a package blob can be downloaded from.
type BlobSource interface {
	// Name identifies the source in errors and logs.
	Name() string
	// Open streams the blob of digest; the caller closes it.
	Open(ctx context.Context, digest string) (io.ReadCloser, error)
}

// serverSource downloads blobs from a cyclerd server:
// GET /v1/packages/{digest}/blob with an agent-scope token.
type serverSource struct {
	c *client.Client
}

// NewServerSource returns a BlobSource for the cyclerd server at addr
// ("host:port" or an http(s) URL) that presents token. hc may be nil.
func NewServerSource(addr, token string, hc *http.Client) (BlobSource, error) {
	c, err := client.New(client.Config{Addr: addr, Token: token, HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	return &serverSource{c: c}, nil
}

// Name implements BlobSource.
func (s *serverSource) Name() string { return "cyclerd at " + s.c.Addr() }

// Open implements BlobSource.
func (s *serverSource) Open(ctx context.Context, digest string) (io.ReadCloser, error) {
	resp, err := s.c.DoRaw(ctx, http.MethodGet, "/v1/packages/"+digest+"/blob", nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// fetch streams package digest from the first source that serves it
// intact and unpacks it into the new directory dest (pkgfile.Extract's
// rules and limits), hashing the bytes as they pass. It starts at a random
// source so that a fleet spreads over the servers. The unpacked tree only
// counts once the whole blob hashed to digest: on a mismatch, a cut
// transfer or a source error, dest is removed and the next source is
// tried. A package that hashes right but is refused (hostile, too large,
// a bad manifest) is final: every source serves the same bytes. step says
// which step failed: fetch (no source served the blob intact) or unpack.
func fetch(ctx context.Context, sources []BlobSource, digest, dest string, lim pkgfile.Limits) (pkgfile.Manifest, string, error) {
	if len(sources) == 0 {
		return pkgfile.Manifest{}, stepFetch, errors.New("no servers to download from; set servers in the agent config")
	}
	start := rand.IntN(len(sources))
	var errs []error
	for i := range sources {
		src := sources[(start+i)%len(sources)]
		m, final, err := fetchFrom(ctx, src, digest, dest, lim)
		if err == nil {
			return m, "", nil
		}
		if final {
			return pkgfile.Manifest{}, stepUnpack, fmt.Errorf("package %s refused: %w", digest, err)
		}
		if ctx.Err() != nil {
			return pkgfile.Manifest{}, stepFetch, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", src.Name(), err))
	}
	return pkgfile.Manifest{}, stepFetch, fmt.Errorf("no server served package %s intact: %w", digest, errors.Join(errs...))
}

// fetchFrom is one attempt of fetch. final is true when the error is
// about the package itself rather than the transfer.
func fetchFrom(ctx context.Context, src BlobSource, digest, dest string, lim pkgfile.Limits) (m pkgfile.Manifest, final bool, err error) {
	body, err := src.Open(ctx, digest)
	if err != nil {
		return pkgfile.Manifest{}, false, err
	}
	defer body.Close()
	h := sha256.New()
	r := &countingReader{r: io.TeeReader(body, h)}
	m, xerr := pkgfile.Extract(ctx, r, dest, lim)
	if xerr != nil && errors.Is(xerr, pkgfile.ErrTooLarge) {
		// Over a limit: refused whoever serves it, and the rest of the
		// blob is not worth reading to prove it authentic.
		return pkgfile.Manifest{}, true, xerr
	}
	// Hash the rest (Extract may stop at the end of the tar stream), but
	// never read past the archive limit.
	if _, err := io.Copy(io.Discard, io.LimitReader(r, max(lim.MaxArchiveBytes+1-r.n, 0))); err != nil {
		os.RemoveAll(dest)
		return pkgfile.Manifest{}, false, fmt.Errorf("download after %d bytes: %w", r.n, errors.Join(xerr, err))
	}
	if r.n > lim.MaxArchiveBytes {
		os.RemoveAll(dest)
		return pkgfile.Manifest{}, true, fmt.Errorf("%w: package %s is larger than the archive limit of %d bytes", pkgfile.ErrTooLarge, digest, lim.MaxArchiveBytes)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		os.RemoveAll(dest)
		err := fmt.Errorf("the %d bytes downloaded hash to %s, not %s: the blob is corrupt or the transfer was cut", r.n, got, digest)
		if xerr != nil {
			err = fmt.Errorf("%w (unpacking it said: %v)", err, xerr)
		}
		return pkgfile.Manifest{}, false, err
	}
	if xerr != nil {
		return pkgfile.Manifest{}, true, xerr
	}
	return m, false, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

// Read implements io.Reader.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

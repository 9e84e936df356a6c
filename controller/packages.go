package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/pkgstore"
	"github.com/cyclerhq/cycler/raftstore"
)

// HeaderDigest carries a blob's digest ("sha256:<hex>") on blob downloads,
// so a client can check what it is about to receive before hashing it.
const HeaderDigest = "X-Cycler-Digest"

// packageGCInterval is how often the leader runs package GC on its own,
// besides after every upload.
const packageGCInterval = 10 * time.Minute

// packageGCTimeout bounds one GC run on the leader.
const packageGCTimeout = time.Minute

// Package is one package as the API shows it.
type Package struct {
	raftstore.PackageMeta
	// Stored says whether the answering server holds the blob yet.
	Stored bool `json:"stored"`
}

// PackagePushed answers POST /v1/packages.
type PackagePushed struct {
	raftstore.PackageMeta
	// Existed is true when the same bytes had been pushed before; the
	// metadata is then that first push's.
	Existed bool `json:"existed"`
	// Stored is how many servers hold the blob when the push answers, of
	// Servers voters. A push waits for a majority, so the package survives
	// the loss of the leader that received it; Warning says when it gave
	// up waiting.
	Stored  int    `json:"stored"`
	Servers int    `json:"servers"`
	Warning string `json:"warning,omitempty"`
}

// packageState is the controller's part of the package store.
type packageState struct {
	store *pkgstore.Store
	// gcKick asks the leader's GC loop for a run (after an upload).
	gcKick chan struct{}
	// gcMu serialises GC runs: the periodic one and POST /v1/packages/gc.
	gcMu sync.Mutex
}

func newPackageState(s *pkgstore.Store) *packageState {
	return &packageState{store: s, gcKick: make(chan struct{}, 1)}
}

// registerPackages adds the package routes when a package store is set.
//
// Peers fetch blobs from one another through the operator-scoped
// /download twin of the agent-scoped /blob route, with the token a server
// already presents to its peers (raft.client_token, or its first operator
// api token): no server needs an agent token of its own. The ?local query
// stops a peer that lacks the blob from fetching it in turn, so a fetch
// never chains from server to server.
func (c *Controller) registerPackages(srv *api.Server) {
	if c.packages.store == nil {
		return
	}
	op := api.ScopeOperator
	srv.HandleStream("POST /v1/packages", op, c.packages.store.MaxUploadBytes(), c.handlePackagePush)
	srv.Handle("GET /v1/packages", op, c.read(c.handlePackages))
	srv.Handle("POST /v1/packages/gc", op, c.write(c.handlePackageGC))
	srv.Handle("GET /v1/packages/{digest}", op, c.read(c.handlePackage))
	srv.Handle("GET /v1/packages/{digest}/blob", api.ScopeAgent, c.handleBlob, api.WithoutTimeouts())
	srv.Handle("GET /v1/packages/{digest}/download", op, c.handleBlob, api.WithoutTimeouts())
}

// handlePackagePush stores an upload on the leader and commits its
// metadata; a follower relays the body to the leader. The body is streamed
// to disk, never held in memory.
func (c *Controller) handlePackagePush(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		return api.UnsupportedMediaType("a package upload must be sent as application/octet-stream, not %q", ct)
	}
	limit := c.packages.store.MaxUploadBytes()
	if r.ContentLength > limit {
		return tooLarge(limit)
	}
	body := &uploadBody{rc: r.Body, want: r.ContentLength, limit: limit}
	r.Body = body
	// This is c.write without its timeout, which bounds a Raft commit: an
	// upload of a large package may rightly take longer. A follower relays
	// the streaming body to the leader; pushOnLeader bounds the commit.
	var err error
	if c.store.IsLeader() {
		err = c.storeErr(c.pushOnLeader(w, r, body))
	} else if err = c.noLeader(); err == nil {
		err = c.peers.forward(w, r, c.store.LeaderAPIAddr())
	}
	if err != nil {
		// A body cut short or over the limit also breaks the relay to the
		// leader; say what actually went wrong rather than "the leader did
		// not answer".
		if berr := body.readErr(); berr != nil {
			return berr
		}
	}
	return err
}

func (c *Controller) pushOnLeader(w http.ResponseWriter, r *http.Request, body *uploadBody) error {
	ps := c.packages.store
	meta, err := ps.Put(r.Context(), body, ps.MaxUploadBytes())
	if err != nil {
		return pushErr(err, body)
	}
	committed := false
	defer func() { ps.Release(meta.Digest, committed) }()
	if m, ok := c.store.Package(meta.Digest); ok {
		committed = true
		return api.WriteJSON(w, http.StatusOK, PackagePushed{PackageMeta: m, Existed: true})
	}
	// Until the commit below, the blob is stored but listed nowhere. If
	// the commit fails, its outcome may still be unknown (a timeout), so
	// Sync keeps the blob for its orphan grace rather than removing it.
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	stored, err := c.store.AddPackage(ctx, raftstore.PackageMeta{
		Digest: meta.Digest, Name: meta.Manifest.Name, Version: meta.Manifest.Version,
		Size: meta.Size, Uploader: api.Caller(r),
	})
	if err != nil {
		return err
	}
	committed = true
	c.log.Info("package pushed", zap.String("name", stored.Name), zap.String("version", stored.Version),
		zap.String("digest", stored.Digest), zap.Int64("size", stored.Size), zap.String("uploader", stored.Uploader))
	c.audit(r.WithContext(ctx), "package.push", stored.Name+"@"+stored.Version, fmt.Sprintf("%s, %d bytes", stored.Digest, stored.Size))
	select {
	case c.packages.gcKick <- struct{}{}:
	default: // a run is already due
	}
	out := PackagePushed{PackageMeta: stored}
	out.Stored, out.Servers = c.waitBlobQuorum(r.Context(), stored.Digest, pushQuorumWait(stored.Size))
	if out.Stored < out.Servers/2+1 {
		out.Warning = fmt.Sprintf("only %d of %d servers hold the package yet; it is committed, and the others copy it in the background, "+
			"but until a majority holds it the loss of server %s would lose the blob", out.Stored, out.Servers, c.store.ID())
		c.log.Warn("package not on a majority yet", zap.String("digest", stored.Digest), zap.Int("stored", out.Stored), zap.Int("servers", out.Servers))
	}
	return api.WriteJSON(w, http.StatusCreated, out)
}

// pushQuorumWait bounds how long a push waits for a majority of servers to
// copy the blob: a base for the round trips plus time to move size bytes
// at a slow 10 MB/s. A variable so tests without a Sync loop skip the wait.
var pushQuorumWait = func(size int64) time.Duration {
	return 15*time.Second + time.Duration(size/10e6)*time.Second
}

// waitBlobQuorum waits until a majority of the voters hold blob digest
// (this server counts), or until limit, and returns how many hold it and
// how many voters there are. The metadata is already committed, so the
// followers' Sync is copying the blob; this only waits for it, because a
// cycle started right after the push and a leader lost right after that
// would otherwise find the blob nowhere (found by TestChaosLeaderKillHide).
func (c *Controller) waitBlobQuorum(ctx context.Context, digest string, limit time.Duration) (stored, servers int) {
	ms, err := c.store.Members()
	if err != nil {
		return 1, 1
	}
	// One client per peer for the whole wait: it is polled every 100 ms.
	var peers []*client.Client
	for _, m := range ms {
		if !m.Voter {
			continue
		}
		servers++
		if m.ID == c.store.ID() || m.APIAddr == "" {
			continue
		}
		if cl, err := c.peers.client(m.APIAddr, c.peers.Token, 2*time.Second); err == nil {
			defer cl.Close()
			peers = append(peers, cl)
		}
	}
	have := map[*client.Client]bool{}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, cl := range peers {
			if !have[cl] && peerHasBlob(ctx, cl, digest) {
				have[cl] = true
			}
		}
		stored = 1 + len(have)
		if stored >= servers/2+1 || len(have) == len(peers) {
			return stored, servers
		}
		select {
		case <-ctx.Done():
			return stored, servers
		case <-tick.C:
		}
	}
}

// peerHasBlob asks the server behind cl whether it stores digest itself.
func peerHasBlob(ctx context.Context, cl *client.Client, digest string) bool {
	resp, err := cl.DoRaw(ctx, http.MethodHead, "/v1/packages/"+url.PathEscape(digest)+"/download?local", nil, "")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pushErr turns a Put error into the API error the uploader sees.
func pushErr(err error, body *uploadBody) error {
	switch {
	case errors.Is(err, pkgstore.ErrTooLarge):
		return tooLarge(body.limit)
	case errors.Is(err, pkgstore.ErrInvalidPackage):
		return api.BadRequest("the package was rejected and nothing was stored: %s",
			strings.TrimPrefix(err.Error(), pkgstore.ErrInvalidPackage.Error()+": "))
	}
	if berr := body.readErr(); berr != nil {
		return berr
	}
	return err
}

func tooLarge(limit int64) error {
	return api.TooLarge("the package is over the upload limit of %d bytes (server setting packages.max_upload_bytes); nothing was stored", limit)
}

// uploadBody counts what is read of a request body and remembers the first
// read error, so a truncated upload can be reported as one.
type uploadBody struct {
	rc    io.ReadCloser
	want  int64 // Content-Length, or -1 when unknown
	limit int64 // the upload limit the body is read under
	// mu guards n and err: when a follower relays the body, the HTTP
	// transport reads it on its own goroutine.
	mu  sync.Mutex
	n   int64
	err error
}

// Read implements io.Reader.
func (b *uploadBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	return n, err
}

// Close implements io.Closer.
func (b *uploadBody) Close() error { return b.rc.Close() }

// readErr returns the API error for a body that could not be read whole:
// 400 for one that ended before its Content-Length (or, chunked, before its
// last chunk), 413 for one over the limit. It returns nil otherwise.
func (b *uploadBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var mbe *http.MaxBytesError
	if errors.As(b.err, &mbe) {
		return tooLarge(b.limit)
	}
	if !errors.Is(b.err, io.ErrUnexpectedEOF) {
		return nil
	}
	if b.want >= 0 {
		return api.BadRequest("truncated upload: got %d of %d bytes; nothing was stored, send the whole file again", b.n, b.want)
	}
	return api.BadRequest("truncated upload: the body ended after %d bytes without its final chunk; nothing was stored, send the whole file again", b.n)
}

// handlePackages lists the packages, oldest upload first.
func (c *Controller) handlePackages(w http.ResponseWriter, _ *http.Request) error {
	pkgs := c.store.Packages()
	out := make([]Package, len(pkgs))
	for i, m := range pkgs {
		out[i] = Package{PackageMeta: m, Stored: c.packages.store.Has(m.Digest)}
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

// handlePackage shows one package's metadata.
func (c *Controller) handlePackage(w http.ResponseWriter, r *http.Request) error {
	digest, err := packageDigest(r)
	if err != nil {
		return err
	}
	m, ok := c.store.Package(digest)
	if !ok {
		return noPackage(digest)
	}
	return api.WriteJSON(w, http.StatusOK, Package{PackageMeta: m, Stored: c.packages.store.Has(digest)})
}

// handleBlob streams a package file. A server that lacks it fetches it
// from another server first (verifying the digest), unless asked with
// ?local, which is how servers ask each other.
func (c *Controller) handleBlob(w http.ResponseWriter, r *http.Request) error {
	digest, err := packageDigest(r)
	if err != nil {
		return err
	}
	m, ok := c.store.Package(digest)
	if !ok {
		return noPackage(digest)
	}
	ps := c.packages.store
	if !ps.Has(digest) {
		if r.URL.Query().Has("local") {
			return api.NotFound("package %s is not stored on server %s yet", digest, c.store.ID())
		}
		if err := ps.Fetch(r.Context(), digest, m.Size, c.blobSources()); err != nil {
			if r.Context().Err() != nil {
				return r.Context().Err()
			}
			return api.Unavailable("package %s is not stored on server %s yet and no other server delivered it (%v); retry, or ask another server",
				digest, c.store.ID(), err)
		}
	}
	if r.Method == http.MethodHead {
		// "Do you hold it?": answered without reading the blob, so a
		// leader waiting for its followers to copy a push asks cheaply.
		w.Header().Set(HeaderDigest, digest)
		w.WriteHeader(http.StatusOK)
		return nil
	}
	f, size, err := ps.Open(digest)
	if errors.Is(err, pkgstore.ErrNotFound) {
		return noPackage(digest) // deleted since the check above
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set(HeaderDigest, digest)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.tar.gz"`, m.Name, m.Version))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("package %s: sending the blob: %w", digest, err)
	}
	return nil
}

// handlePackageGC runs package GC now, on the leader.
func (c *Controller) handlePackageGC(w http.ResponseWriter, r *http.Request) error {
	res, err := c.packageGC(r.Context())
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("removed %d, kept %d", len(res.Removed), len(res.Kept))
	for _, e := range res.Removed {
		detail += fmt.Sprintf("; removed %s@%s %s", e.Name, e.Version, e.Digest)
	}
	c.audit(r, "package.gc", "packages", detail)
	return api.WriteJSON(w, http.StatusOK, res)
}

// packageGC runs one GC; see pkgstore.GC.
func (c *Controller) packageGC(ctx context.Context) (pkgstore.GCResult, error) {
	c.packages.gcMu.Lock()
	defer c.packages.gcMu.Unlock()
	res, err := pkgstore.GC(ctx, c.store, c.packages.store.Keep())
	for _, e := range res.Removed {
		c.log.Info("package removed by gc", zap.String("name", e.Name), zap.String("version", e.Version),
			zap.String("digest", e.Digest), zap.String("reason", e.Reason))
	}
	return res, err
}

// RunPackageGC is the leader's package GC loop (a raftstore OnLeader hook):
// it runs GC when leadership starts, every packageGCInterval and after
// every upload, until ctx ends.
func (c *Controller) RunPackageGC(ctx context.Context) {
	if c.packages.store == nil {
		return
	}
	tick := time.NewTicker(packageGCInterval)
	defer tick.Stop()
	for {
		runCtx, cancel := context.WithTimeout(ctx, packageGCTimeout)
		_, err := c.packageGC(runCtx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Warn("package gc", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.packages.gcKick:
		}
	}
}

// SyncPackages makes this server's blobs follow the replicated package list
// until ctx ends (see pkgstore.Store.Sync). Every server runs it.
func (c *Controller) SyncPackages(ctx context.Context) {
	if c.packages.store == nil {
		return
	}
	c.packages.store.Sync(ctx, pkgstore.SyncConfig{Catalog: c.store, Sources: c.blobSources, Ready: c.caughtUp})
}

// caughtUp reports whether this server follows a leader and has applied
// every entry it knows to be committed.
func (c *Controller) caughtUp() bool {
	st := c.store.Stats()
	return st.LeaderID != "" && st.AppliedIndex >= st.CommitIndex
}

// blobSources lists the other servers to fetch a blob from: the leader
// first (it received the upload), then every other server.
func (c *Controller) blobSources() []pkgstore.Source {
	var out []pkgstore.Source
	seen := map[string]bool{"": true, c.apiAddr: true}
	add := func(addr string) {
		if !seen[addr] {
			seen[addr] = true
			out = append(out, peerSource{peers: c.peers, addr: addr})
		}
	}
	add(c.store.LeaderAPIAddr())
	for _, m := range c.store.NodeMetas() {
		if m.ID != c.store.ID() {
			add(m.APIAddr)
		}
	}
	return out
}

// peerSource fetches blobs from another server's download route.
type peerSource struct {
	peers *Peers
	addr  string
}

// Name implements pkgstore.Source.
func (p peerSource) Name() string { return p.addr }

// Blob implements pkgstore.Source.
func (p peerSource) Blob(ctx context.Context, digest string) (io.ReadCloser, error) {
	cl, err := p.peers.client(p.addr, p.peers.Token, client.DefaultTimeout)
	if err != nil {
		return nil, err
	}
	resp, err := cl.DoRaw(ctx, http.MethodGet, "/v1/packages/"+url.PathEscape(digest)+"/download?local", nil, "")
	if err != nil {
		return nil, err
	}
	if got := resp.Header.Get(HeaderDigest); got != digest {
		resp.Body.Close()
		return nil, fmt.Errorf("server %s answered with digest header %q for %s", p.addr, got, digest)
	}
	return resp.Body, nil
}

// packageDigest reads and checks the {digest} path value.
func packageDigest(r *http.Request) (string, error) {
	d := r.PathValue("digest")
	if _, err := pkgstore.ParseDigest(d); err != nil {
		return "", api.BadRequest("%v; `cyclerctl package list --json` shows the digests", err)
	}
	return d, nil
}

func noPackage(digest string) error {
	return api.NotFound("no package %s in this cluster; `cyclerctl package list` shows the packages", digest)
}

var _ pkgstore.Source = peerSource{}

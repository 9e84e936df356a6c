package controller

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
	"github.com/cyclerhq/cycler/pkgstore"
	"github.com/cyclerhq/cycler/raftstore"
)

const (
	opsSecret   = "operator-secret-0123456789"
	fleetSecret = "agent-secret-0123456789abc"
)

// pkgNode is one server of a test cluster: its store, blob store and API.
type pkgNode struct {
	store *raftstore.Store
	blobs *pkgstore.Store
	addr  string
	ops   *client.Client // operator token
	fleet *client.Client // agent token
}

// startPkgNodes serves the controller of every node of c over loopback HTTP
// and records each node's API address in the replicated state, so that
// forwarding and blob fetches between them are real HTTP calls.
func startPkgNodes(t *testing.T, c *raftstore.TestCluster) []*pkgNode {
	t.Helper()
	var nodes []*pkgNode
	for _, s := range c.Nodes() {
		blobs, err := pkgstore.New(pkgstore.Config{Dir: t.TempDir(), MaxUploadBytes: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := api.New(api.Config{NodeName: s.ID(), Logger: zap.NewNop(), Tokens: []api.Token{
			{Name: "ops", Secret: opsSecret, Scopes: []api.Scope{api.ScopeOperator}},
			{Name: "fleet", Secret: fleetSecret, Scopes: []api.Scope{api.ScopeAgent}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewUnstartedServer(nil)
		n := &pkgNode{store: s, blobs: blobs, addr: ts.Listener.Addr().String()}
		ctrl := New(Config{Store: s, Peers: NewPeers(s.ID(), opsSecret, nil), Logger: zap.NewNop(), APIAddr: n.addr, Packages: blobs})
		ctrl.Register(srv)
		ts.Config.Handler = srv.Handler()
		ts.Start()
		t.Cleanup(ts.Close)
		for _, tok := range []struct {
			dst    **client.Client
			secret string
		}{{&n.ops, opsSecret}, {&n.fleet, fleetSecret}} {
			cl, err := client.New(client.Config{Addr: "http://" + n.addr, Token: tok.secret, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			*tok.dst = cl
		}
		nodes = append(nodes, n)
	}
	leader := c.WaitLeader()
	for _, n := range nodes {
		if err := leader.SetNodeMeta(context.Background(), raftstore.NodeMeta{ID: n.store.ID(), APIAddr: n.addr}); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicated(c, leader)
	return nodes
}

// waitReplicated waits until every node has applied what leader applied.
// TestCluster.WaitReplicated cannot be used once the nodes' API addresses
// are real: it waits for the leader to publish its test address.
func waitReplicated(c *raftstore.TestCluster, leader *raftstore.Store) {
	target := leader.AppliedIndex()
	c.WaitFor(fmt.Sprintf("every node to apply index %d", target), func() bool {
		for _, n := range c.Nodes() {
			if n.AppliedIndex() < target {
				return false
			}
		}
		return true
	})
}

// stopFollowersFirst makes the teardown kill the followers before the
// leader, so no new leader is elected mid-teardown.
func stopFollowersFirst(t *testing.T, c *raftstore.TestCluster) {
	t.Cleanup(func() {
		for _, f := range c.Followers() {
			c.Kill(f)
		}
	})
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return pkgstore.DigestPrefix + hex.EncodeToString(s[:])
}

func TestPackagePushForwardAndFetchOnDemand(t *testing.T) {
	// No Sync loop runs here, so no follower copies the blob: a push must
	// not wait for a majority (integration tests check that it does).
	old := pushQuorumWait
	pushQuorumWait = func(int64) time.Duration { return 0 }
	t.Cleanup(func() { pushQuorumWait = old })
	c := raftstore.NewTestCluster(t, 3)
	stopFollowersFirst(t, c)
	nodes := startPkgNodes(t, c)
	var leader *pkgNode
	var followers []*pkgNode
	for _, n := range nodes {
		if n.store.IsLeader() {
			leader = n
		} else {
			followers = append(followers, n)
		}
	}
	if leader == nil || len(followers) != 2 {
		t.Fatal("no single leader")
	}
	ctx := context.Background()
	data := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0"}),
		pkgtest.Entry{Name: "bin/web", Body: bytes.Repeat([]byte("web"), 50000), Mode: 0o755})
	digest := digestOf(data)

	// A push through a follower is relayed to the leader, which stores and
	// commits it. No sync loop runs here, so no follower has the blob yet.
	resp, err := followers[0].ops.DoUpload(ctx, http.MethodPost, "/v1/packages", bytes.NewReader(data), int64(len(data)), "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(api.HeaderNode) != leader.store.ID() {
		t.Fatalf("push answered %d by %q, want 201 by the leader %s", resp.StatusCode, resp.Header.Get(api.HeaderNode), leader.store.ID())
	}
	if !leader.blobs.Has(digest) || followers[0].blobs.Has(digest) || followers[1].blobs.Has(digest) {
		t.Fatal("the blob should be on the leader only")
	}
	waitReplicated(c, leader.store)

	// Servers ask each other with ?local: a server without the blob says so
	// rather than fetching it in turn.
	_, err = followers[1].ops.DoRaw(ctx, http.MethodGet, "/v1/packages/"+digest+"/download?local", nil, "")
	if !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("?local on a server without the blob: err = %v, want not_found", err)
	}
	// An agent asking a follower that lacks the blob gets it all the same:
	// the follower fetches it from the leader, verifies it, and serves it.
	resp, err = followers[1].fleet.DoRaw(ctx, http.MethodGet, "/v1/packages/"+digest+"/blob", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, data) || resp.Header.Get(HeaderDigest) != digest || resp.ContentLength != int64(len(data)) {
		t.Fatalf("blob: %d bytes (err %v), digest header %q, length %d", len(got), err, resp.Header.Get(HeaderDigest), resp.ContentLength)
	}
	if !followers[1].blobs.Has(digest) {
		t.Error("the follower did not keep the blob it fetched")
	}

	// The list says which server holds the blob.
	var list []Package
	if err := followers[0].ops.Do(ctx, http.MethodGet, "/v1/packages", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Digest != digest || list[0].Name != "web" || list[0].Uploader != "ops" || list[0].Stored {
		t.Errorf("list on %s = %+v; want web, pushed by ops, not stored there", followers[0].store.ID(), list)
	}

	tests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{name: "operator token on the agent route", wantErr: api.ErrForbidden, do: func() error {
			_, err := leader.ops.DoRaw(ctx, http.MethodGet, "/v1/packages/"+digest+"/blob", nil, "")
			return err
		}},
		{name: "agent token on the push route", wantErr: api.ErrForbidden, do: func() error {
			_, err := leader.fleet.DoUpload(ctx, http.MethodPost, "/v1/packages", bytes.NewReader(data), int64(len(data)), "application/octet-stream")
			return err
		}},
		{name: "wrong content type", wantErr: api.ErrUnsupportedMediaType, do: func() error {
			_, err := leader.ops.DoUpload(ctx, http.MethodPost, "/v1/packages", bytes.NewReader(data), int64(len(data)), "application/json")
			return err
		}},
		{name: "malformed digest", wantErr: api.ErrBadRequest, do: func() error {
			return leader.ops.Do(ctx, http.MethodGet, "/v1/packages/sha256:nothex", nil, nil)
		}},
		{name: "unknown digest", wantErr: api.ErrNotFound, do: func() error {
			return leader.ops.Do(ctx, http.MethodGet, "/v1/packages/"+digestOf([]byte("x")), nil, nil)
		}},
		{name: "over the upload limit", wantErr: api.ErrTooLarge, do: func() error {
			_, err := followers[1].ops.DoUpload(ctx, http.MethodPost, "/v1/packages", bytes.NewReader(make([]byte, 5<<20)), 5<<20, "application/octet-stream")
			return err
		}},
		// Without a Content-Length the follower finds out while relaying.
		{name: "over the upload limit, chunked, through a follower", wantErr: api.ErrTooLarge, do: func() error {
			_, err := followers[1].ops.DoRaw(ctx, http.MethodPost, "/v1/packages", io.MultiReader(bytes.NewReader(make([]byte, 5<<20))), "application/octet-stream")
			return err
		}},
		{name: "over the upload limit, chunked, on the leader", wantErr: api.ErrTooLarge, do: func() error {
			_, err := leader.ops.DoRaw(ctx, http.MethodPost, "/v1/packages", io.MultiReader(bytes.NewReader(make([]byte, 5<<20))), "application/octet-stream")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A client retries not_leader and unavailable, as cyclerctl
			// does: a leadership blip on a loaded machine is not what
			// these cases test.
			err := tt.do()
			for i := 0; i < 50 && (errors.Is(err, api.ErrNotLeader) || errors.Is(err, api.ErrUnavailable)); i++ {
				time.Sleep(100 * time.Millisecond)
				err = tt.do()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestPackagePushTruncated(t *testing.T) {
	c := raftstore.NewTestCluster(t, 3)
	stopFollowersFirst(t, c)
	nodes := startPkgNodes(t, c)
	data := pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: "1.0"}),
		pkgtest.Entry{Name: "bin/web", Body: bytes.Repeat([]byte("0123456789"), 30000)})
	for _, n := range nodes {
		t.Run(n.store.ID(), func(t *testing.T) {
			status, body := sendTruncated(t, n.addr, data, 777)
			want := fmt.Sprintf("truncated upload: got %d of %d bytes", len(data), len(data)+777)
			if status != http.StatusBadRequest || !strings.Contains(body, want) {
				t.Errorf("status %d, body %s; want 400 with %q", status, body, want)
			}
		})
	}
	for _, n := range nodes {
		if p := n.store.Packages(); len(p) != 0 {
			t.Errorf("%s lists %v after truncated uploads", n.store.ID(), p)
		}
		if b, err := n.blobs.List(); err != nil || len(b) != 0 {
			t.Errorf("%s stores %v (%v) after truncated uploads", n.store.ID(), b, err)
		}
	}
}

// sendTruncated announces len(data)+missing bytes, sends data and half-closes.
func sendTruncated(t *testing.T, addr string, data []byte, missing int) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/packages HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", addr, opsSecret, len(data)+missing)
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

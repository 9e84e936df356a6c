package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/cycle"
)

// silentServer streams the first revisions of a cycle and then goes
// silent without closing the connection, as a hung or partitioned server
// does; it lists peer as the other member of its cluster.
type silentServer struct {
	script []cycle.Cycle
	upTo   int
	peer   func() string
	hang   chan struct{}
}

func (s *silentServer) routes(srv *api.Server) {
	srv.Handle("GET /v1/cluster/members", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
		return api.WriteJSON(w, http.StatusOK, api.Members{AnsweredBy: "s1", Members: []api.Member{
			{ID: "s1", APIAddr: "ignored-self:1"}, {ID: "s2", APIAddr: s.peer()}}})
	})
	srv.Handle("GET /v1/cycles/{id}/events", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, c := range s.script[:s.upTo] {
			_ = enc.Encode(c)
		}
		http.NewResponseController(w).Flush()
		select {
		case <-s.hang:
		case <-r.Context().Done():
		}
		return nil
	}, api.WithoutTimeouts())
}

// recordingProgress keeps the notes a follower writes.
type recordingProgress struct {
	mu    sync.Mutex
	notes []string
	revs  []uint64
}

func (p *recordingProgress) update(c cycle.Cycle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revs = append(p.revs, c.Rev)
}

func (p *recordingProgress) note(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, s)
}

func (p *recordingProgress) stop() {}

// TestFollowMovesToAnotherServer: the first server sends two revisions and
// then nothing at all; after the idle limit the follower moves to the peer
// the first server listed and finishes the cycle from the revision it had.
func TestFollowMovesToAnotherServer(t *testing.T) {
	revs := script(nil, deployDone...)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	good := &fakeCycles{script: revs}
	goodAddr := startFake(t, good.routes)
	silent := &silentServer{script: revs, upTo: 2, peer: func() string { return goodAddr }, hang: hang}
	silentAddr := startFake(t, silent.routes)

	g := &globals{addr: silentAddr, token: testToken, timeout: "5s"}
	first, err := g.client()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	peers := g.peerClients(t.Context(), first)
	if len(peers) != 1 || peers[0].Addr() != goodAddr {
		var got []string
		for _, p := range peers {
			got = append(got, p.Addr())
		}
		t.Fatalf("peers %v, want only %s (the member that is not the answering server)", got, goodAddr)
	}
	p := &recordingProgress{}
	f := follower{clients: []*client.Client{first, peers[0]}, progress: p, idle: 300 * time.Millisecond}
	defer f.close()
	final, err := f.wait(t.Context(), revs[0])
	if err != nil {
		t.Fatal(err)
	}
	if final.Phase != cycle.Done || final.Rev != revs[len(revs)-1].Rev {
		t.Fatalf("ended at rev %d phase %s, want rev %d done", final.Rev, final.Phase, revs[len(revs)-1].Rev)
	}
	if got := good.revs(); len(got) != 1 || got[0] != 2 {
		t.Errorf("the second server was asked from revs %v, want [2] (the last one the first server sent)", got)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.notes) == 0 || !strings.Contains(p.notes[0], "no event or heartbeat") || !strings.Contains(p.notes[0], goodAddr) {
		t.Errorf("notes %q, want one saying the stream went silent and naming %s", p.notes, goodAddr)
	}
}

// TestFollowWithoutIdleLimitWaits checks the watchdog is what moves the
// follower: with no limit, the silent stream is still being read when the
// test's deadline ends the wait.
func TestFollowWithoutIdleLimitWaits(t *testing.T) {
	revs := script(nil, deployDone...)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	silent := &silentServer{script: revs, upTo: 2, peer: func() string { return "" }, hang: hang}
	g := &globals{addr: startFake(t, silent.routes), token: testToken, timeout: "5s"}
	c, err := g.client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	f := follower{clients: []*client.Client{c}, progress: &recordingProgress{}}
	cur, err := f.wait(ctx, revs[0])
	if !errors.Is(err, ctx.Err()) || ctx.Err() == nil || cur.Rev != 2 {
		t.Fatalf("wait = rev %d, %v; want rev 2 and the context's deadline", cur.Rev, err)
	}
}

package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/agent"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/fleet"
	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/pool"
	"github.com/cyclerhq/cycler/raftstore"
	"github.com/cyclerhq/cycler/smoke"
)

// simWorld is a hand-written stand-in for Consul, the agents and one LB, so
// the orchestrator's logic can be tested step by step without processes.
// The integration tests run the same cycles on the real components; this
// exists to pin down the ordering rules (what is hidden when, what an LB
// may serve) with exact assertions that real timing makes hard to reach.
//
// Each host is a real HTTP server answering with its installed version,
// and the LB is a real HTTP front end that forwards to the backend set it
// last applied, so the smoke and bake checks run unchanged.
type simWorld struct {
	t  *testing.T
	mu sync.Mutex
	// hosts by instance id, and their order.
	hosts map[string]*simHost
	order []string
	// versions maps a package digest to its version.
	versions map[string]string
	// published is the last state document written to "Consul".
	published pool.State
	// applied is the LB's backend set (instance ids) for ack.Generation.
	applied []string
	ack     lb.Ack
	// holdAcks stops the LB from applying new generations.
	holdAcks bool
	// badSmoke and badBake make a version answer 500 on /smoke or /bake.
	badSmoke, badBake map[string]bool
	// installGate, when set, blocks every install until it is closed.
	installGate chan struct{}
	installs    map[string]int
	// served counts the versions answered through the LB front end.
	served map[string]int
	lbSrv  *httptest.Server
}

type simHost struct {
	id, pool string
	version  string
	hidden   bool
	srv      *httptest.Server
}

func newSimWorld(t *testing.T, blue, green int) *simWorld {
	w := &simWorld{t: t, hosts: map[string]*simHost{}, versions: map[string]string{}, badSmoke: map[string]bool{},
		badBake: map[string]bool{}, installs: map[string]int{}, served: map[string]int{}}
	add := func(p string, n int) {
		for i := 1; i <= n; i++ {
			h := &simHost{id: fmt.Sprintf("web-%s-%d", p, i), pool: p}
			h.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w.answer(rw, r, h) }))
			t.Cleanup(h.srv.Close)
			w.hosts[h.id] = h
			w.order = append(w.order, h.id)
		}
	}
	add(raftstore.PoolBlue, blue)
	add(raftstore.PoolGreen, green)
	w.lbSrv = httptest.NewServer(http.HandlerFunc(w.frontEnd))
	t.Cleanup(w.lbSrv.Close)
	return w
}

// answer is a host's app: its version as JSON, 500 on /smoke or /bake
// when that version is marked bad.
func (w *simWorld) answer(rw http.ResponseWriter, r *http.Request, h *simHost) {
	w.mu.Lock()
	v := h.version
	bad := (r.URL.Path == "/smoke" && w.badSmoke[v]) || (r.URL.Path == "/bake" && w.badBake[v])
	w.mu.Unlock()
	if bad {
		http.Error(rw, "bad build", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(rw).Encode(map[string]string{"version": v, "instance": h.id})
}

// frontEnd forwards to the applied backend set, round robin.
func (w *simWorld) frontEnd(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	backends := slices.Clone(w.applied)
	w.mu.Unlock()
	if len(backends) == 0 {
		http.Error(rw, "no backends", http.StatusBadGateway)
		return
	}
	h := w.hosts[backends[int(time.Now().UnixNano())%len(backends)]]
	resp, err := http.Get(h.srv.URL + r.URL.Path)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	w.mu.Lock()
	w.served[body["version"]]++
	w.mu.Unlock()
	rw.WriteHeader(resp.StatusCode)
	_ = json.NewEncoder(rw).Encode(body)
}

// digest registers a package version and returns its digest.
func (w *simWorld) digest(version string) string {
	d := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(version)))
	w.mu.Lock()
	w.versions[d] = version
	w.mu.Unlock()
	return d
}

// applyLocked is the LB: it serves the live pool's passing, visible hosts
// of the newest published generation, and never an empty set.
func (w *simWorld) applyLocked() {
	if w.holdAcks || w.published.Generation <= w.ack.Generation {
		return
	}
	var set []string
	for _, id := range w.order {
		h := w.hosts[id]
		if pool.Pool(h.pool) == w.published.Live && !h.hidden {
			set = append(set, id)
		}
	}
	if len(set) == 0 {
		w.ack.Refused = "no serving backend"
		return
	}
	w.applied = set
	w.ack = lb.Ack{Generation: w.published.Generation, Driver: "sim"}
}

func (w *simWorld) setHoldAcks(hold bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holdAcks = hold
	w.applyLocked()
}

// ---- Fleet ----

func (w *simWorld) Agents(_ context.Context, service string) ([]fleet.Agent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []fleet.Agent
	for _, id := range w.order {
		out = append(out, fleet.Agent{Service: service, Pool: w.hosts[id].pool, Instance: id, Passing: true})
	}
	return out, nil
}

func (w *simWorld) Install(ctx context.Context, a fleet.Agent, digest string) (agent.InstallResult, error) {
	w.mu.Lock()
	gate := w.installGate
	w.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return agent.InstallResult{}, ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.versions[digest]
	if !ok {
		return agent.InstallResult{}, fmt.Errorf("unknown digest %s", digest)
	}
	h := w.hosts[a.Instance]
	w.installs[a.Instance]++
	h.version = v
	return agent.InstallResult{Install: agent.Install{Action: "install", Digest: digest, Version: v, Outcome: agent.OutcomeInstalled},
		Current: &agent.Release{Dir: v, Version: v, Digest: digest}}, nil
}

func (w *simWorld) SetHidden(_ context.Context, a fleet.Agent, gen uint64, hidden bool) (agent.Maintenance, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hosts[a.Instance].hidden = hidden
	w.applyLocked()
	return agent.Maintenance{Hidden: hidden, Generation: gen}, nil
}

func (w *simWorld) Inventory(_ context.Context, a fleet.Agent) (agent.Inventory, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hosts[a.Instance]
	inv := agent.Inventory{Instance: h.id, Pool: h.pool, App: agent.AppStatus{Health: agent.HealthPassing}}
	for d, v := range w.versions {
		if v == h.version && h.version != "" {
			inv.Current = &agent.Release{Version: v, Digest: d}
		}
	}
	return inv, nil
}

// ---- Discovery ----

func (w *simWorld) Instances(_ context.Context, service string) (pool.Instances, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := pool.Instances{Service: service}
	for _, id := range w.order {
		h := w.hosts[id]
		host, port, _ := net.SplitHostPort(h.srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		out.All = append(out.All, pool.Instance{ID: id, Address: host, Port: p, Pool: pool.Pool(h.pool), Version: h.version,
			Passing: !h.hidden, Maintenance: h.hidden})
	}
	return out, nil
}

func (w *simWorld) PublishState(_ context.Context, _ string, st pool.State) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st.Generation < w.published.Generation {
		return ErrNewerState
	}
	w.published = st
	w.applyLocked()
	return nil
}

func (w *simWorld) LBs(context.Context, string) ([]LBInfo, error) {
	return []LBInfo{{ID: "lb-1", FrontendURL: w.lbSrv.URL, Passing: true}}, nil
}

func (w *simWorld) Acks(context.Context, string) (map[string]lb.Ack, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return map[string]lb.Ack{"lb-1": w.ack}, nil
}

var (
	_ Fleet     = (*simWorld)(nil)
	_ Discovery = (*simWorld)(nil)
)

// ---- rig ----

// simRig is a 3-node in-memory Raft cluster with an orchestrator
// registered as each node's leader hook, as cyclerd wires it, over w.
type simRig struct {
	t     *testing.T
	c     *raftstore.TestCluster
	w     *simWorld
	orchs map[*raftstore.Store]*Orchestrator
}

func simSpec() Spec {
	return Spec{Name: "web", MinLive: 1, MaxParallel: 2, BakeTime: 300 * time.Millisecond, BakeInterval: 50 * time.Millisecond,
		Standby: "keep", BreakerFailures: 4, BreakerCooldown: time.Hour,
		Smoke: []smoke.Check{{Name: "smoke", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/smoke"}}},
		Bake:  []smoke.Check{{Name: "bake", Kind: smoke.KindHTTP, HTTP: smoke.HTTPSpec{Path: "/bake"}}}}
}

func newSimRig(t *testing.T, w *simWorld, spec Spec) *simRig {
	r := &simRig{t: t, c: raftstore.NewTestCluster(t, 3), w: w, orchs: map[*raftstore.Store]*Orchestrator{}}
	for _, s := range r.c.Nodes() {
		o := New(Config{Store: s, Fleet: w, Discovery: w, Services: func() map[string]Spec { return map[string]Spec{"web": spec} },
			Smoke: smoke.New(nil, &http.Client{Timeout: 2 * time.Second}), Retry: 20 * time.Millisecond})
		r.orchs[s] = o
		s.OnLeader("orchestrator", o.Run)
	}
	return r
}

// leader returns the current leader and its orchestrator.
func (r *simRig) leader() (*raftstore.Store, *Orchestrator) {
	s := r.c.WaitLeader()
	return s, r.orchs[s]
}

// push records a package of version in Raft and returns its digest.
func (r *simRig) push(version string) string {
	r.t.Helper()
	d := r.w.digest(version)
	s, _ := r.leader()
	if _, err := s.AddPackage(context.Background(), raftstore.PackageMeta{Digest: d, Name: "web", Version: version, Size: 1, Uploader: "test"}); err != nil {
		r.t.Fatal(err)
	}
	return d
}

// start starts a deploy of version on the leader.
func (r *simRig) start(version string) cycle.Cycle {
	r.t.Helper()
	d := r.push(version)
	_, o := r.leader()
	c, err := o.Start(context.Background(), StartRequest{StartRequest: cycle.StartRequest{Service: "web", Digest: d}, By: "test", Trigger: "manual"})
	if err != nil {
		r.t.Fatalf("start %s: %v", version, err)
	}
	return c
}

// wait waits until cycle id satisfies cond on the leader.
func (r *simRig) wait(id, what string, cond func(cycle.Cycle) bool) cycle.Cycle {
	r.t.Helper()
	var last cycle.Cycle
	r.c.WaitFor(what, func() bool {
		s := r.c.Leader()
		if s == nil {
			return false
		}
		c, ok := s.Cycle(id)
		last = c
		return ok && cond(c)
	})
	return last
}

// finished waits for cycle id to end and returns it.
func (r *simRig) finished(id string) cycle.Cycle {
	r.t.Helper()
	return r.wait(id, "cycle "+id+" to end", func(c cycle.Cycle) bool { return c.Phase.Terminal() })
}

// deploy runs a whole deploy of version and requires it to end in want.
func (r *simRig) deploy(version string, want cycle.Phase) cycle.Cycle {
	r.t.Helper()
	c := r.finished(r.start(version).ID)
	if c.Phase != want {
		r.t.Fatalf("deploy %s ended in %s (%s), want %s", version, c.Phase, c.Message, want)
	}
	return c
}

// versionsOf returns the versions of pool p's hosts.
func (w *simWorld) versionsOf(p string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, id := range w.order {
		if w.hosts[id].pool == p {
			out = append(out, w.hosts[id].version)
		}
	}
	return out
}

// hiddenOf returns whether each of pool p's hosts is hidden.
func (w *simWorld) hiddenOf(p string) []bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []bool
	for _, id := range w.order {
		if w.hosts[id].pool == p {
			out = append(out, w.hosts[id].hidden)
		}
	}
	return out
}

// probe sends n requests through the LB and returns the versions answered
// and the count of failures.
func (w *simWorld) probe(n int) (map[string]int, int) {
	seen, failed := map[string]int{}, 0
	for range n {
		resp, err := http.Get(w.lbSrv.URL + "/")
		if err != nil {
			failed++
			continue
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			continue
		}
		seen[body["version"]]++
	}
	return seen, failed
}

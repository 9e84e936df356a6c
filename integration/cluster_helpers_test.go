//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/integration/harness"
)

// clusterToken is the operator secret every server of a test cluster accepts;
// joining servers present it too (the first operator-scoped api token).
const clusterToken = "cluster-test-operator-secret-0123456789"

// clusterOptions describes a test cluster of real `cyclerd server` processes.
type clusterOptions struct {
	// Size is the number of servers: 1, 3 or 5.
	Size int
	// Timing is raft.timing: "fast" for tests, "" for the production default.
	Timing string
	// ConsulAddr, when set, is a real Consul agent; the servers after the
	// first then find the cluster through it (raft.discover) instead of
	// raft.join.
	ConsulAddr string
	// Extra is appended to every server's config; ExtraAPI goes inside
	// its api block (more tokens).
	Extra, ExtraAPI string
}

// cluster is a set of cyclerd servers on loopback. The first bootstraps; the
// others join it through raft.join. Each test's Cleanup stops them.
type cluster struct {
	t      *testing.T
	opts   clusterOptions
	nodes  []*clusterNode
	ctlBin string
}

// clusterNode is one server and an API client for it.
type clusterNode struct {
	*harness.Cyclerd
	ID       string
	APIAddr  string
	RaftAddr string
	API      *client.Client
}

// startCluster starts opts.Size servers and waits until every one of them
// is a member of one cluster that has a leader.
func startCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, opts: opts, ctlBin: harness.BuildBinary(t, "./cmd/cyclerctl")}
	ports := freePorts(t, 2*opts.Size+1)
	// Nothing listens on consulPort: the servers' Consul registration fails and
	// retries in the background, which the Raft paths under test never wait on.
	consulAddr := fmt.Sprintf("127.0.0.1:%d", ports[2*opts.Size])
	if opts.ConsulAddr != "" {
		consulAddr = opts.ConsulAddr
	}
	for i := range opts.Size {
		n := &clusterNode{
			ID:       fmt.Sprintf("cyc-%d", i+1),
			APIAddr:  fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
		}
		api, err := client.New(client.Config{Addr: "http://" + n.APIAddr, Token: clusterToken, Timeout: 15 * time.Second})
		if err != nil {
			harness.Fatalf(t, "client for %s: %v", n.ID, err)
		}
		n.API = api
		c.nodes = append(c.nodes, n)
	}
	ctx := testContext(t, 2*time.Minute)
	for i, n := range c.nodes {
		var join []string
		discover := i > 0 && opts.ConsulAddr != ""
		if i > 0 && !discover {
			join = []string{c.nodes[0].APIAddr}
		}
		dir := filepath.Join(t.TempDir(), n.ID)
		n.Cyclerd = harness.StartCyclerd(t, harness.CyclerdOptions{
			Role: "server", Name: n.ID, Dir: dir, APIAddr: n.APIAddr,
			Config: withExtra(serverConfig(n, filepath.Join(dir, "data"), consulAddr, opts.Timing, join, discover), opts),
		})
		if i == 0 {
			// The others join through the first, which must lead by then.
			c.waitLeader(ctx, n)
		}
	}
	c.waitMembers(ctx, c.nodes...)
	return c
}

// serverConfig renders a server's HCL config (harness.ServerConfig).
func serverConfig(n *clusterNode, dataDir, consulAddr, timing string, join []string, discover bool) string {
	return harness.ServerConfig{NodeID: n.ID, DataDir: dataDir, LogLevel: "info", APIAddr: n.APIAddr, OperatorSecret: clusterToken,
		ConsulAddr: consulAddr, RaftAddr: n.RaftAddr, Discover: discover, Join: join, Timing: timing}.Render()
}

// withExtra adds opts.Extra and opts.ExtraAPI to a server config.
func withExtra(cfg string, opts clusterOptions) string {
	if opts.ExtraAPI != "" {
		cfg = strings.Replace(cfg, "api {\n", "api {\n"+opts.ExtraAPI, 1)
	}
	return cfg + opts.Extra
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		if p := harness.FreePort(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// testContext returns a context that ends after d or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// self asks n for its own Raft state.
func (n *clusterNode) self(ctx context.Context) (api.NodeStats, error) {
	var st api.NodeStats
	err := n.API.Do(ctx, http.MethodGet, "/v1/cluster/self", nil, &st)
	return st, err
}

// others returns the nodes except the given ones.
func (c *cluster) others(except ...*clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, n := range c.nodes {
		if !slices.Contains(except, n) {
			out = append(out, n)
		}
	}
	return out
}

// waitLeader waits until one of nodes leads and every one of nodes agrees
// on it, and returns it.
func (c *cluster) waitLeader(ctx context.Context, nodes ...*clusterNode) *clusterNode {
	c.t.Helper()
	var leader *clusterNode
	err := harness.WaitFor(ctx, "a leader that "+nodeIDs(nodes)+" agree on", func() error {
		leader = nil
		for _, n := range nodes {
			st, err := n.self(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", n.ID, err)
			}
			if st.LeaderID == "" {
				return fmt.Errorf("%s (%s) knows no leader", n.ID, st.State)
			}
			if leader != nil && st.LeaderID != leader.ID {
				return fmt.Errorf("%s follows %s, %s follows %s", n.ID, st.LeaderID, nodes[0].ID, leader.ID)
			}
			i := slices.IndexFunc(nodes, func(m *clusterNode) bool { return m.ID == st.LeaderID })
			if i < 0 {
				return fmt.Errorf("%s follows %s, which is not one of %s", n.ID, st.LeaderID, nodeIDs(nodes))
			}
			leader = nodes[i]
		}
		if st, err := leader.self(ctx); err != nil || st.State != "Leader" {
			return fmt.Errorf("%s is named leader but reports state %q (%v)", leader.ID, st.State, err)
		}
		return nil
	})
	if err != nil {
		harness.Fatal(c.t, err)
	}
	return leader
}

// waitMembers waits until every one of nodes counts exactly nodes as the
// cluster's members and follows one leader.
func (c *cluster) waitMembers(ctx context.Context, nodes ...*clusterNode) {
	c.t.Helper()
	want := make([]string, 0, len(nodes))
	for _, n := range nodes {
		want = append(want, n.ID)
	}
	slices.Sort(want)
	err := harness.WaitFor(ctx, "members "+nodeIDs(nodes), func() error {
		for _, n := range nodes {
			st, err := n.self(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", n.ID, err)
			}
			got := slices.Sorted(slices.Values(st.MemberIDs))
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s lists members %v", n.ID, got)
			}
		}
		return nil
	})
	if err != nil {
		harness.Fatal(c.t, err)
	}
	c.waitLeader(ctx, nodes...)
}

// waitApplied waits until each of nodes has applied index or later.
func (c *cluster) waitApplied(ctx context.Context, index uint64, nodes ...*clusterNode) {
	c.t.Helper()
	err := harness.WaitFor(ctx, fmt.Sprintf("%s to apply index %d", nodeIDs(nodes), index), func() error {
		for _, n := range nodes {
			st, err := n.self(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", n.ID, err)
			}
			if st.AppliedIndex < index {
				return fmt.Errorf("%s has applied %d", n.ID, st.AppliedIndex)
			}
		}
		return nil
	})
	if err != nil {
		harness.Fatal(c.t, err)
	}
}

// freeze freezes svc through n once, without retrying.
func (n *clusterNode) freeze(ctx context.Context, svc, reason string) error {
	return n.API.Do(ctx, http.MethodPut, "/v1/services/"+url.PathEscape(svc)+"/freeze", api.FreezeRequest{Reason: reason}, nil)
}

// mustFreeze freezes svc through n, retrying while the cluster elects a
// leader (writes are idempotent), and fails the test on any other error.
func (c *cluster) mustFreeze(ctx context.Context, n *clusterNode, svc, reason string) {
	c.t.Helper()
	var fatal error
	err := harness.WaitFor(ctx, fmt.Sprintf("freeze %s through %s", svc, n.ID), func() error {
		err := n.freeze(ctx, svc, reason)
		if err != nil && !retryable(err) {
			fatal = err
			return nil
		}
		return err
	})
	if err == nil {
		err = fatal
	}
	if err != nil {
		harness.Fatalf(c.t, "freeze %s through %s: %v", svc, n.ID, err)
	}
}

// retryable reports whether a write may succeed if sent again: no leader
// yet, a forward to a dead leader, or a connection that broke.
func retryable(err error) bool {
	var ae *api.Error
	return errors.Is(err, api.ErrNotLeader) || errors.Is(err, api.ErrUnavailable) || !errors.As(err, &ae)
}

// frozen reads the freezes n reports (service to reason), locally or, with
// consistent, through the leader after a barrier.
func (n *clusterNode) frozen(ctx context.Context, consistent bool) (map[string]string, client.Meta, error) {
	path := "/v1/services"
	if consistent {
		path += "?consistent"
	}
	var list []controller.Service
	meta, err := n.API.DoMeta(ctx, http.MethodGet, path, nil, &list)
	if err != nil {
		return nil, meta, err
	}
	out := map[string]string{}
	for _, s := range list {
		if s.Frozen != nil {
			out[s.Name] = s.Frozen.Reason
		}
	}
	return out, meta, nil
}

// checkState reads the freezes through every one of nodes, first
// consistently and then, once each has applied the leader's index, locally,
// and requires exactly want, except that the writes in maybe (whose outcome
// the client never learned) may be there or not. It returns the leader's index.
func (c *cluster) checkState(ctx context.Context, want, maybe map[string]string, nodes ...*clusterNode) uint64 {
	c.t.Helper()
	var index uint64
	for _, n := range nodes {
		var got map[string]string
		var meta client.Meta
		err := harness.WaitFor(ctx, "a consistent read through "+n.ID, func() error {
			var err error
			got, meta, err = n.frozen(ctx, true)
			return err
		})
		if err != nil {
			harness.Fatal(c.t, err)
		}
		c.compareState(fmt.Sprintf("consistent read through %s (answered by %s at index %d)", n.ID, meta.Node, meta.Index), got, want, maybe)
		index = max(index, meta.Index)
	}
	c.waitApplied(ctx, index, nodes...)
	for _, n := range nodes {
		got, meta, err := n.frozen(ctx, false)
		if err != nil {
			harness.Fatalf(c.t, "local read on %s: %v", n.ID, err)
		}
		if meta.Node != n.ID || meta.Index < index {
			harness.Errorf(c.t, "local read on %s answered by %q at index %d; want %s at index %d or later", n.ID, meta.Node, meta.Index, n.ID, index)
		}
		c.compareState(fmt.Sprintf("local read on %s at index %d", n.ID, meta.Index), got, want, maybe)
	}
	return index
}

// compareState reports every difference between got and want; a key of
// maybe may be in got, with maybe's value, or not.
func (c *cluster) compareState(what string, got, want, maybe map[string]string) {
	c.t.Helper()
	got = maps.Clone(got)
	for k, v := range maybe {
		if g, ok := got[k]; ok && g == v {
			if _, wanted := want[k]; !wanted {
				delete(got, k)
			}
		}
	}
	if maps.Equal(got, want) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			harness.Errorf(c.t, "%s: %s is missing (want frozen with reason %q)", what, k, want[k])
		} else if g != want[k] {
			harness.Errorf(c.t, "%s: %s has reason %q, want %q", what, k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			harness.Errorf(c.t, "%s: %s is frozen (reason %q) but should not be", what, k, got[k])
		}
	}
}

// ctl runs the built cyclerctl against addr and returns its output. err is
// non-nil when it exits non-zero.
func (c *cluster) ctl(ctx context.Context, addr string, args ...string) (stdout, stderr string, err error) {
	argv := append([]string{"--addr", addr, "--token", clusterToken}, args...)
	cmd := exec.CommandContext(ctx, c.ctlBin, argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// mustCtl is ctl that fails the test when cyclerctl fails.
func (c *cluster) mustCtl(ctx context.Context, addr string, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.ctl(ctx, addr, args...)
	if err != nil {
		harness.Fatalf(c.t, "cyclerctl --addr %s %s: %v\nstdout:\n%s\nstderr:\n%s", addr, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// members runs `cyclerctl cluster members --json` against n.
func (c *cluster) members(ctx context.Context, n *clusterNode) api.Members {
	c.t.Helper()
	var m api.Members
	out := c.mustCtl(ctx, n.APIAddr, "cluster", "members", "--json")
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		harness.Fatalf(c.t, "cluster members --json: %v\n%s", err, out)
	}
	return m
}

// nodeIDs names nodes for messages.
func nodeIDs(nodes []*clusterNode) string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// writer freezes a new service every few milliseconds through nodes, in
// turn, from its own goroutine, and records every write acknowledged. It
// never fails the test itself: the test reads what it recorded.
type writer struct {
	stop func()
	done chan struct{}

	mu    sync.Mutex // guards the fields below
	acked map[string]string
	// unknown holds the writes that failed in a way that leaves their outcome
	// open: a forward cut by the kill, a request cancelled by finish.
	unknown map[string]string
	// refusals counts the failures by kind: an API error code, or
	// "transport" for a request that got no answer.
	refusals map[string]int
	times    []time.Time // when each acknowledgement arrived
	tries    int
}

// startWriter starts a writer whose services are named prefix-N.
func startWriter(ctx context.Context, prefix string, nodes ...*clusterNode) *writer {
	ctx, cancel := context.WithCancel(ctx)
	w := &writer{stop: cancel, done: make(chan struct{}), acked: map[string]string{}, unknown: map[string]string{}, refusals: map[string]int{}}
	go func() {
		defer close(w.done)
		for i := 0; ctx.Err() == nil; i++ {
			n := nodes[i%len(nodes)]
			svc, reason := fmt.Sprintf("%s-%d", prefix, i), "through "+n.ID
			err := n.freeze(ctx, svc, reason)
			w.mu.Lock()
			w.tries++
			if err == nil {
				w.acked[svc] = reason
				w.times = append(w.times, time.Now())
			} else if ctx.Err() == nil {
				w.unknown[svc] = reason
				w.refusals[errorKind(err)]++
			} else {
				w.unknown[svc] = reason // cancelled by finish
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return w
}

// ackedSince counts the acknowledgements that arrived after t.
func (w *writer) ackedSince(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.times {
		if at.After(t) {
			n++
		}
	}
	return n
}

// writerResult is what a writer recorded.
type writerResult struct {
	// acked are the acknowledged writes; unknown the failed ones, which may
	// have committed all the same.
	acked, unknown map[string]string
	// refusals counts the failures by kind (see errorKind), leaving out the
	// request finish cancelled.
	refusals map[string]int
	tries    int
}

// finish stops the writer, waits for its goroutine and returns what it recorded.
func (w *writer) finish() writerResult {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return writerResult{acked: maps.Clone(w.acked), unknown: maps.Clone(w.unknown), refusals: maps.Clone(w.refusals), tries: w.tries}
}

// errorKind is an API error's code, or "transport" for an error without one.
func errorKind(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return "transport"
}

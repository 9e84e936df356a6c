//go:build integration

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/integration/harness"
)

// TestClusterFailover runs three real servers, kills the leader with SIGKILL
// while a client keeps writing, and checks that no acknowledged write is lost:
// not by the failover, not by the killed node's return, and not by a full
// stop and restart of the cluster.
func TestClusterFailover(t *testing.T) {
	c := startCluster(t, clusterOptions{Size: 3, Timing: "fast"})
	ctx := testContext(t, 4*time.Minute)
	want := map[string]string{} // every acknowledged freeze: service → reason

	leader := c.waitLeader(ctx, c.nodes...)
	followers := c.others(leader)
	// One write through each server: the leader commits it, followers forward it.
	for _, n := range c.nodes {
		svc, reason := "before-"+n.ID, "written through "+n.ID
		c.mustFreeze(ctx, n, svc, reason)
		want[svc] = reason
	}
	// The CLI, through a follower.
	if out := c.mustCtl(ctx, followers[0].APIAddr, "freeze", "cli-web", "--reason", "frozen with cyclerctl"); !strings.Contains(out, "cli-web is frozen") {
		harness.Errorf(t, "cyclerctl freeze printed %q", out)
	}
	want["cli-web"] = "frozen with cyclerctl"
	c.mustFreeze(ctx, followers[1], "lifted", "to be lifted at once")
	c.mustCtl(ctx, followers[1].APIAddr, "unfreeze", "lifted")
	c.checkState(ctx, want, nil, c.nodes...)

	// Kill the leader while a client writes through the survivors.
	w := startWriter(ctx, "during", followers...)
	started := time.Now()
	if err := harness.WaitFor(ctx, "the writer's first acknowledgements", func() error {
		if n := w.ackedSince(started); n < 5 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}
	killedAt := time.Now()
	if err := leader.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	t.Logf("killed leader %s (pid %d) with SIGKILL", leader.ID, leader.Pid())
	newLeader := c.waitLeader(ctx, followers...)
	t.Logf("%s leads after %s", newLeader.ID, time.Since(killedAt).Round(time.Millisecond))
	err := harness.WaitFor(ctx, "writes acknowledged after the kill", func() error {
		if n := w.ackedSince(killedAt); n < 5 {
			return fmt.Errorf("%d acknowledged since the kill", n)
		}
		return nil
	})
	res := w.finish()
	if err != nil {
		harness.Fatal(t, err)
	}
	t.Logf("writer: %d of %d writes acknowledged around the kill; failures by kind: %v", len(res.acked), res.tries, res.refusals)
	// A failover may refuse writes, but only as "not now": never a client
	// error or an internal one.
	for kind := range res.refusals {
		if kind != api.CodeUnavailable && kind != api.CodeNotLeader {
			harness.Errorf(t, "during the failover a write failed with %q; want only %q or %q", kind, api.CodeUnavailable, api.CodeNotLeader)
		}
	}
	acked, unknown := res.acked, res.unknown
	maps.Copy(want, acked)
	c.checkState(ctx, want, unknown, followers...)

	// More writes, on the new leader itself.
	for i := range 3 {
		svc, reason := fmt.Sprintf("after-%d", i), "written on the new leader "+newLeader.ID
		c.mustFreeze(ctx, newLeader, svc, reason)
		want[svc] = reason
	}

	// The killed server comes back, rejoins and catches up.
	if err := leader.Restart(); err != nil {
		harness.Fatal(t, err)
	}
	c.waitMembers(ctx, c.nodes...)
	current := c.waitLeader(ctx, c.nodes...)
	st, err := current.self(ctx)
	if err != nil {
		harness.Fatal(t, err)
	}
	c.waitApplied(ctx, st.AppliedIndex, leader)
	t.Logf("%s rejoined and applied the index of leader %s, %d", leader.ID, current.ID, st.AppliedIndex)
	c.checkState(ctx, want, unknown, c.nodes...)

	// Stop every server cleanly, start them all again: nothing is lost.
	for _, n := range c.nodes {
		if err := n.Stop(); err != nil {
			harness.Fatal(t, err)
		}
	}
	for _, n := range c.nodes {
		if err := n.Restart(); err != nil {
			harness.Fatal(t, err)
		}
	}
	c.waitMembers(ctx, c.nodes...)
	index := c.checkState(ctx, want, unknown, c.nodes...)

	checkMembersTable(t, c, index)
}

// checkMembersTable checks `cyclerctl cluster members`, as JSON and as the
// table an operator reads: three voters, one leader, their API addresses, and
// every member's applied index (at least index, once they caught up).
func checkMembersTable(t *testing.T, c *cluster, index uint64) {
	t.Helper()
	ctx := testContext(t, time.Minute)
	for _, asker := range c.nodes {
		m := c.members(ctx, asker)
		if m.AnsweredBy != asker.ID || len(m.Members) != len(c.nodes) {
			harness.Fatalf(t, "members asked of %s: answered by %s, %d members; want %s and %d: %+v", asker.ID, m.AnsweredBy, len(m.Members), asker.ID, len(c.nodes), m)
		}
		leaders := 0
		for _, row := range m.Members {
			i := slices.IndexFunc(c.nodes, func(n *clusterNode) bool { return n.ID == row.ID })
			if i < 0 {
				harness.Errorf(t, "members asked of %s: unknown member %+v", asker.ID, row)
				continue
			}
			n := c.nodes[i]
			if row.APIAddr != n.APIAddr || row.RaftAddr != n.RaftAddr || !row.Voter || row.Error != "" || row.AppliedIndex < index {
				harness.Errorf(t, "members asked of %s: %+v; want api %s, raft %s, a voter, applied index >= %d, no error",
					asker.ID, row, n.APIAddr, n.RaftAddr, index)
			}
			if row.Leader {
				leaders++
				if row.State != "Leader" {
					harness.Errorf(t, "members asked of %s: %s is marked leader but reports state %q", asker.ID, row.ID, row.State)
				}
			}
		}
		if leaders != 1 {
			harness.Errorf(t, "members asked of %s: %d leaders, want 1: %+v", asker.ID, leaders, m.Members)
		}
	}

	out := c.mustCtl(ctx, c.nodes[0].APIAddr, "cluster", "members")
	t.Logf("cyclerctl cluster members:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(c.nodes)+2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "API ADDR") || !strings.Contains(lines[0], "INDEX") {
		harness.Fatalf(t, "cluster members table: want a header, %d rows and the answering node:\n%s", len(c.nodes), out)
	}
	leaders := 0
	for i, n := range c.nodes {
		// ID RAFT-ADDR API-ADDR VOTER LEADER LAST-CONTACT INDEX STATE
		f := strings.Fields(lines[i+1])
		if len(f) != 8 || f[0] != n.ID || f[1] != n.RaftAddr || f[2] != n.APIAddr || f[3] != "true" {
			harness.Errorf(t, "cluster members row %q; want %s %s %s true ...", lines[i+1], n.ID, n.RaftAddr, n.APIAddr)
			continue
		}
		if idx, err := strconv.ParseUint(f[6], 10, 64); err != nil || idx < index {
			harness.Errorf(t, "cluster members row %q: index %q, want a number >= %d", lines[i+1], f[6], index)
		}
		if f[4] == "true" {
			leaders++
		}
	}
	if leaders != 1 {
		harness.Errorf(t, "cluster members table shows %d leaders, want 1:\n%s", leaders, out)
	}
}

// TestMinorityCannotCommit stops two of three servers: the one left refuses
// writes with a 503 that says why, still answers local reads, and commits
// again as soon as a second server is back.
func TestMinorityCannotCommit(t *testing.T) {
	c := startCluster(t, clusterOptions{Size: 3, Timing: "fast"})
	ctx := testContext(t, 2*time.Minute)
	lone := c.waitLeader(ctx, c.nodes...)
	want := map[string]string{"web": "committed with a quorum"}
	c.mustFreeze(ctx, lone, "web", want["web"])
	c.checkState(ctx, want, nil, c.nodes...)

	stopped := c.others(lone)
	for _, n := range stopped {
		if err := n.Stop(); err != nil {
			harness.Fatal(t, err)
		}
	}
	// The old leader cannot hear from a quorum, so its lease runs out and it
	// steps down; it cannot win an election alone.
	if err := harness.WaitFor(ctx, lone.ID+" to step down", func() error {
		st, err := lone.self(ctx)
		if err != nil {
			return err
		}
		if st.State == "Leader" || st.LeaderID != "" {
			return fmt.Errorf("state %s, leader %q", st.State, st.LeaderID)
		}
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}

	err := lone.freeze(ctx, "db", "without a quorum")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != api.CodeUnavailable || !strings.Contains(ae.Message, "quorum") {
		harness.Fatalf(t, "write on a lone server: %v; want 503 unavailable with a message about the quorum", err)
	}
	t.Logf("write on the lone server: %v", err)
	if _, _, err := lone.frozen(ctx, true); !errors.Is(err, api.ErrUnavailable) {
		harness.Errorf(t, "consistent read on a lone server: %v; want unavailable", err)
	}
	got, meta, err := lone.frozen(ctx, false)
	if err != nil || meta.Node != lone.ID {
		harness.Fatalf(t, "local read on the lone server: answered by %q, %v; want an answer from %s", meta.Node, err, lone.ID)
	}
	c.compareState("local read on the lone server", got, want, nil)
	if out := c.mustCtl(ctx, lone.APIAddr, "status", "web"); !strings.Contains(out, want["web"]) {
		harness.Errorf(t, "cyclerctl status web on the lone server: %q; want the freeze reason", out)
	}

	// A second server restores the quorum: the same write now commits.
	if err := stopped[0].Restart(); err != nil {
		harness.Fatal(t, err)
	}
	c.waitLeader(ctx, lone, stopped[0])
	if out := c.mustCtl(ctx, lone.APIAddr, "freeze", "db", "--reason", "with a quorum again"); !strings.Contains(out, "db is frozen") {
		harness.Errorf(t, "cyclerctl freeze db: %q", out)
	}
	want["db"] = "with a quorum again"
	c.checkState(ctx, want, nil, lone, stopped[0])
}

// TestSnapshotSaveRestore saves a snapshot with cyclerctl, changes the state
// and restores it on every server. A truncated and a corrupted copy are
// refused, by cyclerctl and by the server itself, and change nothing.
func TestSnapshotSaveRestore(t *testing.T) {
	c := startCluster(t, clusterOptions{Size: 3, Timing: "fast"})
	ctx := testContext(t, 2*time.Minute)
	leader := c.waitLeader(ctx, c.nodes...)
	follower := c.others(leader)[0]

	saved := map[string]string{"alpha": "saved a", "beta": "saved b"}
	for _, svc := range []string{"alpha", "beta"} {
		c.mustCtl(ctx, follower.APIAddr, "freeze", svc, "--reason", saved[svc])
	}
	snap := filepath.Join(t.TempDir(), "cycler.snap")
	if out := c.mustCtl(ctx, follower.APIAddr, "snapshot", "save", snap); !strings.Contains(out, "saved "+snap) {
		harness.Errorf(t, "snapshot save printed %q", out)
	}

	c.mustCtl(ctx, follower.APIAddr, "unfreeze", "alpha")
	c.mustFreeze(ctx, leader, "beta", "changed after the save")
	c.mustFreeze(ctx, leader, "gamma", "frozen after the save")
	c.checkState(ctx, map[string]string{"beta": "changed after the save", "gamma": "frozen after the save"}, nil, c.nodes...)

	// Restored through a follower: the upload is forwarded to the leader.
	if out := c.mustCtl(ctx, follower.APIAddr, "snapshot", "restore", snap); !strings.Contains(out, "restored "+snap) {
		harness.Errorf(t, "snapshot restore printed %q", out)
	}
	c.checkState(ctx, saved, nil, c.nodes...)

	// Bad copies, after one more change so that "unchanged" is not "as saved".
	c.mustFreeze(ctx, leader, "delta", "frozen after the restore")
	current := maps.Clone(saved)
	current["delta"] = "frozen after the restore"
	data, err := os.ReadFile(snap)
	if err != nil {
		harness.Fatal(t, err)
	}
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)-33] ^= 0xff // the last byte of the state, just before the SHA-256 trailer
	tests := []struct {
		name string
		give []byte
		want string
	}{
		{name: "truncated", give: data[:len(data)/2], want: "truncated"},
		{name: "corrupted", give: corrupt, want: "checksum mismatch"},
		{name: "empty", give: nil, want: "the file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.name+".snap")
			if err := os.WriteFile(path, tt.give, 0o600); err != nil {
				harness.Fatal(t, err)
			}
			out, errOut, err := c.ctl(ctx, follower.APIAddr, "snapshot", "restore", path)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "nothing was changed") {
				harness.Errorf(t, "cyclerctl snapshot restore %s: %v\nstdout: %s\nstderr: %s\nwant a non-zero exit and %q", tt.name, err, out, errOut, tt.want)
			}
			// The server checks on its own too: a client that skips the local
			// check (curl) is refused by the leader and by a forwarding follower.
			for _, n := range []*clusterNode{leader, follower} {
				resp, err := n.API.DoRaw(ctx, http.MethodPost, "/v1/snapshot", bytes.NewReader(tt.give), "application/octet-stream")
				if err == nil {
					resp.Body.Close()
				}
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, tt.want) {
					harness.Errorf(t, "POST /v1/snapshot (%s) to %s: %v; want 400 bad_request saying %q", tt.name, n.ID, err, tt.want)
				}
			}
		})
	}
	c.checkState(ctx, current, nil, c.nodes...)
}

// TestClusterLeaveAndRemove removes a dead server with `cluster remove`, then
// makes a live follower leave with `cluster leave`: it exits, the members list
// follows, and the last server still commits on its own.
func TestClusterLeaveAndRemove(t *testing.T) {
	c := startCluster(t, clusterOptions{Size: 3, Timing: "fast"})
	ctx := testContext(t, 2*time.Minute)
	leader := c.waitLeader(ctx, c.nodes...)
	fs := c.others(leader)
	dead, leaving := fs[0], fs[1]
	want := map[string]string{"web": "before the membership changes"}
	c.mustFreeze(ctx, leaving, "web", want["web"])

	if err := dead.Kill(); err != nil {
		harness.Fatal(t, err)
	}
	// Through a follower, so the removal is forwarded to the leader.
	if out := c.mustCtl(ctx, leaving.APIAddr, "cluster", "remove", dead.ID); !strings.Contains(out, "server "+dead.ID+" removed") {
		harness.Errorf(t, "cluster remove printed %q", out)
	}
	c.waitMembers(ctx, leader, leaving)
	if m, want := c.members(ctx, leader), slices.Sorted(slices.Values([]string{leader.ID, leaving.ID})); !slices.Equal(memberIDs(m), want) {
		harness.Errorf(t, "members after removing %s: %v; want %v", dead.ID, memberIDs(m), want)
	}
	_, errOut, err := c.ctl(ctx, leader.APIAddr, "cluster", "remove", "no-such-server")
	if err == nil || !strings.Contains(errOut, "not a member") {
		harness.Errorf(t, "cluster remove no-such-server: %v, stderr %q; want a failure saying it is not a member", err, errOut)
	}

	pid := leaving.Pid()
	if out := c.mustCtl(ctx, leaving.APIAddr, "cluster", "leave"); !strings.Contains(out, "server "+leaving.ID+" left the cluster") {
		harness.Errorf(t, "cluster leave printed %q", out)
	}
	if err := harness.WaitFor(ctx, leaving.ID+" to exit after leaving", func() error {
		if leaving.Running() {
			return fmt.Errorf("pid %d still runs", pid)
		}
		return nil
	}); err != nil {
		harness.Fatal(t, err)
	}
	// The harness notes each exit in the process log; a clean exit has no error.
	if log, err := os.ReadFile(leaving.LogPath()); err != nil || !strings.Contains(string(log), fmt.Sprintf("pid %d exited: <nil>", pid)) {
		harness.Errorf(t, "%s did not exit cleanly after leaving (%v); log:\n%s", leaving.ID, err, leaving.Tails())
	}
	c.waitMembers(ctx, leader)
	if m := c.members(ctx, leader); !slices.Equal(memberIDs(m), []string{leader.ID}) || !m.Members[0].Leader {
		harness.Errorf(t, "members after %s left: %+v; want %s alone, leading", leaving.ID, m.Members, leader.ID)
	}
	// A cluster of one is its own quorum.
	c.mustFreeze(ctx, leader, "db", "after the others went")
	want["db"] = "after the others went"
	c.checkState(ctx, want, nil, leader)
}

// memberIDs lists the ids in m, sorted.
func memberIDs(m api.Members) []string {
	var ids []string
	for _, r := range m.Members {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestClusterDiscoverThroughConsul starts the first server alone and the
// other two with raft.discover and no raft.join: they find the first through
// its registration as the Consul service cyclerd and join it.
func TestClusterDiscoverThroughConsul(t *testing.T) {
	consul := harness.StartConsul(t)
	c := startCluster(t, clusterOptions{Size: 3, Timing: "fast", ConsulAddr: consul.HTTPAddr})
	ctx := testContext(t, time.Minute)
	leader := c.waitLeader(ctx, c.nodes...)
	for _, n := range c.nodes {
		if len(c.members(ctx, n).Members) != 3 {
			harness.Fatalf(t, "%s does not see 3 members", n.ID)
		}
	}
	// Every server is registered in Consul with its Raft and API address.
	entries, _, err := consul.Client().Health().Service("cyclerd", "", false, nil)
	if err != nil {
		harness.Fatal(t, err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Service.Meta["node_id"]] = e.Service.Meta["api_addr"]
	}
	for _, n := range c.nodes {
		if got[n.ID] != n.APIAddr {
			harness.Fatalf(t, "consul registration of %s: api_addr %q; want %q (all: %v)", n.ID, got[n.ID], n.APIAddr, got)
		}
	}
	c.mustFreeze(ctx, c.others(leader)[0], "web", "written through a discovered follower")
}

package controller

import (
	"fmt"
	"net"
	"net/http"
	"sync"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/raftstore"
)

// NodeStats is a server's view of its own Raft state.
type NodeStats = api.NodeStats

func (c *Controller) stats() NodeStats {
	s := c.store.Stats()
	st := NodeStats{NodeID: s.NodeID, State: s.State, Term: s.Term, LastIndex: s.LastIndex,
		CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LeaderID: s.LeaderID,
		RaftAddr: c.store.Addr(), APIAddr: c.apiAddr}
	if ms, err := c.store.Members(); err == nil {
		st.Members = len(ms)
		for _, m := range ms {
			st.MemberIDs = append(st.MemberIDs, m.ID)
		}
	}
	return st
}

func (c *Controller) handleSelf(w http.ResponseWriter, _ *http.Request) error {
	api.SetIndex(w, c.store.AppliedIndex())
	return api.WriteJSON(w, http.StatusOK, c.stats())
}

// handleMembers lists the Raft configuration and asks every member for its
// own applied index, in parallel, so the operator sees who is behind.
func (c *Controller) handleMembers(w http.ResponseWriter, r *http.Request) error {
	ms, err := c.store.Members()
	if err != nil {
		return err
	}
	out := api.Members{AnsweredBy: c.store.ID(), Members: make([]api.Member, len(ms))}
	var wg sync.WaitGroup
	for i, m := range ms {
		row := api.Member{ID: m.ID, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr, Voter: m.Voter,
			Leader: m.Leader, LastContactMS: m.LastContact.Milliseconds()}
		if m.LastContact < 0 {
			row.LastContactMS = -1
		}
		out.Members[i] = row
		switch {
		case m.Self:
			st := c.stats()
			out.Members[i].AppliedIndex, out.Members[i].State = st.AppliedIndex, st.State
		case m.APIAddr == "":
			out.Members[i].Error = "API address unknown"
		default:
			wg.Add(1)
			go func(i int, addr string) {
				defer wg.Done()
				st, err := c.peers.selfStats(r.Context(), addr)
				if err != nil {
					out.Members[i].Error = err.Error()
					return
				}
				out.Members[i].AppliedIndex, out.Members[i].State = st.AppliedIndex, st.State
			}(i, m.APIAddr)
		}
	}
	wg.Wait()
	return api.WriteJSON(w, http.StatusOK, out)
}

func (c *Controller) handleJoin(w http.ResponseWriter, r *http.Request) error {
	var req api.JoinRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.NodeID == "" {
		return api.BadRequest("node_id must be set")
	}
	for _, a := range []struct{ name, v string }{{"raft_addr", req.RaftAddr}, {"api_addr", req.APIAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return api.BadRequest("%s %q is not host:port", a.name, a.v)
		}
	}
	if err := c.store.Join(r.Context(), req.NodeID, req.RaftAddr); err != nil {
		return err
	}
	if err := c.store.SetNodeMeta(r.Context(), raftstore.NodeMeta{ID: req.NodeID, APIAddr: req.APIAddr}); err != nil {
		return err
	}
	c.log.Info("server joined", zap.String("node_id", req.NodeID), zap.String("raft_addr", req.RaftAddr))
	c.audit(r, "cluster.join", req.NodeID, fmt.Sprintf("raft %s, api %s", req.RaftAddr, req.APIAddr))
	return api.WriteJSON(w, http.StatusOK, map[string]string{"joined": req.NodeID, "leader": c.store.ID()})
}

func (c *Controller) handleRemove(w http.ResponseWriter, r *http.Request) error {
	var req api.RemoveRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := c.removeMember(r, req.NodeID); err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, map[string]string{"removed": req.NodeID})
}

// removeMember removes id from the Raft configuration; the leader only.
func (c *Controller) removeMember(r *http.Request, id string) error {
	ms, err := c.store.Members()
	if err != nil {
		return err
	}
	known := false
	for _, m := range ms {
		known = known || m.ID == id
	}
	if !known {
		return api.NotFound("server %q is not a member of the cluster; `cyclerctl cluster members` lists them", id)
	}
	if len(ms) == 1 {
		return api.Conflict("server %q is the only member; removing it would destroy the cluster", id)
	}
	// Audit first: once the leader removes itself it can no longer commit.
	c.audit(r, "cluster.remove", id, "")
	if err := c.store.Remove(r.Context(), id); err != nil {
		return err
	}
	c.log.Info("server removed", zap.String("node_id", id))
	return nil
}

// handleLeave makes the server that receives it leave the cluster and stop.
// A follower asks the leader to remove it; the leader removes itself, which
// makes Raft elect a new leader among the rest.
func (c *Controller) handleLeave(w http.ResponseWriter, r *http.Request) error {
	self := c.store.ID()
	if c.store.IsLeader() {
		if err := c.storeErr(c.removeMember(r, self)); err != nil {
			return err
		}
	} else {
		leader := c.store.LeaderAPIAddr()
		if leader == "" {
			return api.Unavailable("no leader is elected, so %q cannot leave now; retry shortly", self)
		}
		// The caller's own token, so the audit trail names the caller.
		cl, err := c.peers.client(leader, api.BearerToken(r), writeTimeout)
		if err != nil {
			return err
		}
		if err := cl.Do(r.Context(), http.MethodPost, "/v1/cluster/remove", api.RemoveRequest{NodeID: self}, nil); err != nil {
			return err
		}
	}
	if err := api.WriteJSON(w, http.StatusOK, map[string]string{"left": self}); err != nil {
		return err
	}
	c.log.Info("left the cluster; stopping")
	c.leave()
	return nil
}

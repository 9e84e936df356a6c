package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
)

// HeaderForwarded marks a request one server forwarded to another. A server
// never forwards a request that carries it, so a stale view of who leads
// cannot bounce a request around the cluster.
const HeaderForwarded = "X-Cycler-Forwarded-By"

// Peers is how a server calls the other servers: to forward writes to the
// leader, to join a cluster, and to ask members for their Raft index.
type Peers struct {
	// Scheme is "http", or "https" when the API uses TLS.
	Scheme string
	// HTTP carries the TLS settings for peer calls.
	HTTP *http.Client
	// Token is the secret presented on calls the server makes itself (join,
	// member fan-out). Forwarded requests keep the caller's own token.
	Token string
	// Self is this node's id, sent in HeaderForwarded.
	Self string
}

// NewPeers returns peer settings. tlsCfg is nil for plain HTTP.
func NewPeers(self, token string, tlsCfg *tls.Config) *Peers {
	p := &Peers{Scheme: "http", Token: token, Self: self}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Every forwarded write goes to the one leader; the default of 2 idle
	// connections per host would make concurrent clients redial it.
	tr.MaxIdleConnsPerHost = 64
	if tlsCfg != nil {
		p.Scheme = "https"
		tr.TLSClientConfig = tlsCfg
	}
	p.HTTP = &http.Client{Transport: tr}
	return p
}

// client returns an API client for the server at addr ("host:port") that
// presents token.
func (p *Peers) client(addr, token string, timeout time.Duration) (*client.Client, error) {
	return client.New(client.Config{Addr: p.Scheme + "://" + addr, Token: token, HTTPClient: p.HTTP, Timeout: timeout})
}

// forward relays r to the leader's API at leaderAddr and copies the answer
// back, so the caller sees what the leader said (including its X-Cycler-Node).
func (p *Peers) forward(w http.ResponseWriter, r *http.Request, leaderAddr string) error {
	if by := r.Header.Get(HeaderForwarded); by != "" {
		return api.NotLeader(leaderAddr)
	}
	if leaderAddr == "" {
		return api.Unavailable("no leader is elected right now, so the request cannot be served; retry in a few seconds, and check `cyclerctl cluster members` if it persists")
	}
	ctx := r.Context()
	out, err := http.NewRequestWithContext(ctx, r.Method, p.Scheme+"://"+leaderAddr+r.URL.RequestURI(), r.Body)
	if err != nil {
		return fmt.Errorf("forward to leader: %w", err)
	}
	for _, h := range []string{"Authorization", "Content-Type", "Accept", "Content-Length"} {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	out.ContentLength = r.ContentLength
	out.Header.Set(HeaderForwarded, p.Self)
	resp, err := p.HTTP.Do(out)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return api.Unavailable("the leader at %s did not answer the forwarded request: %v; retry shortly", leaderAddr, err)
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		switch k {
		case "Content-Type", "Content-Disposition", api.HeaderNode, api.HeaderIndex, "Allow", "X-Content-Type-Options":
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		// The status line is gone; all that is left is to log it.
		return fmt.Errorf("forward to leader: copy answer: %w", err)
	}
	return nil
}

// selfStats asks the server at addr for its own Raft statistics.
func (p *Peers) selfStats(ctx context.Context, addr string) (NodeStats, error) {
	c, err := p.client(addr, p.Token, 2*time.Second)
	if err != nil {
		return NodeStats{}, err
	}
	var st NodeStats
	err = c.Do(ctx, http.MethodGet, "/v1/cluster/self", nil, &st)
	return st, err
}

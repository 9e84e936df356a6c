package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/pool"
)

// Ack is the acknowledgement an LB writes to KV cycler/<svc>/lb/<lb-id>. The
// first four fields are the public Consul contract; the rest are optional
// extras that older readers ignore (see the package doc).
type Ack struct {
	// Generation is the generation the LB serves, proved by read-back. 0
	// means it has never applied one.
	Generation uint64 `json:"generation"`
	// Backends is the set applied for Generation; never null.
	Backends []lbdrivers.Backend `json:"backends"`
	// AppliedAt is when Generation was applied (or, after a restart of
	// cyclerd lb, first read back from the LB).
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Driver names the LB driver ("nginx", "varnish", "exec").
	Driver string `json:"driver"`
	// CheckedAt is the last time a read-back matched the applied set.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// LastError is the LB's current problem: an apply error, a failed
	// read-back or a refusal. Empty once a set is applied again.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError was first seen.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Refused holds why the desired set is refused (too few backends), while
	// it is.
	Refused string `json:"refused,omitempty"`
}

// equal reports whether a and b carry the same content.
func (a Ack) equal(b Ack) bool {
	return a.Generation == b.Generation && sameSet(a.Backends, b.Backends) && a.AppliedAt.Equal(b.AppliedAt) &&
		a.Driver == b.Driver && a.CheckedAt.Equal(b.CheckedAt) && a.LastError == b.LastError &&
		a.LastErrorAt.Equal(b.LastErrorAt) && a.Refused == b.Refused
}

// ParseAck decodes an acknowledgement. Unknown fields are ignored, so a newer
// LB can add fields without breaking older readers.
func ParseAck(b []byte) (Ack, error) {
	var a Ack
	if err := json.Unmarshal(b, &a); err != nil {
		return Ack{}, fmt.Errorf("ack document: %w", err)
	}
	if a.Backends == nil {
		a.Backends = []lbdrivers.Backend{}
	}
	return a, nil
}

// Store is where a Reconciler writes its acknowledgements. ConsulStore is
// the real one; unit tests use a recorder.
type Store interface {
	// PutAck writes ack under key.
	PutAck(ctx context.Context, key string, ack Ack) error
	// Ping proves that the store answers, for the staleness report.
	Ping(ctx context.Context) error
}

// ConsulStore writes acknowledgements to Consul KV.
type ConsulStore struct {
	c *consulapi.Client
}

// NewConsulStore returns a Store backed by Consul KV. Each ack key has one
// writer (the LB it names), so a plain put is enough; no check-and-set.
func NewConsulStore(c *consulapi.Client) *ConsulStore { return &ConsulStore{c: c} }

// PutAck implements Store.
func (s *ConsulStore) PutAck(ctx context.Context, key string, ack Ack) error {
	b, err := json.Marshal(ack)
	if err != nil {
		return fmt.Errorf("consul: encode %s: %w", key, err)
	}
	if _, err := s.c.KV().Put(&consulapi.KVPair{Key: key, Value: b}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: write %s: %w", key, err)
	}
	return nil
}

// Ping implements Store: it asks the agent for the cluster leader.
func (s *ConsulStore) Ping(ctx context.Context) error {
	if _, err := s.c.Status().LeaderWithQueryOptions((&consulapi.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: ping: %w", err)
	}
	return nil
}

// AckEntry is one acknowledgement found in KV, with where it was found.
type AckEntry struct {
	// Service and LBID come from the key cycler/<service>/lb/<lb-id>.
	Service string `json:"service"`
	LBID    string `json:"lb_id"`
	// Key is the KV key.
	Key string `json:"key"`
	// Ack is the decoded document; zero when Err is set.
	Ack Ack `json:"ack"`
	// Err says why the document could not be decoded.
	Err string `json:"error,omitempty"`
}

// ListAcks reads every acknowledgement of every service under KV prefix
// cycler/, sorted by service then LB id. Keys that are not
// cycler/<service>/lb/<lb-id> are skipped.
func ListAcks(ctx context.Context, c *consulapi.Client) ([]AckEntry, error) {
	pairs, _, err := c.KV().List("cycler/", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list cycler/: %w", err)
	}
	out := []AckEntry{}
	for _, p := range pairs {
		svc, id, ok := splitAckKey(p.Key)
		if !ok {
			continue
		}
		e := AckEntry{Service: svc, LBID: id, Key: p.Key}
		if a, err := ParseAck(p.Value); err != nil {
			e.Err = err.Error()
		} else {
			e.Ack = a
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].LBID < out[j].LBID
	})
	return out, nil
}

// splitAckKey parses cycler/<svc>/lb/<id>, the shape pool.AckKey builds.
func splitAckKey(key string) (svc, id string, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "cycler" || parts[2] != "lb" || parts[1] == "" || parts[3] == "" {
		return "", "", false
	}
	if pool.AckKey(parts[1], parts[3]) != key {
		return "", "", false
	}
	return parts[1], parts[3], true
}

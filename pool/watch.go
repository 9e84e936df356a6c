package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// Timing of the blocking-query loop, after consul-template's watch/view.go:
// a short pause between calls so a flapping key cannot turn the loop into a
// busy poll, and capped exponential backoff on errors that resets on success.
const (
	minPause   = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	blockFor   = 60 * time.Second
)

// fetchFunc runs one blocking query with q and returns the value and the
// index Consul reported.
type fetchFunc[T any] func(ctx context.Context, q *consulapi.QueryOptions) (T, uint64, error)

// watch runs fetch as a Consul blocking query until ctx ends. It calls emit
// with the first value and then only with values whose index moved, and
// onErr with each failure (the loop keeps going). Both run on the watch's
// goroutine, so a slow emit delays the next query and never queues values.
func watch[T any](ctx context.Context, fetch fetchFunc[T], emit func(T), onErr func(error)) {
	var index uint64
	backoff := time.Duration(0)
	first := true
	for ctx.Err() == nil {
		start := time.Now()
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: blockFor}).WithContext(ctx)
		v, newIndex, err := fetch(ctx, q)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(2*backoff, time.Second), maxBackoff)
			onErr(err)
			if !sleep(ctx, backoff+jitter(backoff)) {
				return
			}
			continue
		}
		backoff = 0
		switch {
		case newIndex < index || newIndex == 0:
			// The index went backwards (Consul restarted or a snapshot was
			// restored): start over rather than block on a future index.
			index = 0
		case newIndex == index && !first:
			// The blocking query timed out with no change.
		default:
			index = newIndex
			first = false
			emit(v)
		}
		// The pause keeps at least minPause between the starts of two
		// queries. A query that blocked for a while already waited; pausing
		// after it would only delay noticing the next change of a burst.
		if !sleep(ctx, minPause+jitter(minPause)-time.Since(start)) {
			return
		}
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d/2 + 1)
}

// sleep waits d (nothing when d <= 0) or until ctx ends, and reports
// whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// WatchInstances watches every instance of service with blocking queries on
// /v1/health/service/<service> until ctx ends, calling emit with each new
// set. It never polls; errors go to onErr and are retried with backoff.
func WatchInstances(ctx context.Context, c *consulapi.Client, service string, emit func(Instances), onErr func(error)) {
	watch(ctx, func(ctx context.Context, q *consulapi.QueryOptions) (Instances, uint64, error) {
		entries, meta, err := c.Health().Service(service, "", false, q)
		if err != nil {
			return Instances{}, 0, fmt.Errorf("consul: health of service %q: %w", service, err)
		}
		return fromEntries(service, meta.LastIndex, entries), meta.LastIndex, nil
	}, emit, onErr)
}

// StateView is what WatchState reports: the parsed document, or why there
// is none.
type StateView struct {
	// State is valid when Err is nil and Exists is true.
	State State
	// Exists is false before the leader has published anything.
	Exists bool
	// Err is set when the key holds a document that does not parse; the
	// watcher keeps going, and the caller keeps its last good state.
	Err error
	// Index is the KV modify index of the key.
	Index uint64
}

// ErrNoState is returned by ReadState when the key does not exist.
var ErrNoState = errors.New("no state published")

// WatchState watches KV cycler/<service>/state until ctx ends.
func WatchState(ctx context.Context, c *consulapi.Client, service string, emit func(StateView), onErr func(error)) {
	key := StateKey(service)
	watch(ctx, func(ctx context.Context, q *consulapi.QueryOptions) (StateView, uint64, error) {
		pair, meta, err := c.KV().Get(key, q)
		if err != nil {
			return StateView{}, 0, fmt.Errorf("consul: read %s: %w", key, err)
		}
		v := StateView{Index: meta.LastIndex}
		if pair != nil {
			v.Exists = true
			v.State, v.Err = ParseState(pair.Value)
			if v.Err != nil {
				v.Err = fmt.Errorf("%s: %w", key, v.Err)
			}
		}
		return v, meta.LastIndex, nil
	}, emit, onErr)
}

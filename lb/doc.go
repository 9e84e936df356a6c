// Package lb is the heart of `cyclerd lb`: one Reconciler per service makes a
// load balancer route to the live pool that the leader published, proves it
// from the load balancer's own read-back, and acknowledges the generation in
// Consul KV.
//
// # Inputs
//
// A Reconciler is fed two things, each by a Consul blocking query (Watch, on
// top of pool.WatchState and pool.WatchInstances; nothing polls):
//
//   - the state document cycler/<svc>/state (generation, live pool, hidden ids);
//   - every instance of the service with its health and maintenance mode.
//
// Only the newest value of each is kept: a burst of changes while a switch is
// running coalesces into one more pass (a one-slot signal channel and the
// latest value under a mutex), never a queue of stale states.
//
// # The desired set
//
// The backends are the instances whose Meta cycler_pool is the state's live
// pool, that are Serving (every check passing, not in maintenance), and that
// the state does not list as hidden. Then:
//
//   - no state published yet: nothing is applied; the status says it is
//     waiting for the leader to publish cycler/<svc>/state;
//   - fewer than MinLive backends (zero included): the set is refused. The load
//     balancer keeps its last good set, no new generation is acknowledged, and
//     the refusal (with the counts) goes to the status and the ack's
//     last_error and refused fields. This is invariant 1: an LB never applies
//     an empty set;
//   - otherwise the driver applies it (Driver.Apply), reads it back
//     (Driver.Applied), and only when the read-back holds the same generation
//     and backends is the generation acknowledged.
//
// A failed apply leaves the last good set in place (the drivers guarantee it),
// acknowledges nothing new, is retried with capped exponential backoff, and is
// visible in the status and in the ack's last_error.
//
// # Drift repair
//
// Every VerifyInterval the Reconciler reads the set back from the load
// balancer. If it differs from what was last applied (for example nginx was
// restarted and its lua_shared_dict is empty) the set is applied again: the
// desired one, or, while the desired one is refused, the last good one. A
// successful check refreshes checked_at in the ack, so readers can tell a live
// LB from a dead one.
//
// # Consul unreachable
//
// The load balancer keeps its current set; nothing is emptied. The status
// reports how stale the view is: the time since the last successful answer
// from Consul (a watch result, an ack write, or a ping on the verify tick when
// nothing else talked to Consul).
//
// # The acknowledgement (KV cycler/<svc>/lb/<lb-id>)
//
// The contract fields are generation, backends, applied_at and driver. cycler
// adds optional fields that older readers ignore:
//
//	{
//	  "generation": 42,                          // the generation the LB serves and proved
//	  "backends": [{"id": "web-green-1", "address": "10.0.0.7", "port": 8080}],
//	  "applied_at": "2025-01-02T03:04:05Z",      // when it was applied (or found applied at start-up)
//	  "driver": "nginx",
//	  "checked_at": "2025-01-02T03:09:05Z",      // last read-back that matched; staleness = now - checked_at
//	  "last_error": "refused: generation 43: ...", // the current problem, if any
//	  "last_error_at": "2025-01-02T03:09:00Z",
//	  "refused": "generation 43: ..."            // set while the desired set is refused
//	}
//
// last_error and refused are cleared once a set is applied again. An ack with
// generation 0 says the LB has never applied a set but has something to report
// (a refusal or an error).
package lb

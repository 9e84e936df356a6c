package cycle

import "time"

// Wire types of the cycle API, shared by the servers and cyclerctl.

// StartRequest is the body of POST /v1/cycles.
type StartRequest struct {
	// Service is the service to cycle. Empty means the package's name.
	Service string `json:"service,omitempty"`
	// Digest is the package, "sha256:<hex>", already pushed.
	Digest string `json:"digest"`
	// Force starts outside the deploy windows (never through a freeze or an
	// open breaker). It is written to the audit trail.
	Force bool `json:"force,omitempty"`
	// AtWindow stages the package for the service's deploy-staged schedule
	// instead of starting now.
	AtWindow bool `json:"at_window,omitempty"`
	// RequestID, chosen by the client, makes the start idempotent: a retry
	// with the same id (after a lost answer or a leader change) returns the
	// cycle the first attempt created instead of being refused by its lock.
	RequestID string `json:"request_id,omitempty"`
}

// RollbackRequest is the body of POST /v1/services/{service}/rollback.
type RollbackRequest struct {
	Force bool `json:"force,omitempty"`
	// RequestID makes the rollback idempotent; see StartRequest.RequestID.
	RequestID string `json:"request_id,omitempty"`
}

// AbortRequest is the body of POST /v1/cycles/{id}/abort.
type AbortRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Breaker states, as BreakerStatus.State names them.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// BreakerStatus is one service's circuit breaker (GET /v1/breakers).
type BreakerStatus struct {
	Service string `json:"service"`
	// State is BreakerClosed, BreakerOpen or BreakerHalfOpen. Half-open
	// lets one cycle try; its outcome closes or re-opens the breaker.
	State string `json:"state"`
	// ConsecutiveFailures counts host failures and aborted cycles since
	// the last cycle that finished; Threshold trips the breaker.
	ConsecutiveFailures uint32 `json:"consecutive_failures"`
	Threshold           uint32 `json:"threshold"`
	// Cooldown is how long the breaker stays open.
	Cooldown string `json:"cooldown"`
	// ReopensAt is when an open breaker lets a cycle try again.
	ReopensAt time.Time `json:"reopens_at,omitzero"`
}

// Exit codes of `cyclerctl deploy` and `cyclerctl rollback`.
const (
	// ExitLive: the new version is live.
	ExitLive = 0
	// ExitError: anything else went wrong (bad input, unreachable server).
	ExitError = 1
	// ExitRefused: the cycle was not started (breaker, window, freeze,
	// lock, preflight); nothing changed.
	ExitRefused = 2
	// ExitAborted: stopped before the switch; users never saw the package.
	ExitAborted = 3
	// ExitRolledBack: the switch happened and was undone.
	ExitRolledBack = 4
)

// ExitCode maps a terminal phase to the exit code of `cyclerctl deploy`.
func ExitCode(p Phase) int {
	switch p {
	case Done:
		return ExitLive
	case Aborted:
		return ExitAborted
	case RolledBack:
		return ExitRolledBack
	}
	return ExitError
}

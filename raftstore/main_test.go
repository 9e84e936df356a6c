package raftstore

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Store.wait's helper goroutine can outlive a Store in one case that
	// raft leaves open: an entry already handed to the FSM goroutine when
	// raft shuts down is never resolved (see the comment on wait). Every
	// other goroutine must be gone.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/cyclerhq/cycler/raftstore.(*Store).wait.func1"))
}

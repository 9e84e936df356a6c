package orchestrator

import (
	"time"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/pool"
	"github.com/cyclerhq/cycler/raftstore"
	"github.com/cyclerhq/cycler/smoke"
)

// Spec is a service's cycle definition, with every value parsed; cyclerd
// builds it from the server config.
type Spec struct {
	Name string
	// MinLive is the fewest serving instances the live pool may have.
	MinLive int
	// MaxParallel is how many hosts install at once.
	MaxParallel int
	// FailureLimit says how many of a target pool of hosts may fail and
	// stay hidden while the cycle goes on (config.Service.FailureLimit).
	// Nil means none may fail.
	FailureLimit func(hosts int) int
	// Drain is how long a newly hidden pool is left to finish its requests.
	Drain time.Duration
	// BakeTime is how long the new live pool is watched; BakeInterval
	// spaces the bake rounds.
	BakeTime     time.Duration
	BakeInterval time.Duration
	// Standby is config.StandbyKeep or config.StandbyRefresh.
	Standby string
	// BreakerFailures trips the breaker; BreakerCooldown keeps it open.
	BreakerFailures uint32
	BreakerCooldown time.Duration
	// Timeouts bound each phase; a missing or zero entry means no limit.
	Timeouts map[cycle.Phase]time.Duration
	// Smoke runs against each hidden host; Bake through each LB.
	Smoke []smoke.Check
	Bake  []smoke.Check
	// Freeze, when set, is the reason the config freezes the service.
	Freeze string
	// Windows are when cycles may start; none means any time.
	Windows []config.Window
	// Schedules start cycles on the leader (see schedules.go).
	Schedules []config.Schedule
}

// defaultSpec is used to finish a switch or flip-back of a service whose
// definition was removed mid-cycle.
func defaultSpec(name string) Spec {
	return Spec{Name: name, MinLive: 1, MaxParallel: 1, BreakerFailures: 3,
		BreakerCooldown: 10 * time.Minute, Standby: config.StandbyKeep, BakeInterval: 2 * time.Second}
}

// failureLimit is how many of hosts may fail.
func (s Spec) failureLimit(hosts int) int {
	if s.FailureLimit == nil {
		return 0
	}
	return s.FailureLimit(hosts)
}

func (s Spec) timeout(p cycle.Phase) time.Duration { return s.Timeouts[p] }

// smokeChecks are the checks run on a hidden host: the configured ones, or
// one TCP connect to the app's port when none are configured, so no host
// goes live without answering at all.
func (s Spec) smokeChecks() []smoke.Check {
	if len(s.Smoke) > 0 {
		return s.Smoke
	}
	return []smoke.Check{{Name: "tcp-connect", Kind: smoke.KindTCP}}
}

// toPoolState is the Consul document of a committed service state.
func toPoolState(st raftstore.ServiceState) pool.State {
	return pool.State{
		Generation: st.Generation,
		Live:       pool.Pool(st.Live),
		Pools: map[pool.Pool]pool.Release{
			pool.Blue:  {Version: st.Pools.Blue.Version, Digest: st.Pools.Blue.Digest},
			pool.Green: {Version: st.Pools.Green.Version, Digest: st.Pools.Green.Digest},
		},
		Hidden: st.Hidden,
	}
}

// poolRelease returns the release of pool p in st.
func poolRelease(st raftstore.ServiceState, p string) cycle.Release {
	r := st.Pools.Blue
	if p == raftstore.PoolGreen {
		r = st.Pools.Green
	}
	return cycle.Release{Version: r.Version, Digest: r.Digest}
}

// setPoolRelease sets the release of pool p in st.
func setPoolRelease(st *raftstore.ServiceState, p string, r cycle.Release) {
	rel := raftstore.Release{Version: r.Version, Digest: r.Digest}
	if p == raftstore.PoolGreen {
		st.Pools.Green = rel
	} else {
		st.Pools.Blue = rel
	}
}

// other returns the other pool.
func other(p string) string {
	if p == raftstore.PoolBlue {
		return raftstore.PoolGreen
	}
	return raftstore.PoolBlue
}

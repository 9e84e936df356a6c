// Package pool holds cycler's public Consul contract and reads a service's two pools
// out of Consul.
//
// The contract is public: third parties (consul-template users, Consul DNS clients,
// custom LB drivers) rely on these names, so they change only with a major version.
package pool

import (
	"fmt"
	"strconv"
	"strings"
)

// Pool names one half of a service's fleet.
type Pool string

const (
	// Blue is one of the two pools.
	Blue Pool = "blue"
	// Green is the other pool.
	Green Pool = "green"
)

// Consul service metadata keys and tag prefix set on every app instance.
const (
	// MetaPool is the service Meta key that holds the instance's pool.
	MetaPool = "cycler_pool"
	// MetaVersion is the service Meta key that holds the installed package version.
	MetaVersion = "cycler_version"
	// TagPrefix prefixes the pool tag ("cycler-blue", "cycler-green").
	TagPrefix = "cycler-"
)

// Consul service names the daemons register themselves under.
const (
	// ServiceServer is the Consul service of `cyclerd server`.
	ServiceServer = "cyclerd"
	// ServiceAgent is the Consul service of `cyclerd agent`.
	ServiceAgent = "cyclerd-agent"
	// ServiceLB is the Consul service of `cyclerd lb`.
	ServiceLB = "cyclerd-lb"
)

// Parse returns the pool named by s, or an error naming the bad value.
func Parse(s string) (Pool, error) {
	switch Pool(s) {
	case Blue, Green:
		return Pool(s), nil
	}
	return "", fmt.Errorf("pool %q is not valid; use %q or %q", s, Blue, Green)
}

// Other returns the opposite pool. It panics on an invalid pool, which is a
// programming error: every Pool in the program has passed Parse.
func (p Pool) Other() Pool {
	switch p {
	case Blue:
		return Green
	case Green:
		return Blue
	}
	panic(fmt.Sprintf("pool: Other of invalid pool %q", string(p)))
}

// Tag returns the Consul tag that marks an instance of pool p.
func Tag(p Pool) string { return TagPrefix + string(p) }

// HiddenReason is the Consul maintenance-mode reason cycler sets on a hidden
// instance. Operators grep for it, so its shape is part of the contract.
func HiddenReason(generation uint64) string {
	return "cycler: hidden (generation " + strconv.FormatUint(generation, 10) + ")"
}

// ParseHiddenReason returns the generation carried by a maintenance reason set by
// cycler, and false when the reason was set by someone else.
func ParseHiddenReason(reason string) (uint64, bool) {
	const pfx, sfx = "cycler: hidden (generation ", ")"
	if !strings.HasPrefix(reason, pfx) || !strings.HasSuffix(reason, sfx) {
		return 0, false
	}
	n, err := strconv.ParseUint(reason[len(pfx):len(reason)-len(sfx)], 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// StateKey is the Consul KV key holding the leader-published state of svc.
func StateKey(svc string) string { return "cycler/" + svc + "/state" }

// AckKey is the Consul KV key where LB lbID acknowledges the generation it applied for svc.
func AckKey(svc, lbID string) string { return "cycler/" + svc + "/lb/" + lbID }

// AckPrefix is the KV prefix under which every LB's acknowledgement for svc lives.
func AckPrefix(svc string) string { return "cycler/" + svc + "/lb/" }

// Package lbdrivers defines how cyclerd's lb role talks to a load balancer.
//
// A Driver applies a backend set for a generation and reads back what the load
// balancer itself says it is serving, so a switch can be verified rather than
// assumed. Concrete drivers live in sub-packages (nginx, varnish) and are chosen
// by an explicit switch on config in the lb role.
package lbdrivers

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
)

// Backend is one app instance an LB may route to.
type Backend struct {
	// ID is the Consul service instance id.
	ID string `json:"id"`
	// Address is an IP address (v4 or v6) or a DNS hostname.
	Address string `json:"address"`
	// Port is the instance's TCP port, 1 to 65535.
	Port int `json:"port"`
}

// HostPort renders the backend as host:port, bracketing IPv6 addresses.
func (b Backend) HostPort() string {
	return net.JoinHostPort(b.Address, strconv.Itoa(b.Port))
}

// Driver applies backend sets to one load balancer.
type Driver interface {
	// Name identifies the driver in acks and status ("nginx", "varnish").
	Name() string
	// Apply makes the LB route only to backends, tagged with generation gen.
	// It is idempotent: applying the same gen and set again changes nothing.
	// On error the LB keeps serving its last good set.
	Apply(ctx context.Context, gen uint64, backends []Backend) error
	// Applied reads the generation and backend set back from the LB itself.
	Applied(ctx context.Context) (gen uint64, backends []Backend, err error)
}

// hostnameRE accepts RFC 1123 hostnames: labels of letters, digits and hyphens.
var hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// Validate reports why b cannot be rendered into an LB config, or nil. Drivers
// call it before rendering so that an odd address from Consul can never break
// the LB's configuration or inject into it.
func (b Backend) Validate() error {
	if b.Port < 1 || b.Port > 65535 {
		return fmt.Errorf("backend %q: port %d is out of range; use 1-65535", b.ID, b.Port)
	}
	if _, err := netip.ParseAddr(b.Address); err == nil {
		return nil
	}
	if len(b.Address) == 0 || len(b.Address) > 253 || !hostnameRE.MatchString(b.Address) {
		return fmt.Errorf("backend %q: address %q is neither an IP address nor a valid hostname", b.ID, b.Address)
	}
	return nil
}

// Sorted returns a copy of backends ordered by host:port then id, the canonical
// order drivers render and compare in.
func Sorted(backends []Backend) []Backend {
	out := append([]Backend(nil), backends...)
	sort.Slice(out, func(i, j int) bool {
		if hi, hj := out[i].HostPort(), out[j].HostPort(); hi != hj {
			return hi < hj
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Equal reports whether a and b hold the same backends, in any order.
func Equal(a, b []Backend) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := Sorted(a), Sorted(b)
	for i := range sa {
		if sa[i].HostPort() != sb[i].HostPort() {
			return false
		}
	}
	return true
}

package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Netns is a set of network namespaces, each joined to a bridge in the
// harness's own namespace by a veth pair, all on one private /24: the
// bridge has .1 (HostIP) and namespace i has .(i+2). Processes started
// with CyclerdOptions.Netns run inside one. Partition and Heal cut and
// restore the traffic between namespaces with blackhole routes, so a
// partitioned process still reaches the bridge address and the loopback
// ports relayed by RelayLoopback. The test's Cleanup removes everything.
type Netns struct {
	// Names are the namespaces, as `ip netns` knows them.
	Names []string
	// IPs are the namespaces' addresses, in the order of Names.
	IPs []string
	// HostIP is the bridge's address in the harness's namespace.
	HostIP string

	t      T
	bridge string

	mu        sync.Mutex // guards the fields below
	listeners []net.Listener
	cut       map[[2]int]bool // blackhole routes in place, [from, to]
}

// StartNetns creates n namespaces (n at most 250) on a bridge. It returns an
// error, and creates nothing, when the process may not make namespaces
// (not root, no CAP_NET_ADMIN, no `ip`), so a test can skip.
func StartNetns(t T, n int) (*Netns, error) {
	t.Helper()
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("netns: %d namespaces asked; give 1 to 250", n)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("netns: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netns: no `ip` command (iproute2): %w", err)
	}
	// Names and the subnet derive from the pid, so two test binaries running
	// at once do not collide; interface names must stay within 15 bytes.
	tag := strconv.Itoa(os.Getpid() % 100000)
	octet, err := freeSubnet(os.Getpid())
	if err != nil {
		return nil, err
	}
	ns := &Netns{t: t, bridge: "cycbr" + tag, HostIP: fmt.Sprintf("10.231.%d.1", octet), cut: map[[2]int]bool{}}
	t.Cleanup(ns.remove)
	steps := [][]string{
		{"link", "add", ns.bridge, "type", "bridge"},
		{"addr", "add", ns.HostIP + "/24", "dev", ns.bridge},
		{"link", "set", ns.bridge, "up"},
	}
	for i := range n {
		name := fmt.Sprintf("cyc%s-%d", tag, i)
		host, peer := fmt.Sprintf("cycv%s-%d", tag, i), fmt.Sprintf("cycp%s-%d", tag, i)
		ip := fmt.Sprintf("10.231.%d.%d", octet, i+2)
		ns.Names = append(ns.Names, name)
		ns.IPs = append(ns.IPs, ip)
		steps = append(steps,
			[]string{"netns", "add", name},
			[]string{"link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"link", "set", peer, "netns", name},
			[]string{"link", "set", host, "master", ns.bridge},
			[]string{"link", "set", host, "up"},
			[]string{"-n", name, "link", "set", "lo", "up"},
			[]string{"-n", name, "addr", "add", ip + "/24", "dev", peer},
			[]string{"-n", name, "link", "set", peer, "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// freeSubnet picks the third octet of a 10.231.X.0/24 that no route of
// this namespace uses yet, starting from seed.
func freeSubnet(seed int) (int, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("netns: ip route show: %w: %s", err, out)
	}
	for i := range 250 {
		octet := (seed+i)%250 + 1
		if !strings.Contains(string(out), fmt.Sprintf("10.231.%d.", octet)) {
			return octet, nil
		}
	}
	return 0, errors.New("netns: every 10.231.X.0/24 is in use")
}

// ip runs `ip args...`.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Partition cuts namespace i off from every other namespace, both ways,
// with blackhole routes. The bridge address (and so every relayed
// loopback port) stays reachable from i, and the harness still reaches i.
func (n *Netns) Partition(i int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for j := range n.Names {
		if j == i {
			continue
		}
		for _, p := range [][2]int{{i, j}, {j, i}} {
			if n.cut[p] {
				continue
			}
			if err := ip("-n", n.Names[p[0]], "route", "add", "blackhole", n.IPs[p[1]]+"/32"); err != nil {
				return err
			}
			n.cut[p] = true
		}
	}
	return nil
}

// Heal removes every route Partition added.
func (n *Netns) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for p := range n.cut {
		if err := ip("-n", n.Names[p[0]], "route", "del", "blackhole", n.IPs[p[1]]+"/32"); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(n.cut, p)
	}
	return errors.Join(errs...)
}

// RelayLoopback makes 127.0.0.1:port inside namespace i reach
// 127.0.0.1:port of the harness's namespace, for each of ports: a process
// in i then finds Consul, agents and apps at the loopback addresses they
// register. The relay runs in the test process and bypasses the bridge,
// so Partition does not cut it.
func (n *Netns) RelayLoopback(i int, ports ...int) error {
	for _, port := range ports {
		addr := loopback(port)
		ln, err := listenIn(n.Names[i], addr)
		if err != nil {
			return err
		}
		n.mu.Lock()
		n.listeners = append(n.listeners, ln)
		n.mu.Unlock()
		go relay(ln, addr)
	}
	return nil
}

// relay copies every connection accepted on ln to a new connection to
// addr, both ways, until ln closes.
func relay(ln net.Listener, addr string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); in.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// listenIn opens a TCP listener on addr inside the named namespace. A
// socket belongs to the namespace it was created in, so the listener keeps
// working after the thread switches back.
func listenIn(name, addr string) (net.Listener, error) {
	target, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return nil, fmt.Errorf("netns: open %s: %w", name, err)
	}
	defer target.Close()
	// setns changes only the calling thread, so the goroutine stays on it
	// until it is back in its own namespace.
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netns: open own namespace: %w", err)
	}
	defer self.Close()
	if err := setns(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netns: enter %s: %w", name, err)
	}
	ln, lerr := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err := setns(self); err != nil {
		// The thread is in the wrong namespace for good: leave it locked,
		// so the runtime ends it with this goroutine's caller instead of
		// reusing it. No child process is ever forked from it.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("netns: return from %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		return nil, fmt.Errorf("netns: listen on %s in %s: %w", addr, name, lerr)
	}
	return ln, nil
}

// setnsCalls are setns(2)'s numbers, which package syscall does not export.
var setnsCalls = map[string]uintptr{"amd64": 308, "arm64": 268, "386": 346, "arm": 375, "riscv64": 268, "ppc64le": 350, "s390x": 339}

// setns moves the calling thread into the network namespace f refers to.
func setns(f *os.File) error {
	nr, ok := setnsCalls[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("setns: unknown system call number on %s", runtime.GOARCH)
	}
	if _, _, errno := syscall.Syscall(nr, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
		return errno
	}
	return nil
}

// remove closes the relays and deletes the namespaces (which takes their
// veth ends, and so the pairs, with them) and the bridge. Processes still
// inside a namespace keep it alive until they exit; the Cleanups of
// processes started later run first.
func (n *Netns) remove() {
	n.mu.Lock()
	for _, ln := range n.listeners {
		ln.Close()
	}
	n.listeners = nil
	n.mu.Unlock()
	for _, name := range n.Names {
		if err := ip("netns", "del", name); err != nil {
			n.t.Logf("harness: %v", err)
		}
	}
	if err := ip("link", "del", n.bridge); err != nil {
		n.t.Logf("harness: %v", err)
	}
}

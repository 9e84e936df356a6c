package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts a child in its own process group (so the whole tree can be
// killed) and has the kernel send it SIGTERM if the harness process dies without
// running its cleanups (a `go test` timeout panic, a SIGKILLed lab). SIGTERM, not
// SIGKILL: an nginx master or varnish manager that is SIGKILLed leaves its workers
// running, while on SIGTERM it takes them down. Pdeathsig fires when the forking OS
// thread exits; the Go runtime keeps threads alive unless a goroutine locked to one
// exits, which the harness never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// ChildPIDs returns the pids whose parent is pid, read from /proc. nginx workers and
// the varnish cache process are children of their master.
func ChildPIDs(pid int) ([]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process exited while we looked
		}
		// The second field (comm) may hold spaces and parentheses; fields after the
		// last ')' are fixed: state, then ppid.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == pid {
			child, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			if err != nil {
				return nil, fmt.Errorf("parse pid in %s: %w", path, err)
			}
			kids = append(kids, child)
		}
	}
	return kids, nil
}

// Alive reports whether pid names a live (not zombie) process.
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

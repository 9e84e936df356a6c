// Package execdriver is the LB driver for load balancers cyclerd has no
// built-in driver for: it runs a third-party program that speaks the exec
// protocol (docs/lb-exec-protocol.md), so a new load balancer needs no
// rebuilt cyclerd and the program can be written in any language.
//
// # Why a program and not a plugin
//
// hashicorp/go-plugin was the alternative. It would add a dependency and a
// gRPC (or net/rpc) interface that, in practice, only Go can implement. The
// exec protocol is three verbs, JSON on stdin and stdout and an exit code:
// a shell script with jq can implement it, and a driver that misbehaves can
// only fail its own call, which is bounded in time and output.
//
// # The protocol, version 1
//
// cyclerd runs the configured argv plus one verb, never through a shell:
//
//	<argv...> info     stdout {"protocol":1,"name":"haproxy"}
//	<argv...> apply    stdin  {"protocol":1,"service":"web","generation":12,"backends":[...]}
//	<argv...> applied  stdin  {"protocol":1,"service":"web"}
//	                   stdout {"generation":12,"backends":[...]}
//
// New runs info once and refuses a program that speaks another protocol
// version (ErrProtocolVersion). Apply validates every backend
// (lbdrivers.Backend.Validate) and refuses an empty set (ErrEmptySet) before
// any process runs, writes the set in canonical order, and after exit 0 runs
// applied and requires the same generation and addresses back (ErrReadBack;
// IPv6 addresses compared in canonical form, ids being labels). Exit
// status 3 from apply means the LB holds a newer generation
// (ErrStaleGeneration, which is also a *CommandError); any non-zero status
// is a *CommandError that carries the last lines of the program's stderr.
// Applied parses the program's answer strictly: unknown fields are allowed
// (forward compatibility), but generation and backends are required and
// every backend must pass Validate (ErrBadOutput).
//
// # Running the program
//
// Each call runs in its own process group with a minimal fixed environment
// (PATH, LC_ALL=C, CYCLER_LB_PROTOCOL and CYCLER_LB_SERVICE), working
// directory "/", stdin /dev/null for info. When Options.Timeout passes, the
// whole process group is killed (SIGKILL) and the call fails with
// ErrTimeout. Stdout is capped at MaxStdout and the stderr kept is its last
// StderrTail bytes. Calls on one Driver run one at a time, so the program
// never sees two concurrent calls from it.
package execdriver

// Command cycler-lb-haproxy is an example third-party LB driver for cyclerd:
// it speaks exec protocol 1 (docs/lb-exec-protocol.md) and switches one
// HAProxy backend through HAProxy's runtime API, with no reload.
//
// Usage (cyclerd appends the verb):
//
//	cycler-lb-haproxy --socket /run/haproxy/admin.sock [--backend web] [--slots 8] [--slot-prefix s]
//	    [--map /etc/haproxy/cycler.map] [--drain-timeout 10s] [--timeout 20s] info|apply|applied
//
// # What haproxy.cfg must hold
//
//	global
//	    stats socket /run/haproxy/admin.sock mode 600 level admin
//	backend web
//	    http-request return status 200 content-type text/plain lf-string "%[str(cycler/web/generation),map(/etc/haproxy/cycler.map,0)]\n" if { path /__cycler/generation }
//	    server-template s 1-8 0.0.0.0:0 disabled
//
// The admin-level socket is how the driver talks to HAProxy. The
// server-template gives the backend 8 pre-allocated slots s1..s8 that start
// in maintenance. The map file (which must exist, and may be empty) holds the
// generation and the backend ids; HAProxy only loads a map that a converter
// in its config references, which the optional /__cycler/generation route
// does (any map() reference works, such as a set-var in a TCP backend).
//
// # Switching
//
// apply fills slots with `set server <backend>/<slot> addr <ip> port <port>`
// and `set server ... state ready`, and puts slots no longer wanted in maint:
// first it fills free slots (a free slot that already holds the address is
// only made ready), then it reuses retired slots one at a time (maint, addr,
// ready), and last it puts the remaining retired slots in maint. So the
// backend routes to the old set until the new one is ready and never to
// nothing (unless it has a single slot). In-flight requests to a slot put in
// maint finish.
//
// HAProxy keeps a server's connections when its address changes, so a
// request could reach the previous address over a kept-alive server
// connection. Before every address change the slot is therefore made quiet:
// put in maint (which closes its idle connections), then, once `show servers
// conn` shows nothing in flight, passed through drain back to maint to close
// the connections that in-flight requests put back in the idle pool, until
// used_cur and idle_cur are both 0 (at most --drain-timeout). With at least
// twice as many slots as the largest set, a switch never has to wait for a
// slot it has just retired.
//
// It then writes each backend's id under cycler/<backend>/id/<host:port> and
// the generation under cycler/<backend>/generation in the map (set map or add
// map), and reads the state back to check it. If a command fails before the
// generation is written, the slots are put back as they were (read again,
// since the failed command may have taken effect), so HAProxy keeps its
// previous set. Applying the stored generation and set again changes nothing.
//
// apply refuses, changing nothing: hostnames (HAProxy's `set server addr`
// takes IP addresses only) and duplicate addresses (exit status 2, a request
// it cannot accept); more backends than slots, and a backend holding a ready
// server the driver does not manage (exit status 1); a generation lower than
// the stored one (exit status 3).
//
// # Read-back
//
// applied asks HAProxy itself: `show servers state <backend>` for the
// servers not in maintenance or drain (whatever their health checks say),
// and `show map` for the generation and the ids. A ready server without a
// stored id is reported under its server name. After HAProxy restarts, the
// slots are back to maint and the map to its file, so applied reports
// generation 0 and no backends, and cyclerd applies the set again.
//
// # Limits
//
// One writer per backend: cyclerd runs the verbs of one service one at a
// time, and nothing else should move the slots. Server weights and health
// checks are whatever the server-template line says.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/cyclerhq/cycler/lbdrivers/execdriver"
)

// Exit statuses, as the exec protocol defines them.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
	exitStale = execdriver.ExitStale
)

// maxRequest bounds what is read from stdin.
const maxRequest = 4 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	socket  string
	backend string
	mapPath string
	slots   int
	prefix  string
	drain   time.Duration
	timeout time.Duration
}

var (
	backendRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,100}$`)
	prefixRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)
	mapPathRE = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)
)

// usageError is a problem with the command line or the request: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errStale is a generation older than the stored one: exit 3.
var errStale = errors.New("stale generation refused")

// run runs one verb and returns the exit status. Errors go to stderr, whose
// last lines cyclerd reports.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := runVerb(ctx, args, stdin, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "cycler-lb-haproxy:", err)
		return exitUsage
	case errors.Is(err, errStale):
		fmt.Fprintln(stderr, "cycler-lb-haproxy:", err)
		return exitStale
	default:
		fmt.Fprintln(stderr, "cycler-lb-haproxy:", err)
		return exitFail
	}
}

func runVerb(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, verb, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	api := &runtimeAPI{socket: cfg.socket}
	switch verb {
	case execdriver.VerbInfo:
		return json.NewEncoder(stdout).Encode(execdriver.Info{Protocol: execdriver.ProtocolVersion, Name: "haproxy"})
	case execdriver.VerbApply:
		var req execdriver.ApplyRequest
		if err := readRequest(stdin, &req.Protocol, &req); err != nil {
			return err
		}
		backend, err := cfg.backendFor(req.Service)
		if err != nil {
			return err
		}
		return apply(ctx, api, cfg.target(backend), req.Generation, req.Backends, stderr)
	case execdriver.VerbApplied:
		var req execdriver.AppliedRequest
		if err := readRequest(stdin, &req.Protocol, &req); err != nil {
			return err
		}
		backend, err := cfg.backendFor(req.Service)
		if err != nil {
			return err
		}
		st, err := readState(ctx, api, cfg.target(backend))
		if err != nil {
			return err
		}
		gen, backends := st.applied()
		return json.NewEncoder(stdout).Encode(execdriver.AppliedResponse{
			Protocol: execdriver.ProtocolVersion, Generation: gen, Backends: backends,
		})
	}
	return usageError{fmt.Errorf("unknown verb %q; want info, apply or applied", verb)}
}

// parseArgs reads the flags and the verb, and checks the flags so that a
// misconfigured driver already fails cyclerd's start-up (info).
func parseArgs(args []string, stderr io.Writer) (config, string, error) {
	var cfg config
	fs := flag.NewFlagSet("cycler-lb-haproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.socket, "socket", "", "HAProxy's admin-level runtime API socket (stats socket ... level admin); required")
	fs.StringVar(&cfg.backend, "backend", "", "the HAProxy backend to switch (default: the service name)")
	fs.StringVar(&cfg.mapPath, "map", "/etc/haproxy/cycler.map", "the map file, as haproxy.cfg names it, that holds generations and ids")
	fs.IntVar(&cfg.slots, "slots", 0, "use slots <prefix>1..<prefix>N, which must all exist (default: every server named <prefix><n>)")
	fs.StringVar(&cfg.prefix, "slot-prefix", "s", "the server-template prefix of the slots")
	fs.DurationVar(&cfg.drain, "drain-timeout", 10*time.Second, "how long an address change waits for the slot's connections to its previous address to end")
	fs.DurationVar(&cfg.timeout, "timeout", 20*time.Second, "bound on the whole run")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cycler-lb-haproxy --socket PATH [flags] info|apply|applied")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, "", err
		}
		return cfg, "", usageError{err}
	}
	var errs []error
	if fs.NArg() != 1 {
		errs = append(errs, fmt.Errorf("want exactly one verb (info, apply or applied) after the flags, got %q", fs.Args()))
	}
	if cfg.socket == "" {
		errs = append(errs, errors.New("--socket is required: the path of HAProxy's `stats socket ... level admin`"))
	} else if !filepath.IsAbs(cfg.socket) {
		errs = append(errs, fmt.Errorf("--socket %q must be an absolute path", cfg.socket))
	}
	if cfg.backend != "" && !backendRE.MatchString(cfg.backend) {
		errs = append(errs, fmt.Errorf("--backend %q must be 1-100 letters, digits, '.', '_', ':' or '-'", cfg.backend))
	}
	if !mapPathRE.MatchString(cfg.mapPath) || filepath.Clean(cfg.mapPath) != cfg.mapPath {
		errs = append(errs, fmt.Errorf("--map %q must be a clean absolute path of letters, digits and /._+-", cfg.mapPath))
	}
	if cfg.slots < 0 || cfg.slots > maxSlots {
		errs = append(errs, fmt.Errorf("--slots %d is out of range; use 1-%d, or 0 for every slot in the backend", cfg.slots, maxSlots))
	}
	if !prefixRE.MatchString(cfg.prefix) {
		errs = append(errs, fmt.Errorf("--slot-prefix %q must be a letter or '_' then up to 31 letters, digits, '_', '.' or '-'", cfg.prefix))
	}
	if cfg.timeout <= 0 || cfg.drain <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s and --drain-timeout %s must be positive", cfg.timeout, cfg.drain))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, "", usageError{err}
	}
	return cfg, fs.Arg(0), nil
}

// backendFor returns the backend to switch for service.
func (c config) backendFor(service string) (string, error) {
	if c.backend != "" {
		return c.backend, nil
	}
	if !backendRE.MatchString(service) {
		return "", usageError{fmt.Errorf("service %q is not a valid HAProxy backend name; name the backend with --backend", service)}
	}
	return service, nil
}

// target is what one run works on.
func (c config) target(backend string) target {
	return target{backend: backend, mapPath: c.mapPath, slots: c.slots, prefix: c.prefix, drain: c.drain}
}

// readRequest decodes the request on stdin into v and checks its protocol
// field, which decoding stores in *protocol. Unknown fields are allowed, so
// a newer cyclerd can add some.
func readRequest(stdin io.Reader, protocol *int, v any) error {
	b, err := io.ReadAll(io.LimitReader(stdin, maxRequest+1))
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if len(b) > maxRequest {
		return usageError{fmt.Errorf("request exceeds %d bytes", maxRequest)}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return usageError{fmt.Errorf("request is not valid JSON: %w", err)}
	}
	if *protocol != execdriver.ProtocolVersion {
		return usageError{fmt.Errorf("request is for exec protocol %d; this driver speaks %d", *protocol, execdriver.ProtocolVersion)}
	}
	return nil
}

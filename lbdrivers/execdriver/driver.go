package execdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// DefaultTimeout bounds one run of the program when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Options configures an exec driver.
type Options struct {
	// Command is the program and its leading arguments, like
	// ["/usr/local/bin/cycler-lb-haproxy", "--socket", "/run/haproxy/admin.sock"].
	// The verb is appended to it. A program name without a slash is looked
	// up in cyclerd's PATH once, by New. Required.
	Command []string
	// Service is the service the driver switches; the program gets it in
	// every request and in $CYCLER_LB_SERVICE. Required.
	Service string
	// Timeout bounds each run of the program; when it passes, the
	// program's process group is killed. Default DefaultTimeout.
	Timeout time.Duration
	// Logger receives the driver's logs. Default: a no-op logger.
	Logger *zap.Logger
}

// serviceRE is what a service name may be: it goes into the environment.
var serviceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// validate reports every problem with o.
func (o Options) validate() error {
	var errs []error
	if len(o.Command) == 0 || o.Command[0] == "" {
		errs = append(errs, errors.New("command is empty; name the driver program, like [\"/usr/local/bin/cycler-lb-haproxy\", \"--socket\", \"/run/haproxy/admin.sock\"]"))
	}
	for i, a := range o.Command {
		if strings.IndexByte(a, 0) >= 0 {
			errs = append(errs, fmt.Errorf("command[%d] %q contains a NUL byte", i, a))
		}
	}
	if !serviceRE.MatchString(o.Service) {
		errs = append(errs, fmt.Errorf("service %q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", o.Service))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative; use a positive duration like 30s, or 0 for the default %s", o.Timeout, DefaultTimeout))
	}
	return errors.Join(errs...)
}

// Driver applies backend sets of one service through a driver program.
// It is safe for concurrent use; calls on one Driver run one at a time.
type Driver struct {
	argv    []string
	service string
	timeout time.Duration
	env     []string
	name    string
	log     *zap.Logger

	// mu serialises runs of the program, so a read-back never interleaves
	// with a half-done apply and the program never has to lock.
	mu sync.Mutex
}

// New checks opts (reporting every problem at once), resolves the program,
// runs `info` and checks that the program speaks ProtocolVersion
// (ErrProtocolVersion if not). It does not apply anything.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("exec driver: options: %w", err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	prog, err := resolve(opts.Command[0])
	if err != nil {
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	d := &Driver{
		argv:    append([]string{prog}, opts.Command[1:]...),
		service: opts.Service,
		timeout: opts.Timeout,
		env: []string{
			"PATH=" + defaultPath,
			"LC_ALL=C",
			"CYCLER_LB_PROTOCOL=" + strconv.Itoa(ProtocolVersion),
			"CYCLER_LB_SERVICE=" + opts.Service,
		},
		log: opts.Logger.Named("lb.exec").With(zap.String("service", opts.Service), zap.String("program", prog)),
	}
	d.mu.Lock()
	out, err := d.run(ctx, VerbInfo, nil)
	d.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("exec driver %s: %w", prog, err)
	}
	info, err := parseInfo(out)
	if err != nil {
		return nil, fmt.Errorf("exec driver %s: %w", prog, err)
	}
	d.name = info.Name
	d.log = d.log.With(zap.String("driver", info.Name))
	d.log.Info("driver program ready", zap.Int("protocol", info.Protocol))
	return d, nil
}

// resolve returns the absolute path of the program: as given when it holds
// a slash (made absolute against cyclerd's working directory), else looked
// up in PATH. Programs run in "/", so a relative path would change meaning.
func resolve(prog string) (string, error) {
	p := prog
	if !strings.Contains(prog, "/") {
		var err error
		if p, err = exec.LookPath(prog); err != nil {
			return "", fmt.Errorf("program %q is not in PATH; give its absolute path: %w", prog, err)
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("program %q: %w", prog, err)
	}
	return abs, nil
}

// Name implements lbdrivers.Driver: "exec:" and the name the program gave
// in info, like "exec:haproxy".
func (d *Driver) Name() string { return "exec:" + d.name }

// Apply hands gen and backends to the program's apply verb and, when it
// exits 0, reads the set back with applied and requires the same
// generation and addresses (ErrReadBack if not). It refuses an empty set
// (ErrEmptySet) and any backend that fails Validate before running
// anything. Exit status ExitStale is ErrStaleGeneration; another non-zero
// status is a *CommandError holding the program's stderr tail. The program
// must keep the LB's previous set when it fails.
func (d *Driver) Apply(ctx context.Context, gen uint64, backends []lbdrivers.Backend) error {
	if err := checkSet(backends); err != nil {
		return fmt.Errorf("exec driver %s: apply generation %d to %s: %w", d.name, gen, d.service, err)
	}
	sorted := lbdrivers.Sorted(backends)
	req, err := json.Marshal(ApplyRequest{Protocol: ProtocolVersion, Service: d.service, Generation: gen, Backends: sorted})
	if err != nil {
		return fmt.Errorf("exec driver %s: apply generation %d to %s: encode: %w", d.name, gen, d.service, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	if _, err := d.run(ctx, VerbApply, req); err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.ExitCode == ExitStale {
			err = fmt.Errorf("%w: %w", ErrStaleGeneration, err)
		}
		return fmt.Errorf("exec driver %s: apply generation %d to %s: %w", d.name, gen, d.service, err)
	}
	g, got, err := d.applied(ctx)
	if err != nil {
		return fmt.Errorf("exec driver %s: apply generation %d to %s: read back: %w", d.name, gen, d.service, err)
	}
	if g != gen || !sameAddrs(got, sorted) {
		return fmt.Errorf("exec driver %s: apply generation %d to %s: %w: the program exited 0 but the LB serves generation %d %v, not %v",
			d.name, gen, d.service, ErrReadBack, g, hostPorts(got), hostPorts(sorted))
	}
	d.log.Info("backend set applied", zap.Uint64("generation", gen), zap.Int("backends", len(sorted)),
		zap.Duration("took", time.Since(start)))
	return nil
}

// Applied runs the program's applied verb: the generation and set the LB
// itself serves, backends in canonical order. Before the first apply the
// program reports generation 0 and no backends.
func (d *Driver) Applied(ctx context.Context) (uint64, []lbdrivers.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, got, err := d.applied(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("exec driver %s: read back %s: %w", d.name, d.service, err)
	}
	return g, got, nil
}

// applied runs the applied verb; d.mu must be held.
func (d *Driver) applied(ctx context.Context) (uint64, []lbdrivers.Backend, error) {
	req, err := json.Marshal(AppliedRequest{Protocol: ProtocolVersion, Service: d.service})
	if err != nil {
		return 0, nil, fmt.Errorf("encode: %w", err)
	}
	out, err := d.run(ctx, VerbApplied, req)
	if err != nil {
		return 0, nil, err
	}
	return parseApplied(out)
}

// checkSet refuses an empty set and reports every invalid backend, so that
// an odd address from Consul never reaches the program.
func checkSet(backends []lbdrivers.Backend) error {
	if len(backends) == 0 {
		return ErrEmptySet
	}
	var errs []error
	for _, b := range backends {
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sameAddrs reports whether a and b hold the same addresses, in any order,
// comparing IP addresses in canonical form: a program may print
// "fd00::1" for the "fd00:0::1" it was given. Ids are labels and are not
// compared.
func sameAddrs(a, b []lbdrivers.Backend) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(x lbdrivers.Backend) string {
		if ip, err := netip.ParseAddr(x.Address); err == nil {
			return netip.AddrPortFrom(ip, uint16(x.Port)).String()
		}
		return strings.ToLower(x.Address) + ":" + strconv.Itoa(x.Port)
	}
	ka := make([]string, 0, len(a))
	kb := make([]string, 0, len(b))
	for i := range a {
		ka, kb = append(ka, key(a[i])), append(kb, key(b[i]))
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// hostPorts lists a set's host:port addresses for messages.
func hostPorts(backends []lbdrivers.Backend) []string {
	out := make([]string, 0, len(backends))
	for _, b := range backends {
		out = append(out, b.HostPort())
	}
	return out
}

var _ lbdrivers.Driver = (*Driver)(nil)

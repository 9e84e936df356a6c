package varnish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
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

// DefaultKeepVCLs is how many cycler VCLs stay loaded by default: the active
// one and the one before it.
const DefaultKeepVCLs = 2

// Probe is a health probe every backend gets.
type Probe struct {
	// URL is the path probed, like "/health".
	URL string
	// Interval is the time between probes. Timeout bounds one probe.
	Interval, Timeout time.Duration
	// Threshold of the last Window probes must pass for a backend to be
	// healthy. New backends start healthy (.initial = Threshold).
	Window, Threshold int
}

// Options configures the varnish driver.
type Options struct {
	// AdminAddr is varnishd's management "host:port" (its -T). Required.
	AdminAddr string
	// SecretFile is varnishd's secret file (its -S). Required.
	SecretFile string
	// VCLDir is where generated VCL files are written; varnishd reads them
	// from there (vcl.load), so it must be readable by varnishd. Required.
	VCLDir string
	// KeepVCLs is how many cycler VCLs stay loaded, the active one
	// included. Default DefaultKeepVCLs.
	KeepVCLs int
	// Probe, when set, health-checks every backend; the director skips
	// sick ones.
	Probe *Probe
	// Include is an operator VCL file included at the end of every
	// generated VCL (caching rules and the like). It must not start with a
	// vcl version line, and must not set req.backend_hint. Optional.
	Include string
	// BanOnSwitch, when nil or true (the default), starts every generation
	// with an empty cache, so an object cached from the previous live pool
	// is never served after a switch: the generation is part of every
	// object's hash, and after vcl.use of a new generation the driver bans
	// every cached object (ban obj.status != 0). Set it to false only when
	// every pool serves the same content for a URL. See the package doc.
	BanOnSwitch *bool
	// Logger receives the driver's logs. Default: a no-op logger.
	Logger *zap.Logger
}

var (
	safePathRE = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)
	probeURLRE = regexp.MustCompile(`^/[A-Za-z0-9/._~%?&=+-]*$`)
)

// validate reports every problem with o (defaults applied).
func (o Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if host, port, err := net.SplitHostPort(o.AdminAddr); err != nil || host == "" {
		bad("admin_addr %q is not host:port; use varnishd's -T address, like 127.0.0.1:6082", o.AdminAddr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("admin_addr %q: port is not 1-65535", o.AdminAddr)
	}
	if o.SecretFile == "" {
		bad("secret_file is empty; name varnishd's -S file, like /etc/varnish/secret")
	}
	for _, p := range []struct{ field, v string }{{"vcl_dir", o.VCLDir}, {"include", o.Include}} {
		if p.v == "" && p.field == "include" {
			continue
		}
		if !safePathRE.MatchString(p.v) || filepath.Clean(p.v) != p.v {
			bad("%s %q must be a clean absolute path of letters, digits and /._+-", p.field, p.v)
		}
	}
	if o.KeepVCLs < 1 {
		bad("keep_vcls %d is too small; keep at least 1 (the active VCL)", o.KeepVCLs)
	}
	if p := o.Probe; p != nil {
		if !probeURLRE.MatchString(p.URL) {
			bad("probe url %q must be a path like /health, of letters, digits and /._~%%?&=+-", p.URL)
		}
		if p.Interval <= 0 || p.Timeout <= 0 || p.Timeout > p.Interval {
			bad("probe interval %s and timeout %s must be positive, with timeout <= interval", p.Interval, p.Timeout)
		}
		if p.Window < 1 || p.Window > 64 || p.Threshold < 1 || p.Threshold > p.Window {
			bad("probe window %d and threshold %d: need 1 <= threshold <= window <= 64", p.Window, p.Threshold)
		}
	}
	return errors.Join(errs...)
}

// bans reports whether BanOnSwitch is on (nil means on).
func (o Options) bans() bool { return o.BanOnSwitch == nil || *o.BanOnSwitch }

// Driver applies backend sets to one varnishd by loading a new VCL per
// switch. One Driver owns the VCLs named cycler_* on its varnishd.
type Driver struct {
	opts Options
	log  *zap.Logger

	// mu serialises Apply and Applied: a switch is several CLI commands,
	// and a read-back must not see half of one.
	mu sync.Mutex
}

// New checks opts, reporting every problem at once, and returns a driver.
// It does not contact varnishd.
func New(opts Options) (*Driver, error) {
	if opts.KeepVCLs == 0 {
		opts.KeepVCLs = DefaultKeepVCLs
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("varnish driver: options: %w", err)
	}
	return &Driver{opts: opts, log: opts.Logger.Named("lb.varnish")}, nil
}

// Name implements lbdrivers.Driver.
func (d *Driver) Name() string { return "varnish" }

// Apply renders a VCL for gen and backends, loads it (vcl.load), makes it
// active (vcl.use), checks the read-back, and discards old cycler VCLs beyond
// KeepVCLs. It refuses an empty or invalid set, and a generation older than
// the active VCL's (ErrStaleGeneration). A VCL varnishd refuses leaves the
// active one in place. Applying the active generation and set again loads
// nothing.
func (d *Driver) Apply(ctx context.Context, gen uint64, backends []lbdrivers.Backend) error {
	sorted, err := checkSet(backends)
	if err != nil {
		return fmt.Errorf("varnish driver: apply generation %d: %w", gen, err)
	}
	src := renderVCL(d.opts, gen, sorted)
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	c, err := dialCLI(ctx, d.opts.AdminAddr, d.opts.SecretFile)
	if err != nil {
		return fmt.Errorf("varnish driver: apply generation %d: %w", gen, err)
	}
	defer c.Close()
	name, changed, banned, err := d.apply(c, gen, sorted, src)
	if err != nil {
		return fmt.Errorf("varnish driver: apply generation %d: %w", gen, err)
	}
	if err := d.discardOld(c); err != nil {
		// The switch itself succeeded; old VCLs only cost memory.
		d.log.Warn("discard old VCLs", zap.Error(err))
	}
	d.log.Info("backend set applied", zap.Uint64("generation", gen), zap.String("vcl", name),
		zap.Int("backends", len(sorted)), zap.Bool("changed", changed), zap.Bool("cache_banned", banned),
		zap.Duration("took", time.Since(start)))
	return nil
}

// apply does the switch on an open CLI connection and returns the active
// VCL's name, whether a new one was loaded and whether the cache was banned.
func (d *Driver) apply(c *cli, gen uint64, sorted []lbdrivers.Backend, src []byte) (string, bool, bool, error) {
	vcls, err := listVCLs(c)
	if err != nil {
		return "", false, false, err
	}
	active, fromCycler := activeCycler(vcls)
	if fromCycler {
		if active.gen > gen {
			return "", false, false, fmt.Errorf("%w: active VCL %s, offered %d", ErrStaleGeneration, active, gen)
		}
		if active.gen == gen {
			cur, err := c.do("vcl.show", active.String())
			if err != nil {
				return "", false, false, err
			}
			if cur == string(src) {
				return active.String(), false, false, nil
			}
		}
	}
	name := nextName(vcls, gen)
	path := filepath.Join(d.opts.VCLDir, name.String()+".vcl")
	if err := os.MkdirAll(d.opts.VCLDir, 0o755); err != nil {
		return "", false, false, err
	}
	if err := writeAtomic(path, src); err != nil {
		return "", false, false, err
	}
	if _, err := c.do("vcl.load", name.String(), path); err != nil {
		_ = os.Remove(path)
		return "", false, false, fmt.Errorf("new VCL refused, the active one is kept: %w", err)
	}
	if _, err := c.do("vcl.use", name.String()); err != nil {
		if _, derr := c.do("vcl.discard", name.String()); derr == nil {
			_ = os.Remove(path)
		}
		return "", false, false, fmt.Errorf("activate VCL: %w", err)
	}
	// The ban comes after vcl.use: banned before it, a miss still routed
	// by the old VCL could cache an old-pool object after the ban. A load
	// within the same generation (an instance left the live pool) keeps
	// the cache, whose objects all came from the live pool.
	banned := false
	if d.opts.bans() && (!fromCycler || active.gen != gen) {
		_, err := c.do("ban", "obj.status", "!=", "0")
		if err != nil {
			// The new VCL hashes by generation, so no old object can be
			// served anyway; the ban frees their memory early. The switch
			// stands, as a failed discard of old VCLs would.
			d.log.Warn("ban objects cached under earlier generations", zap.Uint64("generation", gen), zap.Error(err))
		}
		banned = err == nil
	}
	g, got, err := readBack(c)
	if err != nil {
		return "", false, false, err
	}
	if g != gen || !slices.Equal(got, sorted) {
		return "", false, false, fmt.Errorf("%w: varnish serves generation %d %v after loading %d %v", ErrReadBack, g, got, gen, sorted)
	}
	return name.String(), true, banned, nil
}

// Applied reads the generation and set back from varnishd: the active VCL's
// name gives the generation, backend.list -j the backends it holds, and
// vcl.show their addresses. When the active VCL is not a cycler VCL (before
// the first Apply) it returns generation 0 and no backends.
func (d *Driver) Applied(ctx context.Context) (uint64, []lbdrivers.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := dialCLI(ctx, d.opts.AdminAddr, d.opts.SecretFile)
	if err != nil {
		return 0, nil, fmt.Errorf("varnish driver: read back: %w", err)
	}
	defer c.Close()
	gen, backends, err := readBack(c)
	if err != nil {
		return 0, nil, fmt.Errorf("varnish driver: read back: %w", err)
	}
	return gen, backends, nil
}

// vclEntry is one element of `vcl.list -j`.
type vclEntry struct {
	Status string `json:"status"`
	Name   string `json:"name"`
}

// listVCLs returns the loaded VCLs.
func listVCLs(c *cli) ([]vclEntry, error) {
	out, err := c.do("vcl.list", "-j")
	if err != nil {
		return nil, err
	}
	items, err := jsonItems(out)
	if err != nil {
		return nil, fmt.Errorf("parse vcl.list -j: %w", err)
	}
	var vcls []vclEntry
	for _, it := range items {
		var v vclEntry
		if err := json.Unmarshal(it, &v); err != nil {
			return nil, fmt.Errorf("parse vcl.list -j entry %s: %w", it, err)
		}
		vcls = append(vcls, v)
	}
	return vcls, nil
}

// jsonItems returns the payload of a CLI -j answer: [version, [command],
// timestamp, item...].
func jsonItems(out string) ([]json.RawMessage, error) {
	var all []json.RawMessage
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		return nil, err
	}
	if len(all) < 3 {
		return nil, fmt.Errorf("answer has %d elements, want at least 3", len(all))
	}
	return all[3:], nil
}

// activeCycler returns the active VCL if it is a cycler VCL.
func activeCycler(vcls []vclEntry) (vclName, bool) {
	for _, v := range vcls {
		if v.Status == "active" {
			return parseVCLName(v.Name)
		}
	}
	return vclName{}, false
}

// nextName returns cycler_<gen>_<n> with n one above any loaded VCL of gen.
func nextName(vcls []vclEntry, gen uint64) vclName {
	next := vclName{gen: gen, n: 1}
	for _, v := range vcls {
		if n, ok := parseVCLName(v.Name); ok && n.gen == gen && n.n >= next.n {
			next.n = n.n + 1
		}
	}
	return next
}

// readBack reports the active cycler VCL's generation and backends.
func readBack(c *cli) (uint64, []lbdrivers.Backend, error) {
	vcls, err := listVCLs(c)
	if err != nil {
		return 0, nil, err
	}
	active, ok := activeCycler(vcls)
	if !ok {
		return 0, nil, nil
	}
	src, err := c.do("vcl.show", active.String())
	if err != nil {
		return 0, nil, err
	}
	gen, defs, err := parseVCL(src)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: VCL %s: %v", ErrReadBack, active, err)
	}
	if gen != active.gen {
		return 0, nil, fmt.Errorf("%w: VCL %s records generation %d", ErrReadBack, active, gen)
	}
	out, err := c.do("backend.list", "-j", active.String()+".*")
	if err != nil {
		return 0, nil, err
	}
	items, err := jsonItems(out)
	if err != nil || len(items) != 1 {
		return 0, nil, fmt.Errorf("parse backend.list -j: %v (%d items)", err, len(items))
	}
	var listed map[string]struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(items[0], &listed); err != nil {
		return 0, nil, fmt.Errorf("parse backend.list -j: %w", err)
	}
	var backends []lbdrivers.Backend
	for full, b := range listed {
		if b.Type != "backend" {
			continue // the director
		}
		name := strings.TrimPrefix(full, active.String()+".")
		def, ok := defs[name]
		if !ok {
			return 0, nil, fmt.Errorf("%w: varnish lists backend %s that VCL %s does not define", ErrReadBack, full, active)
		}
		backends = append(backends, def)
	}
	if len(backends) != len(defs) {
		return 0, nil, fmt.Errorf("%w: VCL %s defines %d backends, varnish lists %d", ErrReadBack, active, len(defs), len(backends))
	}
	return gen, lbdrivers.Sorted(backends), nil
}

// discardOld discards loaded cycler VCLs beyond the newest KeepVCLs, never
// the active one, and removes their files.
func (d *Driver) discardOld(c *cli) error {
	vcls, err := listVCLs(c)
	if err != nil {
		return err
	}
	var names []vclName
	active := map[string]bool{}
	for _, v := range vcls {
		// A discarded VCL still in use is listed until it cools down; it
		// is already on its way out and does not count.
		if n, ok := parseVCLName(v.Name); ok && v.Status != "discarded" {
			names = append(names, n)
			active[v.Name] = v.Status == "active"
		}
	}
	names = sortedNames(names)
	var errs []error
	for i := 0; i < len(names)-d.opts.KeepVCLs; i++ {
		n := names[i].String()
		if active[n] {
			continue
		}
		if _, err := c.do("vcl.discard", n); err != nil {
			errs = append(errs, err)
			continue
		}
		path := filepath.Join(d.opts.VCLDir, n+".vcl")
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		d.log.Debug("vcl discarded", zap.String("vcl", n))
	}
	return errors.Join(errs...)
}

// writeAtomic replaces path with data through a synced temp file renamed in
// the same directory, so varnishd never reads a half-written VCL.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

var _ lbdrivers.Driver = (*Driver)(nil)

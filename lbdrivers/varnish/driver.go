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
	// object's hash, and after a switch to a new generation the driver bans
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

// Driver applies backend sets to one varnishd: by admin health when the
// active VCL holds every backend, else by loading a new VCL. One Driver owns the VCLs named cycler_* on its varnishd.
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

// Apply switches varnishd to gen and backends and checks the read-back.
// When every backend is already in the active VCL, it flips admin health
// and the generation markers and loads nothing; otherwise it loads a VCL
// with backends and the live ones before (vcl.load, health set on it,
// vcl.use) and discards old cycler VCLs beyond KeepVCLs. It refuses an
// empty or invalid set, a generation above MaxGeneration, and one older
// than varnish's (ErrStaleGeneration). A VCL varnishd refuses leaves the
// active one in place. Applying the active generation and set again
// changes nothing.
func (d *Driver) Apply(ctx context.Context, gen uint64, backends []lbdrivers.Backend) error {
	sorted, err := checkSet(backends)
	if err == nil && gen > MaxGeneration {
		err = fmt.Errorf("generation %d is above the driver's limit of %d", gen, uint64(MaxGeneration))
	}
	if err != nil {
		return fmt.Errorf("varnish driver: apply generation %d: %w", gen, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	c, err := dialCLI(ctx, d.opts.AdminAddr, d.opts.SecretFile)
	if err != nil {
		return fmt.Errorf("varnish driver: apply generation %d: %w", gen, err)
	}
	defer c.Close()
	name, how, banned, err := d.apply(c, gen, sorted)
	if err != nil {
		return fmt.Errorf("varnish driver: apply generation %d: %w", gen, err)
	}
	if how == switchLoad {
		if err := d.discardOld(c); err != nil {
			// The switch itself succeeded; old VCLs only cost memory.
			d.log.Warn("discard old VCLs", zap.Error(err))
		}
	}
	d.log.Info("backend set applied", zap.Uint64("generation", gen), zap.String("vcl", name),
		zap.Int("backends", len(sorted)), zap.Bool("changed", how != switchNone), zap.String("switch", how),
		zap.Bool("cache_banned", banned), zap.Duration("took", time.Since(start)))
	return nil
}

// How Apply switched, as logged.
const (
	switchNone = "none" // already applied
	switchFlip = "flip" // admin health and markers on the active VCL
	switchLoad = "load" // a new VCL
)

// apply does the switch on an open CLI connection and returns the active
// VCL's name, how it switched and whether the cache was banned.
func (d *Driver) apply(c *cli, gen uint64, sorted []lbdrivers.Backend) (string, string, bool, error) {
	st, fromCycler, err := readState(c)
	if errors.Is(err, ErrReadBack) {
		// The active cycler VCL or its health is not what cyclerd left
		// (edited by hand): fall back to the generation in its name for
		// the stale check and replace it with a load, as long as that
		// holds.
		d.log.Warn("active VCL unreadable, loading a new one", zap.Error(err))
		if st.vcls, err = listVCLs(c); err != nil {
			return "", "", false, err
		}
		st.vcl, fromCycler = activeCycler(st.vcls)
		if fromCycler && st.vcl.gen > gen {
			return "", "", false, fmt.Errorf("%w: active VCL %s, offered %d", ErrStaleGeneration, st.vcl, gen)
		}
		fromCycler = false // nothing of it is carried over
	} else if err != nil {
		return "", "", false, err
	}
	live := liveNames(sorted)
	genChanged := !fromCycler || st.gen != gen
	how := switchLoad
	if fromCycler {
		if st.gen > gen {
			return "", "", false, fmt.Errorf("%w: varnish serves generation %d (VCL %s), offered %d", ErrStaleGeneration, st.gen, st.vcl, gen)
		}
		if d.canFlip(st, live) {
			how = switchFlip
			if !genChanged && slices.Equal(st.live(), sorted) {
				return st.vcl.String(), switchNone, false, nil
			}
		}
	}
	name := st.vcl.String()
	if how == switchFlip {
		if err := d.flip(c, st, gen, live); err != nil {
			return "", "", false, err
		}
	} else {
		var prev []lbdrivers.Backend
		if fromCycler {
			prev = st.live()
		}
		if name, err = d.load(c, st.vcls, gen, union(sorted, prev), live); err != nil {
			return "", "", false, err
		}
	}
	// The ban frees the memory of the old generations' objects; the hash
	// already keeps them from being served. A new VCL or a flip within one
	// generation (an instance left the live pool) keeps the cache, whose
	// objects all came from the live pool.
	banned := false
	if d.opts.bans() && genChanged {
		_, err := c.do("ban", "obj.status", "!=", "0")
		if err != nil {
			// The switch stands, as a failed discard of old VCLs would.
			d.log.Warn("ban objects cached under earlier generations", zap.Uint64("generation", gen), zap.Error(err))
		}
		banned = err == nil
	}
	got, _, err := readState(c)
	if err != nil {
		return "", "", false, err
	}
	if got.gen != gen || !slices.Equal(got.live(), sorted) {
		return "", "", false, fmt.Errorf("%w: varnish serves generation %d %v after applying %d %v", ErrReadBack, got.gen, got.live(), gen, sorted)
	}
	return name, how, banned, nil
}

// canFlip reports whether st's VCL can take live by admin health alone: it
// has markers, holds every backend of live, and is what the current
// options render (else a reload picks up new options).
func (d *Driver) canFlip(st state, live map[string]bool) bool {
	if st.legacy {
		return false
	}
	all := make([]lbdrivers.Backend, 0, len(st.defs))
	for n := range live {
		if _, ok := st.defs[n]; !ok {
			return false
		}
	}
	for _, b := range st.defs {
		all = append(all, b)
	}
	return string(renderVCL(d.opts, lbdrivers.Sorted(all))) == st.src
}

// flip switches the active VCL by admin health: backends first (live
// before hidden), then the generation. Between the two, requests still
// hash with the old generation but fetch from the new pool, so no object
// of the new generation can come from the old pool.
func (d *Driver) flip(c *cli, st state, gen uint64, live map[string]bool) error {
	if err := d.setBackends(c, st.vcl.String(), st.admin, st.defs, live); err != nil {
		return fmt.Errorf("set admin health: %w", err)
	}
	if st.gen == gen {
		return nil
	}
	if err := setGeneration(c, st.vcl.String(), st.admin, gen); err != nil {
		return fmt.Errorf("set generation markers: %w", err)
	}
	return nil
}

// load loads a VCL holding all, sets its admin health (live, the others
// sick) and generation markers while it is not active yet, and makes it
// active. It returns the new VCL's name.
func (d *Driver) load(c *cli, vcls []vclEntry, gen uint64, all []lbdrivers.Backend, live map[string]bool) (string, error) {
	name := nextName(vcls, gen).String()
	path := filepath.Join(d.opts.VCLDir, name+".vcl")
	if err := os.MkdirAll(d.opts.VCLDir, 0o755); err != nil {
		return "", err
	}
	if err := writeAtomic(path, renderVCL(d.opts, all)); err != nil {
		return "", err
	}
	if _, err := c.do("vcl.load", name, path); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("new VCL refused, the active one is kept: %w", err)
	}
	defs := make(map[string]lbdrivers.Backend, len(all))
	for _, b := range all {
		defs[backendName(b)] = b
	}
	// Health is set before vcl.use, so the new VCL never goes live with a
	// hidden backend healthy or a wrong generation.
	err := d.setBackends(c, name, nil, defs, live)
	if err == nil {
		err = setGeneration(c, name, nil, gen)
	}
	if err == nil {
		_, err = c.do("vcl.use", name)
	}
	if err != nil {
		if _, derr := c.do("vcl.discard", name); derr == nil {
			_ = os.Remove(path)
		}
		return "", fmt.Errorf("activate VCL %s: %w", name, err)
	}
	return name, nil
}

// Applied reads the generation and set back from varnishd: the generation
// markers' admin health gives the generation, vcl.show the active VCL's
// backends and backend.list -j which of them take traffic. When the active
// VCL is not a cycler VCL (before the first Apply) it returns generation 0
// and no backends.
func (d *Driver) Applied(ctx context.Context) (uint64, []lbdrivers.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := dialCLI(ctx, d.opts.AdminAddr, d.opts.SecretFile)
	if err != nil {
		return 0, nil, fmt.Errorf("varnish driver: read back: %w", err)
	}
	defer c.Close()
	st, ok, err := readState(c)
	if err != nil {
		return 0, nil, fmt.Errorf("varnish driver: read back: %w", err)
	}
	if !ok {
		return 0, nil, nil
	}
	return st.gen, st.live(), nil
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

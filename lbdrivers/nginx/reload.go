package nginx

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// Poll bounds for waiting until a reload shows the new set.
const (
	pollMin = 10 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// applyReload writes the service's include, checks the whole config with
// `nginx -t`, reloads and waits until the admin location (fed by the new
// include) reports the new set. Any failure puts the previous include back,
// so the file on disk stays the one nginx serves.
func (d *Driver) applyReload(ctx context.Context, gen uint64, sorted []lbdrivers.Backend) (bool, error) {
	// Other services' drivers share nginx -t and the reload; see instanceLocks.
	defer lockInstance(d.opts.MainConfig)()
	path := d.opts.upstreamPath(d.svc)
	want := renderUpstream(d.opts, d.svc, gen, sorted)
	wantBody := encodeSet(gen, sorted)

	live, err := d.readLive(ctx)
	if err != nil {
		return false, err
	}
	old, existed, err := readIfExists(path)
	if err != nil {
		return false, err
	}
	if existed && bytes.Equal(old, want) && bytes.Equal(live, wantBody) {
		return false, nil
	}
	liveGen, _, err := decodeSet(live)
	if err != nil {
		return false, fmt.Errorf("%w: nginx reports an unreadable set: %v", ErrReadBack, err)
	}
	if liveGen > gen {
		return false, fmt.Errorf("%w: nginx serves generation %d, offered %d", ErrStaleGeneration, liveGen, gen)
	}

	if err := writeAtomic(path, want); err != nil {
		return false, err
	}
	restore := func(cause error) error {
		if rerr := restoreFunc(path, old, existed)(); rerr != nil {
			d.log.Error("restore previous include", zap.String("path", path), zap.Error(rerr))
			return fmt.Errorf("%w (and restoring %s failed: %v)", cause, path, rerr)
		}
		return cause
	}
	if err := testConfig(ctx, d.opts); err != nil {
		return false, restore(fmt.Errorf("new include refused, previous one kept: %w", err))
	}
	if err := signalReload(ctx, d.opts); err != nil {
		return false, restore(err)
	}
	if err := d.waitLive(ctx, wantBody); err != nil {
		// The master may have refused the new config at reload time (for
		// example a listen address in use); it then keeps the old one, so
		// the old include is the true description of what runs.
		return false, restore(err)
	}
	return true, nil
}

// waitLive polls the admin location until it reports want, bounded by ctx
// and ReloadTimeout.
func (d *Driver) waitLive(ctx context.Context, want []byte) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.ReloadTimeout)
	defer cancel()
	interval := pollMin
	var last []byte
	var lastErr error
	for {
		last, lastErr = d.readLive(ctx)
		if lastErr == nil && bytes.Equal(last, want) {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			gen, _, _ := decodeSet(last)
			return fmt.Errorf("reload not live after %s: nginx still reports generation %d (last error: %v); see nginx's error log: %w",
				d.opts.ReloadTimeout, gen, lastErr, ctx.Err())
		case <-t.C:
		}
		interval = min(interval*2, pollMax)
	}
}

// checkDisk compares the include on disk with the set nginx reports, and
// the include's upstream servers with the set in its own map, so a pending
// or failed reload, or a hand edit, is reported rather than hidden.
func (d *Driver) checkDisk(live []byte) error {
	path := d.opts.upstreamPath(d.svc)
	data, existed, err := readIfExists(path)
	if err != nil {
		return err
	}
	if !existed {
		return fmt.Errorf("%w: include %s is missing; run the lb bootstrap", ErrReadBack, path)
	}
	disk, servers, err := parseInclude(data)
	if err != nil {
		return fmt.Errorf("%w: include %s: %v", ErrReadBack, path, err)
	}
	if !bytes.Equal(disk, live) {
		dg, _, _ := decodeSet(disk)
		lg, _, _ := decodeSet(live)
		return fmt.Errorf("%w: include %s holds generation %d but nginx serves generation %d; the last reload did not take effect",
			ErrReadBack, path, dg, lg)
	}
	_, set, err := decodeSet(disk)
	if err != nil {
		return fmt.Errorf("%w: include %s: %v", ErrReadBack, path, err)
	}
	var want []string
	for _, b := range set {
		want = append(want, b.HostPort())
	}
	if strings.Join(want, " ") != strings.Join(servers, " ") {
		return fmt.Errorf("%w: include %s routes to %v but records %v; it was edited by hand", ErrReadBack, path, servers, want)
	}
	return nil
}

var (
	// mapDefaultRE finds the set recorded in an include's map.
	mapDefaultRE = regexp.MustCompile(`(?m)^    default "((?:[^"\\]|\\.)*)";$`)
	// serverRE finds an include's upstream servers, skipping the down
	// placeholder.
	serverRE = regexp.MustCompile(`(?m)^    server (\S+)(?: max_fails=0)?;`)
)

// parseInclude returns the encoded set recorded in a reload-mode include
// and the host:port of each upstream server, in file order.
func parseInclude(data []byte) ([]byte, []string, error) {
	m := mapDefaultRE.FindSubmatch(data)
	if m == nil {
		return nil, nil, fmt.Errorf("no recorded set (map default) found")
	}
	body := strings.NewReplacer(`\n`, "\n", `\"`, `"`, `\\`, `\`).Replace(string(m[1]))
	var servers []string
	for _, s := range serverRE.FindAllSubmatch(data, -1) {
		servers = append(servers, string(s[1]))
	}
	return []byte(body), servers, nil
}

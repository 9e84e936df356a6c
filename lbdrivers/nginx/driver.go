package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/lbdrivers"
)

// adminHeader carries the admin secret.
const adminHeader = "X-Cycler-Admin-Secret"

// maxAdminResponse bounds how much of an admin answer is read.
const maxAdminResponse = 1 << 20

// Driver applies the backend sets of one service to one nginx instance.
// It is safe for concurrent use; calls on one Driver run one at a time.
type Driver struct {
	opts   Options
	svc    string
	log    *zap.Logger
	client *http.Client
	url    string

	// mu serialises Apply and Applied of this service, so a read-back never
	// interleaves with a half-done switch.
	mu sync.Mutex
}

// New returns a driver for opts.Service on the nginx instance opts
// describes. It checks opts and reports every problem at once; it does not
// touch nginx or the disk.
func New(opts Options) (*Driver, error) {
	o := opts.withDefaults()
	err := o.validate()
	if _, ok := o.service(o.Service); !ok {
		err = errors.Join(err, fmt.Errorf("service %q is not one of the services listed in Services; add it with its listen address", o.Service))
	}
	if err != nil {
		return nil, fmt.Errorf("nginx driver: options: %w", err)
	}
	return &Driver{
		opts: o,
		svc:  o.Service,
		log:  o.Logger.Named("lb.nginx").With(zap.String("service", o.Service), zap.String("mode", string(o.Mode))),
		// Loopback only, one connection reused across calls; every call is
		// bounded by its ctx, the Timeout is a backstop.
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     30 * time.Second,
		}},
		url: "http://" + o.AdminAddr + adminPath(o.Service),
	}, nil
}

// Name implements lbdrivers.Driver.
func (d *Driver) Name() string { return "nginx" }

// Mode returns the mode the driver runs in (after detection).
func (d *Driver) Mode() Mode { return d.opts.Mode }

// Apply makes nginx route the service only to backends, tagged with gen. It
// refuses an empty set, a set with an address it cannot render safely and a
// generation older than the one nginx serves (ErrStaleGeneration); in each
// case nginx keeps its last good set. Applying the same gen and set again
// changes nothing: no PUT changes the stored set, no reload happens.
//
// Dynamic mode PUTs the set and reads it back (no reload). Reload mode
// writes the include, checks it, reloads and waits until nginx reports it.
func (d *Driver) Apply(ctx context.Context, gen uint64, backends []lbdrivers.Backend) error {
	sorted, err := checkSet(backends, d.opts.Mode == ModeDynamic)
	if err != nil {
		return fmt.Errorf("nginx driver: apply generation %d to %s: %w", gen, d.svc, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	var changed bool
	if d.opts.Mode == ModeDynamic {
		changed, err = d.applyDynamic(ctx, gen, sorted)
	} else {
		changed, err = d.applyReload(ctx, gen, sorted)
	}
	if err != nil {
		return fmt.Errorf("nginx driver: apply generation %d to %s: %w", gen, d.svc, err)
	}
	// took is the switch latency as the driver sees it, from the first
	// request to a confirmed read-back.
	d.log.Info("backend set applied", zap.Uint64("generation", gen), zap.Int("backends", len(sorted)),
		zap.Bool("changed", changed), zap.Duration("took", time.Since(start)))
	return nil
}

// Applied reads the generation and set back from nginx itself (the admin
// location). Before the first Apply it returns generation 0 and no backends.
// In reload mode it also checks that the include on disk is the one nginx
// loaded, and returns ErrReadBack if not.
func (d *Driver) Applied(ctx context.Context) (uint64, []lbdrivers.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	body, err := d.readLive(ctx)
	if err == nil && d.opts.Mode == ModeReload {
		err = d.checkDisk(body)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("nginx driver: read back %s: %w", d.svc, err)
	}
	gen, backends, err := decodeSet(body)
	if err != nil {
		return 0, nil, fmt.Errorf("nginx driver: read back %s: %w", d.svc, err)
	}
	return gen, backends, nil
}

// applyDynamic PUTs the set, then GETs it and insists on the same bytes.
// The admin location refuses an older generation with 409.
func (d *Driver) applyDynamic(ctx context.Context, gen uint64, sorted []lbdrivers.Backend) (bool, error) {
	body := encodeSet(gen, sorted)
	status, msg, err := d.admin(ctx, http.MethodPut, body)
	if err != nil {
		return false, err
	}
	switch status {
	case http.StatusOK:
	case http.StatusConflict:
		return false, fmt.Errorf("%w: %s", ErrStaleGeneration, msg)
	case http.StatusUnauthorized:
		return false, fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	default:
		return false, fmt.Errorf("admin PUT %s: status %d: %s", d.url, status, msg)
	}
	live, err := d.readLive(ctx)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(live, body) {
		return false, fmt.Errorf("%w: nginx holds %q after storing %q", ErrReadBack, live, body)
	}
	return strings.HasPrefix(msg, "stored"), nil
}

// readLive GETs the set nginx holds for the service. A 404 (dynamic mode,
// nothing stored yet) reads as an empty body.
func (d *Driver) readLive(ctx context.Context) ([]byte, error) {
	status, body, err := d.admin(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK:
		return []byte(body), nil
	case http.StatusNotFound:
		if d.opts.Mode == ModeDynamic && strings.HasPrefix(body, "no backend set stored") {
			return nil, nil
		}
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: %s", ErrUnauthorized, body)
	}
	return nil, fmt.Errorf("admin GET %s: status %d: %.200s", d.url, status, body)
}

// admin does one request to the service's admin location.
func (d *Driver) admin(ctx context.Context, method string, body []byte) (int, string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.url, rd)
	if err != nil {
		return 0, "", fmt.Errorf("admin %s: %w", method, err)
	}
	if d.opts.AdminSecret != "" {
		req.Header.Set(adminHeader, d.opts.AdminSecret)
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("admin %s (is nginx running with the cycler config?): %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return 0, "", fmt.Errorf("admin %s %s: read answer: %w", method, d.url, err)
	}
	return resp.StatusCode, string(b), nil
}

var _ lbdrivers.Driver = (*Driver)(nil)

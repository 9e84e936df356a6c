// Package client is the HTTP client for the cyclerd API, used by cyclerctl,
// agents, LB daemons and servers talking to each other.
//
// Do sends and receives JSON and turns every error envelope into an
// *api.Error, so callers branch with errors.As / errors.Is on the code:
//
//	err := c.Do(ctx, "GET", "/v1/services/web", nil, &svc)
//	if errors.Is(err, api.ErrNotFound) { ... }
//
// DoRaw is for streams and uploads; DoMeta also returns which node answered
// and at which Raft index.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cyclerhq/cycler/api"
)

// DefaultTimeout bounds a Do call when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Config configures a Client.
type Config struct {
	// Addr is the server address: host:port or http(s)://host:port. Without
	// a scheme, https is used when CACertFile or ClientCertFile is set, and
	// http otherwise.
	Addr string
	// Token is the bearer token secret. Empty sends no Authorization header
	// (enough only for /v1/health).
	Token string
	// CACertFile is a PEM file of CAs to trust for the server certificate,
	// instead of the system roots.
	CACertFile string
	// ClientCertFile and ClientKeyFile are a PEM client certificate and key,
	// for servers that require one. Set both or neither.
	ClientCertFile, ClientKeyFile string
	// Timeout bounds each Do/DoMeta call. Zero means DefaultTimeout; a
	// negative value means no timeout beyond the caller's context. DoRaw
	// is never bounded by it, since streams run long.
	Timeout time.Duration
	// HTTPClient replaces the client built from the TLS settings (tests,
	// custom transports). It cannot be combined with the TLS file fields.
	HTTPClient *http.Client
}

// Meta is what a response says about the server that produced it.
type Meta struct {
	// Node is the X-Cycler-Node header: the node that answered.
	Node string
	// Index is the X-Cycler-Index header: the Raft index a read was served
	// at, or 0 when the response has none.
	Index uint64
}

// Client calls one cyclerd API address. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	timeout time.Duration
	hc      *http.Client
	owned   bool // hc was built here, so Close may close its connections
}

// New validates cfg and returns a Client. It reads the certificate files
// now, so a bad path fails here with the file named.
func New(cfg Config) (*Client, error) {
	tlsFiles := cfg.CACertFile != "" || cfg.ClientCertFile != "" || cfg.ClientKeyFile != ""
	base, err := parseAddr(cfg.Addr, tlsFiles)
	if err != nil {
		return nil, err
	}
	c := &Client{base: base, token: cfg.Token, timeout: cfg.Timeout, hc: cfg.HTTPClient}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc != nil {
		if tlsFiles {
			return nil, errors.New("client: HTTPClient cannot be combined with CACertFile, ClientCertFile or ClientKeyFile; " +
				"configure TLS on the HTTPClient's transport instead")
		}
		return c, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if base.Scheme == "https" {
		tc, err := clientTLS(cfg)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	c.hc = &http.Client{Transport: tr}
	c.owned = true
	return c, nil
}

// parseAddr turns Config.Addr into a base URL.
func parseAddr(addr string, tlsFiles bool) (*url.URL, error) {
	if addr == "" {
		return nil, errors.New("client: server address is empty: set --addr or CYCLER_ADDR (for example 127.0.0.1:7400)")
	}
	raw := addr
	if !strings.Contains(addr, "://") {
		scheme := "http"
		if tlsFiles {
			scheme = "https"
		}
		raw = scheme + "://" + addr
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("client: server address %q: %w; use host:port or https://host:port", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: server address %q: scheme %q is not http or https", addr, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: server address %q has no host; use host:port or https://host:port", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("client: server address %q: only scheme, host, port and a path prefix are allowed", addr)
	}
	if u.Scheme == "http" && tlsFiles {
		return nil, fmt.Errorf("client: server address %q uses plain http but TLS certificate files are set; "+
			"use https:// or drop the certificate settings", addr)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// clientTLS builds the TLS settings for an https server.
func clientTLS(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("client: read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: CA certificate file %s holds no PEM certificate", cfg.CACertFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.ClientCertFile == "") != (cfg.ClientKeyFile == "") {
		return nil, fmt.Errorf("client: client certificate %q and key %q must be set together",
			cfg.ClientCertFile, cfg.ClientKeyFile)
	}
	if cfg.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client: load client certificate %s / %s: %w", cfg.ClientCertFile, cfg.ClientKeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Addr returns the base URL requests go to, such as "http://127.0.0.1:7400".
func (c *Client) Addr() string {
	return c.base.String()
}

// Close releases idle connections. The Client stays usable.
func (c *Client) Close() {
	if c.owned {
		c.hc.CloseIdleConnections()
	}
}

// Do sends in (if not nil) as JSON to method path and decodes a 2xx JSON
// response into out (if not nil). A non-2xx response with an error envelope
// is returned as *api.Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.DoMeta(ctx, method, path, in, out)
	return err
}

// DoMeta is Do that also returns the response's Meta. Meta is filled for
// every response received, error responses included (it says which node
// refused).
func (c *Client) DoMeta(ctx context.Context, method, path string, in, out any) (Meta, error) {
	var body io.Reader
	contentType := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return Meta{}, fmt.Errorf("client: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, body, contentType)
	if err != nil {
		return Meta{}, err
	}
	defer resp.Body.Close()
	meta := metaOf(resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return meta, c.responseError(method, path, resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		// Drain so the connection can be reused.
		_, _ = io.Copy(io.Discard, resp.Body)
		return meta, nil
	}
	// Not strict: a newer server may add fields an older client ignores.
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return meta, fmt.Errorf("%s %s: decode response from cyclerd at %s: %w", method, path, c.Addr(), err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return meta, nil
}

// DoRaw sends body with contentType (either may be empty) and returns the
// response for the caller to stream; the caller must close resp.Body. Only
// ctx bounds it. A non-2xx response is read, closed and returned as an error
// exactly as Do would, so a non-nil response is always a success.
func (c *Client) DoRaw(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	return c.doRaw(ctx, method, path, body, -1, contentType)
}

// DoUpload is DoRaw for a body of known size: the request carries
// "Content-Length: size" instead of chunked encoding, so the server can
// refuse an oversized upload before reading it and tell a truncated one from
// a complete one. body must deliver exactly size bytes.
func (c *Client) DoUpload(ctx context.Context, method, path string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	if size < 0 {
		return nil, fmt.Errorf("client: %s %s: upload size %d is negative", method, path, size)
	}
	return c.doRaw(ctx, method, path, body, size, contentType)
}

// doRaw is DoRaw with an optional body size (-1 when unknown).
func (c *Client) doRaw(ctx context.Context, method, path string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	resp, err := c.sendSized(ctx, method, path, body, size, contentType)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, c.responseError(method, path, resp)
	}
	return resp, nil
}

// MetaOf returns the Meta of a response obtained from DoRaw.
func MetaOf(resp *http.Response) Meta {
	return metaOf(resp)
}

func metaOf(resp *http.Response) Meta {
	m := Meta{Node: resp.Header.Get(api.HeaderNode)}
	if v := resp.Header.Get(api.HeaderIndex); v != "" {
		// A malformed index is ignored rather than failing a good response.
		m.Index, _ = strconv.ParseUint(v, 10, 64)
	}
	return m
}

// send builds and sends one request.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	return c.sendSized(ctx, method, path, body, -1, contentType)
}

// sendSized is send with the body's size when the caller knows it (-1
// otherwise; http.NewRequest works it out for in-memory bodies).
func (c *Client) sendSized(ctx context.Context, method, path string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("client: path %q must start with /", path)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: build request: %w", method, path, err)
	}
	if size >= 0 {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cycler-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, c.transportError(ctx, err))
	}
	return resp, nil
}

// transportError explains a failure to talk to the server in terms of what
// to check.
func (c *Client) transportError(ctx context.Context, err error) error {
	// *url.Error repeats the method and URL, which the caller's prefix
	// and the hint below already give.
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		verifyErr *tls.CertificateVerificationError
	)
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("no answer from cyclerd at %s in time: %w (is the server overloaded or the timeout too short?)", c.Addr(), err)
	case ctx.Err() != nil:
		return fmt.Errorf("request to cyclerd at %s cancelled: %w", c.Addr(), err)
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &verifyErr):
		return fmt.Errorf("cannot verify the TLS certificate of cyclerd at %s: %w (check --ca-cert / CYCLER_CA_CERT and the server's certificate names)", c.Addr(), err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("cyclerd at %s closed the connection without answering: %w (check the scheme of --addr and the server log)", c.Addr(), err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("cyclerd at %s answered in plain HTTP: %w (use an http:// address, or enable TLS on the server)", c.Addr(), err)
	case strings.Contains(err.Error(), "tls: "):
		// The remote TLS alert ("remote error: tls: certificate required")
		// has no exported type to match on.
		return fmt.Errorf("TLS handshake with cyclerd at %s failed: %w (if the server requires a client certificate, set --client-cert and --client-key)", c.Addr(), err)
	}
	return fmt.Errorf("cannot reach cyclerd at %s: %w (is the server running? check --addr / CYCLER_ADDR)", c.Addr(), err)
}

// responseError turns a non-2xx response into an *api.Error when it carries
// the envelope, or into a descriptive error with a snippet of the body.
func (c *Client) responseError(method, path string, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return fmt.Errorf("%s %s: HTTP %s from cyclerd at %s, and reading the body failed: %w", method, path, resp.Status, c.Addr(), err)
	}
	var env struct {
		Error *api.Error `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" {
		env.Error.Status = resp.StatusCode
		return env.Error
	}
	hint := "not a cyclerd API answer; is --addr pointing at cyclerd?"
	if resp.StatusCode == http.StatusBadRequest && bytes.Contains(body, []byte("HTTP request to an HTTPS server")) {
		hint = "the server uses TLS: use an https:// address and set --ca-cert"
	}
	return fmt.Errorf("%s %s: unexpected HTTP %s from %s (%s): %q",
		method, path, resp.Status, c.Addr(), hint, snippet(body))
}

// snippet shortens a body for an error message.
func snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// Package api is the HTTP/JSON API server base shared by every cyclerd
// listener: bearer-token authentication with scopes, optional TLS and client
// certificates, the JSON error envelope, strict request decoding, body
// limits, timeouts, panic recovery, access logging and graceful shutdown.
//
// Routes live under /v1/ and use net/http.ServeMux method patterns
// ("GET /v1/version"). Every route needs a token with a scope, except the
// built-in GET /v1/health.
//
// Lifecycle: New validates the config; Listen binds the socket (so Addr is
// known, which lets tests use "127.0.0.1:0"); Serve serves until its context
// is cancelled and then shuts down gracefully. Serve calls Listen itself if
// it has not been called. Handler exposes the routing for httptest.
package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults used when the corresponding Config field is zero.
const (
	DefaultMaxBodyBytes      int64 = 1 << 20 // 1 MiB
	DefaultReadHeaderTimeout       = 10 * time.Second
	DefaultReadTimeout             = time.Minute
	DefaultWriteTimeout            = time.Minute
	DefaultIdleTimeout             = 2 * time.Minute
	DefaultShutdownTimeout         = 10 * time.Second
	DefaultMaxHeaderBytes          = 64 << 10 // 64 KiB
)

// Config configures a Server. Zero values take the Default* constants.
type Config struct {
	// Addr is the host:port to listen on; ":0" or "127.0.0.1:0" picks a free
	// port (read it back with Server.Addr after Listen).
	Addr string
	// TLS enables HTTPS when non-nil.
	TLS *TLSConfig
	// Tokens are the accepted bearer tokens. At least one is required.
	Tokens []Token
	// MaxBodyBytes caps request bodies unless a route overrides it.
	MaxBodyBytes int64
	// Logger receives error logs and, at Debug, the access log. Nil
	// discards logs.
	Logger *zap.Logger
	// NodeName is sent in the X-Cycler-Node header of every response.
	// Empty means the host name.
	NodeName string

	// ReadHeaderTimeout bounds reading request headers (slowloris guard).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response. Streaming routes lift it for
	// themselves (see WithoutTimeouts), so it can stay short.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for the
	// next request.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown in Serve; connections
	// still open after it are closed.
	ShutdownTimeout time.Duration
	// MaxHeaderBytes caps the size of request headers.
	MaxHeaderBytes int
}

// TLSConfig enables HTTPS. The minimum protocol version is TLS 1.2.
type TLSConfig struct {
	// CertFile and KeyFile are the server's PEM certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the server require a client
	// certificate signed by one of the PEM CAs in this file, in addition to
	// the bearer token.
	ClientCAFile string
}

// Server is an API listener. Register routes with Handle before Serve.
type Server struct {
	log         *zap.Logger
	auth        *authenticator
	mux         *http.ServeMux
	node        string
	maxBody     int64
	tlsConfig   *tls.Config
	addr        string
	httpTimeout struct{ readHeader, read, write, idle, shutdown time.Duration }
	maxHeader   int

	// drain is cancelled when graceful shutdown starts. Streaming routes
	// tie their request contexts to it, because http.Server.Shutdown waits
	// for active requests and a --follow stream would otherwise never end.
	drain     context.Context
	drainStop context.CancelFunc

	// mu guards ln and served: Listen, Serve and Addr may be called from
	// different goroutines (tests read Addr while Serve runs).
	mu     sync.Mutex
	ln     net.Listener
	served bool
}

// New validates cfg and returns a Server with the built-in GET /v1/health
// route. It refuses a config with no tokens, so a misconfigured daemon
// fails to start rather than running unauthenticated.
func New(cfg Config) (*Server, error) {
	auth, err := newAuthenticator(cfg.Tokens)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{
		log:       cfg.Logger,
		auth:      auth,
		mux:       http.NewServeMux(),
		node:      cfg.NodeName,
		maxBody:   cfg.MaxBodyBytes,
		addr:      cfg.Addr,
		maxHeader: cfg.MaxHeaderBytes,
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("api")
	if s.node == "" {
		if s.node, err = os.Hostname(); err != nil {
			s.node = "unknown"
		}
	}
	var errs []error
	if s.maxBody < 0 {
		errs = append(errs, fmt.Errorf("max body bytes is %d: must be positive (or 0 for the default %d)", s.maxBody, DefaultMaxBodyBytes))
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.maxHeader < 0 {
		errs = append(errs, fmt.Errorf("max header bytes is %d: must be positive (or 0 for the default %d)", s.maxHeader, DefaultMaxHeaderBytes))
	}
	if s.maxHeader == 0 {
		s.maxHeader = DefaultMaxHeaderBytes
	}
	durations := []struct {
		name string
		give time.Duration
		def  time.Duration
		dst  *time.Duration
	}{
		{"read header timeout", cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout, &s.httpTimeout.readHeader},
		{"read timeout", cfg.ReadTimeout, DefaultReadTimeout, &s.httpTimeout.read},
		{"write timeout", cfg.WriteTimeout, DefaultWriteTimeout, &s.httpTimeout.write},
		{"idle timeout", cfg.IdleTimeout, DefaultIdleTimeout, &s.httpTimeout.idle},
		{"shutdown timeout", cfg.ShutdownTimeout, DefaultShutdownTimeout, &s.httpTimeout.shutdown},
	}
	for _, d := range durations {
		switch {
		case d.give < 0:
			errs = append(errs, fmt.Errorf("%s is %s: must be positive (or 0 for the default %s)", d.name, d.give, d.def))
		case d.give == 0:
			*d.dst = d.def
		default:
			*d.dst = d.give
		}
	}
	if cfg.TLS != nil {
		tc, err := loadTLS(cfg.TLS)
		if err != nil {
			errs = append(errs, err)
		}
		s.tlsConfig = tc
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.drain, s.drainStop = context.WithCancel(context.Background())
	s.HandlePublic("GET /v1/health", s.health)
	return s, nil
}

// loadTLS builds the server tls.Config, reading every file now so a bad path
// fails at startup with the file named.
func loadTLS(c *TLSConfig) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, fmt.Errorf("tls: cert file %q and key file %q must both be set", c.CertFile, c.KeyFile)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load key pair %s / %s: %w", c.CertFile, c.KeyFile, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA file %s holds no PEM certificate", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// health is the built-in public liveness route.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	return WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.node})
}

// Handler returns the server's full HTTP handler (routing, auth, envelope,
// logging), for use with httptest.NewServer or in front of another listener.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// Listen binds Config.Addr. It is optional: Serve calls it when needed. Call
// it first to learn the bound address (Addr) before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("api: listen on %q: %w (is another process using the port?)", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound listener address ("127.0.0.1:41234"), or "" before
// Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Serve serves HTTP (or HTTPS) until ctx is cancelled, then shuts down
// gracefully: it stops accepting, cancels streaming requests, waits up to
// ShutdownTimeout for in-flight requests, and closes what is left. It returns
// nil after a clean shutdown. A Server serves once; later calls fail.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("api: serve: server already served; create a new one with New")
	}
	s.served = true
	ln := s.ln
	s.mu.Unlock()

	// net/http's own complaints are mostly TLS handshake noise from
	// scanners and health probes, so they go to Debug.
	errLog, err := zap.NewStdLogAt(s.log.Named("http"), zap.DebugLevel)
	if err != nil {
		return fmt.Errorf("api: serve: %w", err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tlsConfig,
		ReadHeaderTimeout: s.httpTimeout.readHeader,
		ReadTimeout:       s.httpTimeout.read,
		WriteTimeout:      s.httpTimeout.write,
		IdleTimeout:       s.httpTimeout.idle,
		MaxHeaderBytes:    s.maxHeader,
		ErrorLog:          errLog,
	}
	srv.RegisterOnShutdown(s.drainStop)

	done := make(chan error, 1)
	go func() {
		if s.tlsConfig != nil {
			// The certificate is already in TLSConfig; ServeTLS adds h2 to
			// NextProtos, which a hand-wrapped tls.Listener would not.
			done <- srv.ServeTLS(ln, "", "")
			return
		}
		done <- srv.Serve(ln)
	}()
	s.log.Info("api listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", s.tlsConfig != nil))

	select {
	case err := <-done:
		// Serve only returns on its own for listener failures.
		s.drainStop()
		return fmt.Errorf("api: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	// The parent ctx is already cancelled, so the shutdown deadline needs a
	// fresh context.
	shCtx, cancel := context.WithTimeout(context.Background(), s.httpTimeout.shutdown)
	defer cancel()
	err = srv.Shutdown(shCtx)
	if err != nil {
		// Deadline hit: drop the stragglers so Serve still returns.
		_ = srv.Close()
	}
	<-done // always http.ErrServerClosed after Shutdown/Close
	if err != nil {
		return fmt.Errorf("api: graceful shutdown after %s: %w", s.httpTimeout.shutdown, err)
	}
	s.log.Info("api stopped", zap.String("addr", ln.Addr().String()))
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// shutdownTimeout bounds the graceful shutdown: in-flight requests get this long to finish.
const shutdownTimeout = 5 * time.Second

// config is what the app reports and how it misbehaves.
type config struct {
	// Listen is the host:port to listen on.
	Listen string
	// Version is the release version reported on every answer.
	Version string
	// Instance is the instance id reported on every answer.
	Instance string
	// Pool is the pool reported on every answer; it may be empty.
	Pool string
	// FailHealth makes /health answer 500.
	FailHealth bool
	// FailPath is a path that answers 500; empty means none.
	FailPath string
	// FailInstance, when set, limits FailHealth and FailPath to the
	// instance of that id, so one package can break on one host only.
	FailInstance string
}

func (c config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q is not host:port (e.g. 127.0.0.1:8080): %w", c.Listen, err))
	}
	if c.Version == "" {
		errs = append(errs, errors.New("version is empty; set -version or CYCLER_DEMO_VERSION"))
	}
	if c.Instance == "" {
		errs = append(errs, errors.New("instance is empty; set -instance or CYCLER_DEMO_INSTANCE"))
	}
	if c.FailPath != "" && !strings.HasPrefix(c.FailPath, "/") {
		errs = append(errs, fmt.Errorf("fail path %q must start with /", c.FailPath))
	}
	return errors.Join(errs...)
}

// answer is the JSON body of every non-health route.
type answer struct {
	Version  string `json:"version"`
	Instance string `json:"instance"`
	Pool     string `json:"pool"`
}

// handler returns the app's routes.
func handler(cfg config) http.Handler {
	if cfg.FailInstance != "" && cfg.FailInstance != cfg.Instance {
		cfg.FailHealth, cfg.FailPath = false, ""
	}
	body, _ := json.Marshal(answer{Version: cfg.Version, Instance: cfg.Instance, Pool: cfg.Pool})
	body = append(body, '\n')
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if cfg.FailHealth {
			http.Error(w, "unhealthy (-fail-health)", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-App-Version", cfg.Version)
		h.Set("X-App-Instance", cfg.Instance)
		h.Set("X-App-Pool", cfg.Pool)
		if cfg.FailPath != "" && r.URL.Path == cfg.FailPath {
			http.Error(w, "broken release (-fail-path)", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return mux
}

// serve listens on cfg.Listen and serves until ctx is cancelled, then shuts down
// gracefully.
func serve(ctx context.Context, cfg config, log *zap.Logger) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           handler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("version", cfg.Version),
		zap.String("instance", cfg.Instance), zap.String("pool", cfg.Pool),
		zap.Bool("fail_health", cfg.FailHealth), zap.String("fail_path", cfg.FailPath))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

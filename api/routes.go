package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"
)

// HandlerFunc is an API handler. A returned error is rendered as the JSON
// error envelope: an *Error (or an error wrapping one) as is, anything else as
// a 500 internal error whose detail is logged but not sent.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// RouteOption adjusts how one route is served.
type RouteOption func(*route)

// route is the per-route configuration built from RouteOptions.
type route struct {
	public      bool
	scope       Scope
	maxBody     int64
	noDeadlines bool
}

// WithMaxBodyBytes overrides Config.MaxBodyBytes for the route, for example
// for package uploads. n must be positive.
func WithMaxBodyBytes(n int64) RouteOption {
	if n <= 0 {
		panic(fmt.Sprintf("api: WithMaxBodyBytes(%d): limit must be positive", n))
	}
	return func(rt *route) { rt.maxBody = n }
}

// WithoutTimeouts lifts the server's ReadTimeout and WriteTimeout for the
// route (through http.ResponseController) and cancels the request context
// when graceful shutdown starts. Use it for long uploads and for streams
// such as `cyclerctl deploy --follow`; the handler must return when its
// request context is done.
func WithoutTimeouts() RouteOption {
	return func(rt *route) { rt.noDeadlines = true }
}

// Handle registers h for pattern (a ServeMux pattern with a method, such as
// "POST /v1/deploys"), reachable only with a token holding scope. It panics
// on an invalid or duplicate pattern, as ServeMux does.
func (s *Server) Handle(pattern string, scope Scope, h HandlerFunc, opts ...RouteOption) {
	if scope != ScopeOperator && scope != ScopeAgent {
		panic(fmt.Sprintf("api: Handle(%q): unknown scope %q", pattern, scope))
	}
	s.handle(pattern, route{scope: scope}, h, opts)
}

// HandleStream registers a streaming route: Handle with WithMaxBodyBytes(maxBytes)
// and WithoutTimeouts.
func (s *Server) HandleStream(pattern string, scope Scope, maxBytes int64, h HandlerFunc) {
	s.Handle(pattern, scope, h, WithMaxBodyBytes(maxBytes), WithoutTimeouts())
}

// HandlePublic registers h for pattern with no authentication at all. It
// exists for GET /v1/health (which New registers) and anything a load
// balancer or orchestrator must probe without credentials; every other route
// goes through Handle so that it is secure by default.
func (s *Server) HandlePublic(pattern string, h HandlerFunc, opts ...RouteOption) {
	s.handle(pattern, route{public: true}, h, opts)
}

func (s *Server) handle(pattern string, rt route, h HandlerFunc, opts []RouteOption) {
	if !strings.Contains(pattern, "/v1/") {
		panic(fmt.Sprintf("api: pattern %q is outside /v1/", pattern))
	}
	rt.maxBody = s.maxBody
	for _, o := range opts {
		o(&rt)
	}
	s.mux.Handle(pattern, s.wrap(rt, h))
}

// wrap turns h into an http.Handler that authenticates, limits the body,
// recovers panics and renders returned errors.
func (s *Server) wrap(rt route, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, _ := w.(*recorder)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					// The documented way to abort a response; net/http
					// handles it quietly.
					panic(v)
				}
				s.log.Error("handler panic",
					zap.String("method", r.Method), zap.String("path", r.URL.Path),
					zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
				s.renderError(w, r, rec, ErrInternal)
			}
		}()

		if !rt.public {
			name, aerr, challenge := s.auth.authenticate(r, rt.scope)
			if rec != nil {
				rec.token = name
			}
			if aerr != nil {
				if challenge != "" {
					w.Header().Set("WWW-Authenticate", challenge)
				}
				s.renderError(w, r, rec, aerr)
				return
			}
			r = r.WithContext(withTokenName(r.Context(), name))
		}
		if rt.noDeadlines {
			rc := http.NewResponseController(w)
			// ErrNotSupported only happens behind a wrapper that hides
			// the connection (httptest recorders); the route still works.
			if err := rc.SetReadDeadline(time.Time{}); err != nil {
				s.log.Debug("clear read deadline", zap.Error(err))
			}
			if err := rc.SetWriteDeadline(time.Time{}); err != nil {
				s.log.Debug("clear write deadline", zap.Error(err))
			}
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(s.drain, cancel)
			defer stop()
			r = r.WithContext(ctx)
		}
		if r.Body != nil && r.Body != http.NoBody {
			// Hand MaxBytesReader the connection's own writer: it tells
			// net/http to close the connection after an over-limit body,
			// through an unexported method our recorder cannot forward.
			bw := w
			if rec != nil {
				bw = rec.ResponseWriter
			}
			r.Body = http.MaxBytesReader(bw, r.Body, rt.maxBody)
		}
		if err := h(w, r); err != nil {
			s.renderError(w, r, rec, err)
		}
	})
}

// renderError writes err as the envelope unless the response has already
// started, in which case it can only be logged.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, rec *recorder, err error) {
	var ae *Error
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		if ae.Status < 400 || ae.Status > 599 {
			ae = &Error{Status: http.StatusInternalServerError, Code: ae.Code, Message: ae.Message}
		}
		if ae.Status >= 500 {
			s.log.Warn("request failed", zap.String("method", r.Method),
				zap.String("path", r.URL.Path), zap.Error(err))
		}
	case errors.As(err, &maxErr):
		ae = TooLarge("request body exceeds the limit of %d bytes for this route", maxErr.Limit)
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away or the server is draining; nobody reads
		// the answer, and it is not a server fault.
		s.log.Debug("request cancelled", zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.Error(err))
		ae = Unavailable("request cancelled")
	default:
		// Unclassified errors may carry paths, addresses or worse: log the
		// detail, send a generic message.
		s.log.Error("handler error", zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.Error(err))
		ae = ErrInternal
	}
	if rec != nil && rec.wroteHeader {
		s.log.Warn("error after response started", zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.String("code", ae.Code), zap.Error(err))
		return
	}
	if werr := writeError(w, ae); werr != nil {
		s.log.Debug("write error response", zap.Error(werr))
	}
}

// serveHTTP is the outermost handler: node header, access log, and JSON
// envelopes for the mux's own 404 and 405 answers.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set(HeaderNode, s.node)
	defer func() {
		s.log.Debug("request",
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", rec.statusCode()),
			zap.Duration("duration", time.Since(start)),
			zap.String("token", rec.token),
			zap.String("remote_addr", r.RemoteAddr),
			zap.Int64("bytes", rec.bytes))
	}()

	// An empty pattern means ServeMux found no route and would answer 404
	// or 405 in plain text. Run its handler into a throwaway writer to learn
	// which (and the Allow header), and answer with the envelope instead.
	if h, pattern := s.mux.Handler(r); pattern == "" {
		cw := &captureWriter{header: http.Header{}}
		h.ServeHTTP(cw, r)
		e := NotFound("no API route %s %s; see the API reference for the /v1/ routes", r.Method, r.URL.Path)
		if cw.status == http.StatusMethodNotAllowed {
			allow := cw.header.Get("Allow")
			rec.Header().Set("Allow", allow)
			e = MethodNotAllowed("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)
		}
		if err := writeError(rec, e); err != nil {
			s.log.Debug("write error response", zap.Error(err))
		}
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// recorder wraps the ResponseWriter to record the status for the access log
// and whether the header is out (after which an error can no longer be
// rendered). Unwrap lets http.ResponseController reach the connection.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	bytes       int64
	token       string
}

// WriteHeader records the final status and passes it on.
func (r *recorder) WriteHeader(code int) {
	// 1xx responses are informational; the final status comes later.
	if !r.wroteHeader && code >= 200 {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write counts the bytes sent, for the access log.
func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush supports streaming handlers that type-assert http.Flusher.
func (r *recorder) Flush() {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusCode() int {
	if !r.wroteHeader {
		// net/http sends 200 for a handler that writes nothing.
		return http.StatusOK
	}
	return r.status
}

// captureWriter records what ServeMux's fallback handler would send.
type captureWriter struct {
	header http.Header
	status int
}

// Header returns the captured header map.
func (c *captureWriter) Header() http.Header { return c.header }

// WriteHeader records the first status.
func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

// Write discards the plain-text body.
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return len(b), nil
}

var (
	_ http.ResponseWriter = (*recorder)(nil)
	_ http.Flusher        = (*recorder)(nil)
	_ http.ResponseWriter = (*captureWriter)(nil)
)

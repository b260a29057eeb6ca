package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
)

// httpMetrics counts requests and their latency by route pattern, method
// and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry) (*httpMetrics, error) {
	labels := []string{"route", "method", "status"}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eva_http_requests_total",
			Help: "HTTP requests served by the gateway, by route pattern, method and status.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eva_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern, method and status.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, labels),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.latency, err = register(reg, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector already registered
// (a second handler on the same registry shares the metrics).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("gateway metrics: %w", err)
	}
	return c, nil
}

// knownMethods are the HTTP methods that get their own metrics label; any
// other method counts as "other", so that a client sending made-up
// methods cannot grow the metrics (issue 7: 19.5 MB after a few dozen
// requests).
var knownMethods = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true}

// metricsLabels are the route and method of a request as the metrics
// count them: the route table's pattern ("ui" for a page of the web UI,
// "unmatched" for anything else) and a known method or "other". Both come
// from bounded sets, whatever a client sends.
func metricsLabels(r *http.Request, note *requestNote) (route, method string) {
	route = "unmatched"
	switch rc := chi.RouteContext(r.Context()); {
	case note.ui:
		route = "ui"
	case rc != nil && rc.RoutePattern() != "" && rc.RoutePattern() != "/*":
		route = rc.RoutePattern()
	}
	method = "other"
	if knownMethods[r.Method] {
		method = r.Method
	}
	return route, method
}

// contentSecurityPolicy is the one policy of every answer, API and web UI:
// nothing from elsewhere, no inline script or style, never in a frame.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// hstsMaxAge is how long a browser keeps to HTTPS after an answer over it:
// two years, as hstspreload.org asks.
const hstsMaxAge = "max-age=63072000; includeSubDomains"

// SecurityHeaders sets the headers that every answer of EVA carries, the
// API's and the web UI's alike: the content security policy, no framing
// (frame-ancestors and X-Frame-Options), no Referer, no type sniffing.
// The gateway sets them on every response; the web UI, a handler of its
// own, sets the same by calling this.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// securityHeaders sets SecurityHeaders, and HSTS over TLS or behind a
// TLS-terminating proxy (Config.CookieSecure, --cookie-secure, says EVA
// is served over HTTPS).
func (s *server) securityHeaders(h http.Header, r *http.Request) {
	SecurityHeaders(h)
	if r.TLS != nil || s.cfg.CookieSecure {
		h.Set("Strict-Transport-Security", hstsMaxAge)
	}
}

// requestNote is where a handler leaves the error to log on the request's
// one log line, or the outage it met; ui marks a request the web UI
// served.
type requestNote struct {
	err, outage error
	ui          bool
	// signIn is how the request signed someone in ("password", "oidc"),
	// or why a single sign-on was refused: never who.
	signIn string
	// parent is the note of the web UI's page that made this request in
	// process.
	parent *requestNote
}

// noteSignIn records how the request signed in, for its log line (and
// its page's, when the web UI made it).
func noteSignIn(r *http.Request, how string) {
	if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok {
		n.signIn = how
		if n.parent != nil {
			n.parent.signIn = how
		}
	}
}

type noteKey struct{}

// noteError records err for the request's log line.
func noteError(r *http.Request, err error) {
	if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok && n.err == nil {
		n.err = err
	}
}

// noteOutage records that the request met an unavailable dependency.
func noteOutage(r *http.Request, err error) {
	if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok && n.outage == nil {
		n.outage = err
	}
}

// edge is the outermost middleware: it recovers panics into a 500 problem,
// logs each request once (method, route pattern, status, duration; never
// bodies, query strings or who asked), counts it, and sets the headers
// every response carries.
func (s *server) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		parent, _ := r.Context().Value(noteKey{}).(*requestNote)
		note := &requestNote{parent: parent}
		r = r.WithContext(context.WithValue(r.Context(), noteKey{}, note))
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		h := ww.Header()
		s.securityHeaders(h, r)
		h.Set("Cache-Control", "no-store")
		defer func() {
			rv := recover()
			if rv != nil && rv != http.ErrAbortHandler {
				note.err = fmt.Errorf("panic: %v\n%s", rv, debug.Stack())
				if ww.Status() == 0 {
					writeProblem(ww, r, assist.Errorf(assist.CodeInternal, "panic"))
				}
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route, method := metricsLabels(r, note)
			elapsed := time.Since(start)
			code := strconv.Itoa(status)
			s.metrics.requests.WithLabelValues(route, method, code).Inc()
			s.metrics.latency.WithLabelValues(route, method, code).Observe(elapsed.Seconds())
			fields := []zap.Field{zap.String("method", method), zap.String("route", route),
				zap.Int("status", status), zap.Duration("duration", elapsed), zap.Int("bytes", ww.BytesWritten())}
			if note.signIn != "" {
				fields = append(fields, zap.String("sign_in", note.signIn))
			}
			switch {
			case note.err != nil:
				s.log.Error("request failed", append(fields, zap.Error(note.err))...)
			case note.outage != nil:
				s.outages.Failed(s.log, "dependency unavailable: requests answer 503", note.outage, time.Now(),
					zap.String("route", route))
			case status >= 500:
				s.log.Warn("request", fields...)
			case route == "/healthz" || route == "/readyz" || route == "/metrics" || isInProcess(r):
				s.log.Debug("request", fields...)
			default:
				s.log.Info("request", fields...)
			}
			if rv == http.ErrAbortHandler {
				panic(rv)
			}
		}()
		next.ServeHTTP(ww, r)
	})
}

func notFoundHandler(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, assist.Errorf(assist.CodeNotFound, "no such resource"))
}

func methodNotAllowedHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := json.Marshal(problem{Type: problemType + string(codeMethodNotAllowed), Title: http.StatusText(http.StatusMethodNotAllowed),
		Status: http.StatusMethodNotAllowed, Detail: "method " + r.Method + " is not allowed here",
		Code: codeMethodNotAllowed, Errors: []assist.FieldError{}})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusMethodNotAllowed)
	_, _ = w.Write(append(body, '\n'))
}

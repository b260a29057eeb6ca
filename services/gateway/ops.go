package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eva-org/eva/pkg/assist"
)

// serveOpenAPI is GET /v1/openapi.json, the API's OpenAPI 3.1 document,
// made from the routes when the server was made (openapi.go).
func (s *server) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.openAPI)
}

type statusJSON struct {
	Status string `json:"status"`
}

// healthz is GET /healthz: the process serves.
func (s *server) healthz(*http.Request) (statusJSON, error) {
	return statusJSON{Status: "ok"}, nil
}

// readyz is GET /readyz: the gateway's database and Deps.Ready answer.
//
// Errors: CodeUnavailable while one does not.
func (s *server) readyz(r *http.Request) (statusJSON, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	err := s.db.Ping(ctx)
	if err != nil {
		err = fmt.Errorf("gateway database: %w", err)
	} else if s.ready != nil {
		err = s.ready(ctx)
	}
	if err != nil {
		// Logged once per outage, with what is not ready.
		return statusJSON{}, &assist.Error{Code: assist.CodeUnavailable, Message: err.Error()}
	}
	return statusJSON{Status: "ready"}, nil
}

// serveMetrics is GET /metrics: Deps.Registry, unless Config.MetricsAddr
// serves it elsewhere (then 404, as for any path that serves nothing).
func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.MetricsAddr != "" {
		notFoundHandler(w, r)
		return
	}
	s.metricsHandler().ServeHTTP(w, r)
}

func (s *server) metricsHandler() http.Handler {
	s.metricsOnce.Do(func() { s.metricsHTTP = promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}) })
	return s.metricsHTTP
}

// metricsOnly is the handler of Config.MetricsAddr: GET /metrics, and 404
// for every other path.
func (s *server) metricsOnly() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("/", notFoundHandler)
	return mux
}

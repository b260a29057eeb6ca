package gateway

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eva-org/eva/pkg/assist"
)

//go:embed openapi.json
var openAPI []byte

// serveOpenAPI is GET /v1/openapi.json, the API's OpenAPI 3.1 document.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPI)
}

type statusJSON struct {
	Status string `json:"status"`
}

// healthz is GET /healthz: the process serves.
func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusJSON{Status: "ok"})
}

// readyz is GET /readyz: the gateway's database and Deps.Ready answer.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
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
		writeProblem(w, r, &assist.Error{Code: assist.CodeUnavailable, Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, statusJSON{Status: "ready"})
}

// metricsHandler serves Deps.Registry.
func (s *server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

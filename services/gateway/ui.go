package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// handler is the gateway's HTTP handler: the API's router and, with
// Deps.UI, the web UI behind the paths the API does not serve.
func (s *server) handler(d Deps) (http.Handler, error) {
	r := s.router()
	if d.UI != nil {
		ui, err := d.UI(inProcess(r))
		if err != nil {
			return nil, err
		}
		s.ui = ui
	}
	return r, nil
}

// notFound answers a path no route serves: the web UI's, outside /v1/;
// else a 404 problem.
func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	if s.ui != nil && r.URL.Path != "/v1" && !strings.HasPrefix(r.URL.Path, "/v1/") {
		if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok {
			n.ui = true
		}
		// The UI's in-process calls count sign-ins against the browser.
		s.ui.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, clientAddr(r))))
		return
	}
	notFoundHandler(w, r)
}

type inProcessKey struct{}

// inProcess is the API as the web UI calls it, in process: each call
// routes afresh (not in the routing context of the page that makes it)
// and is logged at debug level, the page's own request being the one
// logged.
func inProcess(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), chi.RouteCtxKey, (*chi.Context)(nil))
		ctx = context.WithValue(ctx, inProcessKey{}, true)
		api.ServeHTTP(w, r.WithContext(ctx))
	})
}

// isInProcess reports whether the web UI made the request.
func isInProcess(r *http.Request) bool {
	v, _ := r.Context().Value(inProcessKey{}).(bool)
	return v
}

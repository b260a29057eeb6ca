package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]openAPIOp       `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

type openAPIParam struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type openAPIOp struct {
	Roles       []string                   `json:"x-roles"`
	Public      bool                       `json:"x-public"`
	Description string                     `json:"description"`
	Parameters  []openAPIParam             `json:"parameters"`
	RequestBody *struct{}                  `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPIMatchesRouter walks the router: every route is documented,
// with its roles, and every documented operation is routed.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	h := newHarness(t, sqldbtest.SQLite(t))
	routes := map[string]route{}
	for _, rt := range h.srv.routes() {
		routes[rt.method+" "+rt.pattern] = rt
	}
	routed := map[string]bool{}
	err := chi.Walk(h.h.(chi.Routes), func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		key := method + " " + pattern
		routed[key] = true
		op, ok := doc.Paths[pattern][strings.ToLower(method)]
		if !ok {
			t.Errorf("%s is routed but not documented", key)
			return nil
		}
		rt := routes[key]
		if op.Public != rt.public || !sameSet(op.Roles, rt.roles) {
			t.Errorf("%s: documented roles %v (public %v), routed %v (public %v)", key, op.Roles, op.Public, rt.roles, rt.public)
		}
		if len(op.Responses) == 0 || !strings.Contains(op.Description, "Who:") {
			t.Errorf("%s: no responses or no Who", key)
		}
		if method == http.MethodPost && pattern != "/v1/auth/token" {
			if !slices.ContainsFunc(op.Parameters, func(p openAPIParam) bool {
				return p.Ref == "#/components/parameters/IdempotencyKey"
			}) {
				t.Errorf("%s: Idempotency-Key not documented", key)
			}
			if op.RequestBody == nil {
				t.Errorf("%s: no request body documented", key)
			}
		}
		if strings.Contains(pattern, "{id}") && op.Responses["404"] == nil {
			t.Errorf("%s: 404 not documented", key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if key := strings.ToUpper(method) + " " + path; !routed[key] {
				t.Errorf("%s is documented but not routed", key)
			}
		}
	}
	if len(routed) != len(routes) {
		t.Errorf("%d routes walked, %d declared", len(routed), len(routes))
	}
}

// TestOpenAPIRefsResolve: every $ref points at a component that exists.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	var raw any
	if err := json.Unmarshal(openAPI, &raw); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if ref, ok := x.(string); ok && k == "$ref" {
					parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
					if len(parts) != 2 || doc.Components[parts[0]][parts[1]] == nil {
						t.Errorf("unresolved $ref %s", ref)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
	// The problem schema documents the RFC 9457 members and the extra ones.
	var problemSchema struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(doc.Components["schemas"]["Problem"], &problemSchema); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "title", "status", "detail", "errors", "available_usd_cents"} {
		if problemSchema.Properties[k] == nil {
			t.Errorf("Problem lacks %s", k)
		}
	}
}

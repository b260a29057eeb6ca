package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

var update = flag.Bool("update", false, "rewrite docs/openapi.json from the routes")

// docsOpenAPI is the committed copy of the document.
var docsOpenAPI = filepath.Join("..", "..", "docs", "openapi.json")

type openAPITestDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]openAPITestOp   `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

type openAPITestParam struct {
	Ref      string `json:"$ref"`
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
}

type openAPITestOp struct {
	Roles       []string           `json:"x-roles"`
	Public      bool               `json:"x-public"`
	Addition    bool               `json:"x-addition"`
	Description string             `json:"description"`
	Parameters  []openAPITestParam `json:"parameters"`
	RequestBody *struct {
		Required bool `json:"required"`
	} `json:"requestBody"`
	Responses map[string]json.RawMessage `json:"responses"`
}

// testOpenAPI is the document the gateway makes of its routes.
func testOpenAPI(t testing.TB) []byte {
	t.Helper()
	doc, err := openAPIDoc((&server{}).routes())
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func loadOpenAPI(t testing.TB) openAPITestDoc {
	t.Helper()
	var doc openAPITestDoc
	if err := json.Unmarshal(testOpenAPI(t), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPIDocsUpToDate: docs/openapi.json is the document the code
// makes; -update (go generate ./services/gateway) rewrites it.
func TestOpenAPIDocsUpToDate(t *testing.T) {
	doc := testOpenAPI(t)
	if *update {
		if err := os.WriteFile(docsOpenAPI, doc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(docsOpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, doc) {
		t.Fatalf("docs/openapi.json differs from what the routes make: run go generate ./services/gateway")
	}
}

// TestOpenAPIMatchesRouter walks the router: every route is documented,
// with its roles, and every documented operation is routed.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	h := newHarness(t, sqldbtest.SQLite(t))
	if w := h.get("", "/v1/openapi.json"); !bytes.Equal(w.Body.Bytes(), testOpenAPI(t)) {
		t.Fatalf("the served document is not the one the routes make")
	}
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
		if method == http.MethodPost && !strings.HasPrefix(pattern, "/v1/auth/") {
			if !slices.ContainsFunc(op.Parameters, func(p openAPITestParam) bool {
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

// TestOpenAPIValid: the document holds together: every $ref resolves,
// every path parameter is declared (and only those), every schema compiles
// as JSON Schema 2020-12, and the problem schema has its members.
func TestOpenAPIValid(t *testing.T) {
	raw := testOpenAPI(t)
	doc := loadOpenAPI(t)
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
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
	walk(tree)
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	for path, ops := range doc.Paths {
		var want []string
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		for method, op := range ops {
			var got []string
			for _, p := range op.Parameters {
				if p.In == "path" {
					got = append(got, p.Name)
					if !p.Required {
						t.Errorf("%s %s: path parameter %s not required", method, path, p.Name)
					}
				}
			}
			if !sameSet(got, want) {
				t.Errorf("%s %s: path parameters %v declared, %v in the path", method, path, got, want)
			}
		}
	}
	// It is OpenAPI 3.1 by the specification's own schema, which does
	// refuse a broken one.
	if errs := notOpenAPI31(t, raw); len(errs) > 0 {
		t.Errorf("not OpenAPI 3.1:\n%s", strings.Join(errs, "\n"))
	}
	if errs := notOpenAPI31(t, bytes.Replace(raw, []byte(`"description": "a bearer token"`), []byte(`"descr": 1`), 1)); len(errs) == 0 {
		t.Errorf("a response without a description passes for OpenAPI 3.1")
	}
	c := specCompiler(t, raw)
	for name := range doc.Components["schemas"] {
		if _, err := c.Compile(specURL + "#/components/schemas/" + name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
	var problemSchema struct {
		Properties           map[string]any `json:"properties"`
		AdditionalProperties *bool          `json:"additionalProperties"`
	}
	if err := json.Unmarshal(doc.Components["schemas"]["Problem"], &problemSchema); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "title", "status", "detail", "code", "errors", "available_usd_cents"} {
		if problemSchema.Properties[k] == nil {
			t.Errorf("Problem lacks %s", k)
		}
	}
	if problemSchema.AdditionalProperties == nil || *problemSchema.AdditionalProperties {
		t.Errorf("Problem allows other properties")
	}
}

// notOpenAPI31 lists what makes raw not an OpenAPI 3.1 document, by the
// specification's JSON Schema (pb33f/libopenapi-validator).
func notOpenAPI31(t testing.TB, raw []byte) []string {
	t.Helper()
	lib, err := libopenapi.NewDocument(raw)
	if err != nil {
		return []string{err.Error()}
	}
	v, errs := validator.NewValidator(lib)
	if len(errs) > 0 {
		return []string{errors.Join(errs...).Error()}
	}
	var out []string
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			out = append(out, e.Message+": "+e.Reason)
			for _, se := range e.SchemaValidationErrors {
				out = append(out, "  "+se.Reason+" at "+se.FieldPath)
			}
		}
	}
	return out
}

// TestOpenAPIAgreesWithAPIMD: every documented operation is in
// docs/api.md's tables (or marked an addition), with apiWho's roles.
func TestOpenAPIAgreesWithAPIMD(t *testing.T) {
	doc := loadOpenAPI(t)
	listed, text := apiMDOperations(t), readAPIMD(t)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			key := strings.ToUpper(method) + " " + path
			if !listed[key] && !strings.Contains(text, "`"+key+"`") && !op.Addition {
				t.Errorf("%s is documented but not in API.md, and not marked an addition", key)
			}
			if listed[key] && op.Addition {
				t.Errorf("%s is in API.md but marked an addition", key)
			}
			want, ok := apiWho[key]
			switch {
			case !ok:
				t.Errorf("%s: not in apiWho", key)
			case slices.Equal(want, []string{"public"}):
				if !op.Public || len(op.Roles) != 0 {
					t.Errorf("%s: x-public %v, x-roles %v; want public", key, op.Public, op.Roles)
				}
			case op.Public || !sameSet(op.Roles, want):
				t.Errorf("%s: x-roles %v (public %v), want %v", key, op.Roles, op.Public, want)
			}
		}
	}
}

func readAPIMD(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// apiMDOperations reads the "method, path" column of API.md's tables:
// "GET, POST /v1/funds", "POST /v1/payouts/{id}/retry, /cancel",
// "GET /v1/audit/events?after=&limit=".
func apiMDOperations(t testing.TB) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, line := range strings.Split(readAPIMD(t), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "/") && !regexp.MustCompile(`^[A-Z]`).MatchString(strings.TrimSpace(cells[1])) {
			continue
		}
		var methods []string
		var base string
		for _, part := range strings.Split(strings.TrimSpace(cells[1]), ", ") {
			fields := strings.Fields(part)
			for _, f := range fields {
				switch {
				case f == strings.ToUpper(f) && !strings.HasPrefix(f, "/"):
					methods = append(methods, f)
				case strings.HasPrefix(f, "/v1/") || strings.HasPrefix(f, "/"):
					path, _, _ := strings.Cut(f, "?")
					if !strings.HasPrefix(path, "/v1/") && base != "" {
						path = base[:strings.LastIndex(base, "/")] + path // ", /cancel"
					}
					base = path
					for _, m := range methods {
						out[m+" "+path] = true
					}
				}
			}
		}
	}
	if !out["POST /v1/payouts/{id}/cancel"] || !out["GET /v1/funds"] || !out["POST /v1/funds"] {
		t.Fatalf("API.md's tables not read: %v", out)
	}
	return out
}

// The schema checker: every answer the handler tests get is checked
// against the document (harness.do calls checkResponse).

const specURL = "mem://eva/openapi.json"

func specCompiler(t testing.TB, raw []byte) *jsonschema.Compiler {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(specURL, doc); err != nil {
		t.Fatal(err)
	}
	return c
}

// specChecker checks requests and answers against one document.
type specChecker struct {
	doc openAPITestDoc
	c   *jsonschema.Compiler
	mu  sync.Mutex
	// compiled by JSON pointer
	schemas map[string]*jsonschema.Schema
}

func newSpecChecker(t testing.TB, raw []byte) *specChecker {
	t.Helper()
	var doc openAPITestDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return &specChecker{doc: doc, c: specCompiler(t, raw), schemas: map[string]*jsonschema.Schema{}}
}

var (
	specOnce    sync.Once
	specForTest *specChecker
)

// theSpec is the checker of the gateway's document.
func theSpec(t testing.TB) *specChecker {
	specOnce.Do(func() { specForTest = newSpecChecker(t, testOpenAPI(t)) })
	return specForTest
}

func pointer(parts ...string) string {
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1")
	}
	return "#/" + strings.Join(parts, "/")
}

func (sc *specChecker) schema(ptr string) (*jsonschema.Schema, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if s, ok := sc.schemas[ptr]; ok {
		return s, nil
	}
	s, err := sc.c.Compile(specURL + ptr)
	if err != nil {
		return nil, err
	}
	sc.schemas[ptr] = s
	return s, nil
}

func validateJSON(s *jsonschema.Schema, body []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}

// checkBody checks a request body of pattern's POST against its schema.
func (sc *specChecker) checkBody(method, pattern, body string) error {
	op, ok := sc.doc.Paths[pattern][strings.ToLower(method)]
	switch {
	case !ok:
		return fmt.Errorf("%s %s is not documented", method, pattern)
	case op.RequestBody == nil:
		return fmt.Errorf("%s %s takes no body", method, pattern)
	case strings.TrimSpace(body) == "":
		if op.RequestBody.Required {
			return fmt.Errorf("%s %s: a body is required", method, pattern)
		}
		return nil
	}
	s, err := sc.schema(pointer("paths", pattern, strings.ToLower(method), "requestBody", "content", mediaJSON, "schema"))
	if err != nil {
		return err
	}
	return validateJSON(s, []byte(body))
}

// checkResponse checks an answer to method on pattern ("" when no route
// matched) against the document: its status is documented, its media type
// too, and its body fits the schema (each line of a JSON Lines body).
func (sc *specChecker) checkResponse(method, pattern string, status int, h http.Header, body []byte) error {
	media, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil && len(body) > 0 {
		return fmt.Errorf("Content-Type %q: %v", h.Get("Content-Type"), err)
	}
	if pattern == "" {
		// No route (a 404 or 405), or a status off the contract: a problem.
		if status < 400 || media != "application/problem+json" {
			return fmt.Errorf("an unrouted request got %d %s", status, media)
		}
		s, err := sc.schema(pointer("components", "schemas", "Problem"))
		if err != nil {
			return err
		}
		return validateJSON(s, body)
	}
	op, ok := sc.doc.Paths[pattern][strings.ToLower(method)]
	if !ok {
		return fmt.Errorf("%s %s is not documented", method, pattern)
	}
	code := strconv.Itoa(status)
	rawResp, ok := op.Responses[code]
	if !ok {
		return fmt.Errorf("%s %s: status %d is not documented", method, pattern, status)
	}
	base := pointer("paths", pattern, strings.ToLower(method), "responses", code)
	var resp struct {
		Ref     string                     `json:"$ref"`
		Content map[string]json.RawMessage `json:"content"`
		Headers map[string]json.RawMessage `json:"headers"`
	}
	if err := json.Unmarshal(rawResp, &resp); err != nil {
		return err
	}
	if resp.Ref != "" {
		name := strings.TrimPrefix(resp.Ref, "#/components/responses/")
		base = pointer("components", "responses", name)
		if err := json.Unmarshal(sc.doc.Components["responses"][name], &resp); err != nil {
			return err
		}
	}
	for name := range resp.Headers {
		if name == "Location" && h.Get(name) == "" {
			return fmt.Errorf("%s %s: %d without its %s header", method, pattern, status, name)
		}
	}
	if len(resp.Content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%s %s: %d has a body, documented without", method, pattern, status)
		}
		return nil
	}
	if _, ok := resp.Content[media]; !ok {
		return fmt.Errorf("%s %s: %d answered %s, documented %v", method, pattern, status, media, keys(resp.Content))
	}
	s, err := sc.schema(base + "/" + strings.TrimPrefix(pointer("content", media, "schema"), "#/"))
	if err != nil {
		return err
	}
	switch media {
	case mediaJSON, "application/problem+json":
		return validateJSON(s, body)
	case "application/jsonl":
		sc := bufio.NewScanner(bytes.NewReader(body))
		for n := 1; sc.Scan(); n++ {
			if err := validateJSON(s, sc.Bytes()); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
		}
		return sc.Err()
	}
	return nil // text
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkResponse checks an answer of the harness's router to r.
func (h *harness) checkResponse(r *http.Request, w *httptest.ResponseRecorder) {
	h.t.Helper()
	pattern := h.h.(*chi.Mux).Find(chi.NewRouteContext(), r.Method, r.URL.Path)
	sc := theSpec(h.t)
	if slices.Contains(h.offContract, w.Code) {
		// A status the test provokes on purpose where the route never
		// answers it: the body is still a problem.
		pattern = ""
	}
	if err := sc.checkResponse(r.Method, pattern, w.Code, w.Header(), w.Body.Bytes()); err != nil {
		h.t.Errorf("%s %s → %d: the answer does not fit the OpenAPI document: %v\n%s", r.Method, r.URL, w.Code, err, w.Body)
	}
}

// TestValidBodiesFitTheirSchemas: the tests' valid bodies are valid by the
// document too.
func TestValidBodiesFitTheirSchemas(t *testing.T) {
	sc := theSpec(t)
	for pattern, body := range validBodies {
		if body == "" {
			continue // a route that takes no body
		}
		method := http.MethodPost
		switch pattern {
		case "/v1/policy":
			method = http.MethodPut
		case "/v1/admin/users/{username}":
			method = http.MethodPatch
		}
		if err := sc.checkBody(method, pattern, body); err != nil {
			t.Errorf("%s %s: %v", pattern, body, err)
		}
	}
	// Every POST route has one.
	for _, rt := range (&server{}).routes() {
		if _, ok := validBodies[rt.pattern]; rt.method == http.MethodPost && !ok {
			t.Errorf("no valid body for POST %s", rt.pattern)
		}
	}
	// The decoder takes them too: TestRoles posts them.
}

// TestSpecCheckerCatchesMismatches: the checker refuses what does not fit:
// a document whose Case schema says amount_usd_cents is a string refuses a
// real case; undocumented statuses, media types and fields are refused;
// bodies that break the request schemas are refused.
func TestSpecCheckerCatchesMismatches(t *testing.T) {
	raw := testOpenAPI(t)
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	caseSchema := tree["components"].(map[string]any)["schemas"].(map[string]any)["Case"].(map[string]any)
	caseSchema["properties"].(map[string]any)["amount_usd_cents"] = map[string]any{"type": "string"}
	wrong, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sqldbtest.SQLite(t))
	w := h.get("olu", "/v1/requests/"+dhakaCase) // checked against the right document: fits
	if err := newSpecChecker(t, wrong).checkResponse(http.MethodGet, "/v1/requests/{id}", w.Code, w.Header(), w.Body.Bytes()); err == nil {
		t.Fatalf("a case fits a document where its amount is a string")
	}
	sc := theSpec(t)
	jsonHeader := http.Header{"Content-Type": {mediaJSON}}
	for _, c := range []struct {
		name, method, pattern string
		status                int
		header                http.Header
		body                  string
	}{
		{"an undocumented status", http.MethodGet, "/v1/requests/{id}", http.StatusTeapot, jsonHeader, w.Body.String()},
		{"an unknown field", http.MethodGet, "/v1/requests/{id}", 200, jsonHeader,
			strings.Replace(w.Body.String(), `"id":`, `"surprise":1,"id":`, 1)},
		{"a missing field", http.MethodGet, "/v1/requests/{id}", 200, jsonHeader,
			strings.Replace(w.Body.String(), `"status":"submitted",`, ``, 1)},
		{"a status outside the enum", http.MethodGet, "/v1/requests/{id}", 200, jsonHeader,
			strings.Replace(w.Body.String(), `"status":"submitted"`, `"status":"lost"`, 1)},
		{"a time that is not RFC 3339", http.MethodGet, "/v1/requests/{id}", 200, jsonHeader,
			regexp.MustCompile(`"created_at":"[^"]*"`).ReplaceAllString(w.Body.String(), `"created_at":"yesterday"`)},
		{"a fractional amount", http.MethodGet, "/v1/requests/{id}", 200, jsonHeader,
			strings.Replace(w.Body.String(), `"amount_usd_cents":25000`, `"amount_usd_cents":250.5`, 1)},
		{"another media type", http.MethodGet, "/v1/requests/{id}", 200, http.Header{"Content-Type": {"text/plain"}}, w.Body.String()},
		{"a problem that is not one", http.MethodGet, "/v1/requests/{id}", 404,
			http.Header{"Content-Type": {"application/problem+json"}}, `{"title":"Not Found"}`},
		{"a 201 without Location", http.MethodPost, "/v1/funds", 201, jsonHeader,
			`{"id":"x","name":"n","allocated_usd_cents":1,"reserved_usd_cents":0,"paid_usd_cents":0,"available_usd_cents":1,"created_at":"2025-01-01T00:00:00Z"}`},
		{"an undocumented route", http.MethodGet, "/v1/nowhere", 200, jsonHeader, `{}`},
	} {
		if err := sc.checkResponse(c.method, c.pattern, c.status, c.header, []byte(c.body)); err == nil {
			t.Errorf("%s passes", c.name)
		}
	}
	for _, c := range []struct{ pattern, body string }{
		{"/v1/requests", strings.Replace(validBodies["/v1/requests"], `"critical"`, `"whenever"`, 1)},
		{"/v1/requests", `{"post":"BGD-DHAKA"}`},
		{"/v1/requests/{id}/approve", `{"amount_usd_cents":"20000","fund_id":"f"}`},
		{"/v1/requests/{id}/approve", `{"amount_usd_cents":20000,"fund_id":"f","surprise":true}`},
		{"/v1/requests/{id}/withdraw", ``},
		{"/v1/requests/{id}/claim", `{"reason":"no arguments"}`},
	} {
		if err := sc.checkBody(http.MethodPost, c.pattern, c.body); err == nil {
			t.Errorf("%s %s passes", c.pattern, c.body)
		}
	}
	// The problem of a real bad request fits.
	p := decodeProblem(t, h.post("olu", "/v1/requests/"+dhakaCase+"/approve", `{"x":1}`), http.StatusBadRequest)
	if !slices.Contains(fieldsOf(p), "x") {
		t.Fatalf("problem %+v", p)
	}
}

// TestQueryStructsParse: every route's query struct is one query.go
// parses, and the post filter's bound is the domain's.
func TestQueryStructsParse(t *testing.T) {
	for _, rt := range (&server{}).routes() {
		if rt.op.query == nil {
			continue
		}
		if _, err := queryFields(rt.op.query); err != nil {
			t.Errorf("%s %s: %v", rt.method, rt.pattern, err)
		}
	}
	fields, err := queryFields(reflect.TypeFor[listRequestsQuery]())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(fields, func(f queryField) bool { return f.name == "post" })
	if i < 0 || fields[i].maxLength != assist.MaxPost {
		t.Fatalf("post's maxLength is not assist.MaxPost: %+v", fields)
	}
	type bad struct {
		Float float64 `query:"f"`
	}
	if _, err := queryFields(reflect.TypeFor[bad]()); err == nil {
		t.Fatalf("a float parameter is accepted")
	}
	type untagged struct{ Name string }
	if _, err := queryFields(reflect.TypeFor[untagged]()); err == nil {
		t.Fatalf("an untagged field is accepted")
	}
	if _, err := openAPIDoc([]route{{method: http.MethodGet, pattern: "/x", tag: "t",
		op: handleQuery(func(*http.Request, bad) (statusJSON, error) { return statusJSON{}, nil })}}); err == nil {
		t.Fatalf("a document with a float parameter is made")
	}
	type statusJSON struct { // named as the gateway's statusJSON
		Other string `json:"other"`
	}
	if _, err := openAPIDoc([]route{
		{method: http.MethodGet, pattern: "/a", tag: "t", op: handleGet((&server{}).healthz)},
		{method: http.MethodGet, pattern: "/b", tag: "t", op: handleGet(func(*http.Request) (statusJSON, error) { return statusJSON{}, nil })},
	}); err == nil || !strings.Contains(err.Error(), "names both") {
		t.Fatalf("two types named Status: %v", err)
	}
	var ae *assist.Error
	_, err = parseQuery[bad](httptest.NewRequest(http.MethodGet, "/?f=1", nil))
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("a float parameter parses: %v", err)
	}
}

package gateway

//go:generate go test -run TestOpenAPIDocsUpToDate -update .

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/invopop/jsonschema"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/listing"
)

// The OpenAPI 3.1 document is made from the routes: paths, methods, roles
// and words from the route table (routes.go), parameters from each route's
// query struct (query.go), and the schemas of bodies and answers reflected
// from the Go types the handlers decode and write (invopop/jsonschema,
// JSON Schema 2020-12, OpenAPI 3.1's dialect). The server makes it once,
// serves it at GET /v1/openapi.json, and docs/openapi.json is a copy that a
// test keeps equal (go generate ./services/gateway rewrites it).

// enums are the string types whose values are a closed list: their
// schemas are enums, and a query parameter of such a type takes only them.
var enums = map[reflect.Type][]string{
	reflect.TypeFor[assist.State]():    strs(assist.States),
	reflect.TypeFor[assist.Category](): strs(assist.Categories),
	reflect.TypeFor[assist.Urgency]():  strs(assist.Urgencies),
	reflect.TypeFor[assist.Code]():     problemCodes(),
	reflect.TypeFor[roleName]():        assist.Roles,
	reflect.TypeFor[payoutStatus]():    strs(payoutStatuses),
	reflect.TypeFor[exportFormat]():    strs(exportFormats),
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// problemCodes are the codes a problem may carry: the error vocabulary's,
// and method_not_allowed.
func problemCodes() []string {
	codes := []string{string(codeMethodNotAllowed)}
	for c := range statusOf {
		codes = append(codes, string(c))
	}
	sort.Strings(codes)
	return codes
}

// schemaOf maps the types whose schema is not their Go kind's; nil for the
// others. It makes a new schema on each call: the reflector changes them.
func schemaOf(t reflect.Type) *jsonschema.Schema {
	if values, ok := enums[t]; ok {
		s := &jsonschema.Schema{Type: "string"}
		for _, v := range values {
			s.Enum = append(s.Enum, v)
		}
		return s
	}
	switch t {
	case reflect.TypeFor[timestamp](), timeType:
		return &jsonschema.Schema{Type: "string", Format: "date-time"}
	case reflect.TypeFor[json.RawMessage]():
		return &jsonschema.Schema{} // any JSON value
	case limitType:
		return &jsonschema.Schema{Type: "integer", Minimum: json.Number(strconv.Itoa(1)),
			Maximum: json.Number(strconv.Itoa(listing.MaxLimit)), Default: listing.DefaultLimit}
	case cursorType:
		n := uint64(maxCursor)
		return &jsonschema.Schema{Type: "string", MaxLength: &n}
	case requestIDType:
		return &jsonschema.Schema{Type: "string", Format: "uuid"}
	}
	switch t.Kind() {
	case reflect.Int64:
		return &jsonschema.Schema{Type: "integer", Format: "int64"}
	case reflect.Uint64:
		// Sequences and sizes: the query parser refuses more than MaxInt64.
		return &jsonschema.Schema{Type: "integer", Minimum: "0", Maximum: json.Number(strconv.FormatInt(math.MaxInt64, 10))}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return &jsonschema.Schema{Type: "integer", Minimum: "0"}
	}
	return nil
}

// schemaNames are the names of the schemas whose Go type's name says
// little; the others are named from their type (see schemaName).
var schemaNames = map[reflect.Type]string{
	reflect.TypeFor[noBody]():        "Empty",
	reflect.TypeFor[loginRequest]():  "TokenRequest",
	reflect.TypeFor[tokenResponse](): "Token",
	reflect.TypeFor[meResponse]():    "Me",
}

// typeDocs describe schemas.
var typeDocs = map[reflect.Type]string{
	reflect.TypeFor[caseJSON]():        "a request (case); never holds personal data",
	reflect.TypeFor[beneficiaryJSON](): "personal data: stored sealed, never shown in a case",
	reflect.TypeFor[amendBody]():       "only the fields to change",
	reflect.TypeFor[noBody]():          "no arguments: send no body, or {}",
	reflect.TypeFor[problem]():         "RFC 9457 problem details, with EVA's error code",
}

// errorResponses are the problems an operation may answer, by status,
// with the name of their response in the document.
var errorResponses = map[int]struct{ name, doc string }{
	http.StatusBadRequest:            {"BadRequest", "malformed or invalid input; errors[] names each field"},
	http.StatusUnauthorized:          {"Unauthorized", "no, bad or expired credentials"},
	http.StatusForbidden:             {"Forbidden", "your roles do not allow this"},
	http.StatusNotFound:              {"NotFound", "not found, or not visible to you"},
	http.StatusConflict:              {"Conflict", "invalid transition, lost race, already claimed, or insufficient funds with available_usd_cents"},
	http.StatusGone:                  {"Gone", "erased for good: the personal data of the request"},
	http.StatusRequestEntityTooLarge: {"TooLarge", "body larger than the limit (64 KiB by default)"},
	http.StatusUnprocessableEntity:   {"IdempotencyMismatch", "Idempotency-Key reused with another request"},
	http.StatusTooManyRequests:       {"RateLimited", "slow down; Retry-After says for how long"},
	http.StatusInternalServerError:   {"Internal", "an unexpected failure; the detail is hidden and logged"},
	http.StatusServiceUnavailable:    {"Unavailable", "a service or database the gateway needs is not answering; retry after Retry-After"},
}

// errorStatuses are the statuses of the problems op may answer: 400 with
// input to check, 401 behind a token, 403 with roles, 404 with a path id,
// 409 for a command, 413 with a body, 422 with an Idempotency-Key, 503
// behind a token (the token is in a database; then the services), 500
// everywhere, and the route's own.
func errorStatuses(rt route) []int {
	op := rt.op
	var out []int
	add := func(ok bool, status int) {
		if ok && !slices.Contains(out, status) {
			out = append(out, status)
		}
	}
	add(op.query != nil || op.body != nil || op.idempotent, http.StatusBadRequest)
	add(!rt.public, http.StatusUnauthorized)
	add(len(rt.roles) > 0, http.StatusForbidden)
	add(strings.Contains(rt.pattern, "{id}") || strings.Contains(rt.pattern, "{seq}") ||
		strings.Contains(rt.pattern, "{username}"), http.StatusNotFound)
	add(op.idempotent, http.StatusConflict)
	add(op.body != nil || op.idempotent, http.StatusRequestEntityTooLarge)
	add(op.idempotent, http.StatusUnprocessableEntity)
	add(!rt.public, http.StatusServiceUnavailable)
	add(true, http.StatusInternalServerError)
	for _, s := range op.errors {
		add(true, s)
	}
	slices.Sort(out)
	return out
}

// The document's objects (OpenAPI 3.1), as much of them as EVA uses.
type (
	openAPIDocument struct {
		OpenAPI    string                                  `json:"openapi"`
		Info       openAPIInfo                             `json:"info"`
		Tags       []openAPITag                            `json:"tags"`
		Security   []map[string][]string                   `json:"security"`
		Paths      map[string]map[string]*openAPIOperation `json:"paths"`
		Components openAPIComponents                       `json:"components"`
	}
	openAPIInfo struct {
		Title       string            `json:"title"`
		Version     string            `json:"version"`
		Description string            `json:"description"`
		License     map[string]string `json:"license"`
	}
	openAPITag struct {
		Name string `json:"name"`
	}
	openAPIOperation struct {
		Summary     string                      `json:"summary"`
		Description string                      `json:"description"`
		Tags        []string                    `json:"tags"`
		Roles       []string                    `json:"x-roles"`
		Public      bool                        `json:"x-public,omitempty"`
		Addition    bool                        `json:"x-addition,omitempty"`
		Security    *[]map[string][]string      `json:"security,omitempty"`
		Parameters  []openAPIParameter          `json:"parameters,omitempty"`
		RequestBody *openAPIRequestBody         `json:"requestBody,omitempty"`
		Responses   map[string]*openAPIResponse `json:"responses"`
	}
	openAPIParameter struct {
		Ref         string             `json:"$ref,omitempty"`
		Name        string             `json:"name,omitempty"`
		In          string             `json:"in,omitempty"`
		Required    bool               `json:"required,omitempty"`
		Description string             `json:"description,omitempty"`
		Schema      *jsonschema.Schema `json:"schema,omitempty"`
	}
	openAPIRequestBody struct {
		Required bool                     `json:"required"`
		Content  map[string]*openAPIMedia `json:"content"`
	}
	openAPIMedia struct {
		Schema *jsonschema.Schema `json:"schema"`
	}
	openAPIResponse struct {
		Ref         string                    `json:"$ref,omitempty"`
		Description string                    `json:"description,omitempty"`
		Headers     map[string]*openAPIHeader `json:"headers,omitempty"`
		Content     map[string]*openAPIMedia  `json:"content,omitempty"`
	}
	openAPIHeader struct {
		Description string             `json:"description"`
		Schema      *jsonschema.Schema `json:"schema"`
	}
	openAPIComponents struct {
		SecuritySchemes map[string]map[string]string  `json:"securitySchemes"`
		Schemas         map[string]*jsonschema.Schema `json:"schemas"`
		Parameters      map[string]*openAPIParameter  `json:"parameters"`
		Responses       map[string]*openAPIResponse   `json:"responses"`
	}
)

const (
	schemasRef   = "#/components/schemas/"
	responsesRef = "#/components/responses/"
	idemKeyRef   = "#/components/parameters/IdempotencyKey"
)

// openAPIDoc makes the document of routes, indented, with a final newline.
//
// Errors: a type the document cannot describe, two types of one name, a
// query struct that query.go cannot parse.
func openAPIDoc(routes []route) ([]byte, error) {
	g := newSchemaGen()
	doc := openAPIDocument{
		OpenAPI: "3.1.0",
		Info: openAPIInfo{
			Title:   "EVA — Emergency Victim Assistance API",
			Version: "1.0.0",
			Description: "The public HTTP contract of EVA (API.md), generated from the gateway's routes and Go types. " +
				"JSON in and out; money in integer US cents; times RFC 3339 UTC; ids UUIDv7. Errors are " +
				"application/problem+json (RFC 9457). Every operation lists the roles that may call it in x-roles " +
				"(empty: any signed-in user, or anyone when x-public). Every POST but sign-in accepts Idempotency-Key.",
			License: map[string]string{"name": "see the repository"},
		},
		Security: []map[string][]string{{"bearer": {}}, {"session": {}}},
		Paths:    map[string]map[string]*openAPIOperation{},
		Components: openAPIComponents{
			SecuritySchemes: map[string]map[string]string{
				"bearer":  {"type": "http", "scheme": "bearer", "description": "a token from POST /v1/auth/token"},
				"session": {"type": "apiKey", "in": "cookie", "name": SessionCookie, "description": "the same token as a cookie, for the web UI"},
			},
			Parameters: map[string]*openAPIParameter{
				"IdempotencyKey": {Name: IdempotencyHeader, In: "header", Schema: &jsonschema.Schema{Type: "string",
					MinLength: ptr(uint64(1)), MaxLength: ptr(uint64(maxIdempotencyKey)), Pattern: "^[!-~]+$"},
					Description: "1 to 255 visible ASCII characters. The same key and request (method, path, body) returns " +
						"the first response again, byte for byte, with Idempotent-Replayed: true; the same key with another " +
						"request is 422. Keys are per user and remembered for 30 days."},
			},
			Responses: map[string]*openAPIResponse{},
		},
	}
	problemRef := g.ref(reflect.TypeFor[problem]())
	for status, r := range errorResponses {
		resp := &openAPIResponse{Description: fmt.Sprintf("%s (%d)", r.doc, status),
			Content: map[string]*openAPIMedia{"application/problem+json": {Schema: problemRef}}}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			resp.Headers = map[string]*openAPIHeader{"Retry-After": {Description: "seconds",
				Schema: &jsonschema.Schema{Type: "integer"}}}
		}
		if status == http.StatusUnauthorized {
			resp.Headers = map[string]*openAPIHeader{"WWW-Authenticate": {Description: `Bearer realm="eva"`,
				Schema: &jsonschema.Schema{Type: "string"}}}
		}
		doc.Components.Responses[r.name] = resp
	}
	for _, rt := range routes {
		op, err := g.operation(rt)
		if err != nil {
			return nil, fmt.Errorf("openapi: %s %s: %w", rt.method, rt.pattern, err)
		}
		if doc.Paths[rt.pattern] == nil {
			doc.Paths[rt.pattern] = map[string]*openAPIOperation{}
		}
		doc.Paths[rt.pattern][strings.ToLower(rt.method)] = op
		if !slices.Contains(doc.Tags, openAPITag{Name: rt.tag}) {
			doc.Tags = append(doc.Tags, openAPITag{Name: rt.tag})
		}
	}
	schemas, err := g.components()
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	doc.Components.Schemas = schemas
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return buf.Bytes(), nil
}

func ptr[T any](v T) *T { return &v }

// who is the route's "Who:" line.
func who(rt route) string {
	switch {
	case rt.public:
		return "Who: anyone."
	case len(rt.roles) == 0:
		return "Who: any signed-in user."
	}
	return "Who: " + strings.Join(rt.roles, ", ") + "."
}

// operation documents one route.
func (g *schemaGen) operation(rt route) (*openAPIOperation, error) {
	op := rt.op
	desc := who(rt)
	if rt.doc != "" {
		desc = rt.doc + "\n\n" + desc
	}
	if rt.addition {
		desc += "\n\nAn addition to API.md."
	}
	o := &openAPIOperation{Summary: rt.summary, Description: desc, Tags: []string{rt.tag},
		Roles: slices.Clone(rt.roles), Public: rt.public, Addition: rt.addition, Responses: map[string]*openAPIResponse{}}
	if o.Roles == nil {
		o.Roles = []string{}
	}
	if rt.public {
		o.Security = &[]map[string][]string{}
	}
	if strings.Contains(rt.pattern, "{id}") {
		what := resourceOf(rt.pattern)
		o.Parameters = append(o.Parameters, openAPIParameter{Name: "id", In: "path", Required: true,
			Description: "the " + what + "'s id; anything that is not a canonical UUID is 404",
			Schema:      &jsonschema.Schema{Type: "string", Format: "uuid"}})
	}
	if strings.Contains(rt.pattern, "{seq}") {
		o.Parameters = append(o.Parameters, openAPIParameter{Name: "seq", In: "path", Required: true,
			Description: "an event's sequence in the log; 1 is the first",
			Schema:      &jsonschema.Schema{Type: "integer", Minimum: "1"}})
	}
	if strings.Contains(rt.pattern, "{username}") {
		o.Parameters = append(o.Parameters, openAPIParameter{Name: "username", In: "path", Required: true,
			Description: "the account's username; an unknown one is 404",
			Schema:      &jsonschema.Schema{Type: "string", MaxLength: ptr(uint64(maxUsername))}})
	}
	if op.idempotent {
		o.Parameters = append(o.Parameters, openAPIParameter{Ref: idemKeyRef})
	}
	if op.query != nil {
		fields, err := queryFields(op.query)
		if err != nil {
			return nil, err
		}
		for _, f := range fields {
			s := schemaOf(f.typ)
			if s == nil {
				s = &jsonschema.Schema{Type: "string"}
			}
			if f.typ == uint64PtrType {
				s = &jsonschema.Schema{Type: "integer", Minimum: "0"}
			}
			if f.maxLength > 0 {
				s.MaxLength = ptr(uint64(f.maxLength))
			}
			if f.def != "" {
				s.Default = f.def
			}
			o.Parameters = append(o.Parameters, openAPIParameter{Name: f.name, In: "query", Required: f.required,
				Description: f.doc, Schema: s})
		}
	}
	if op.body != nil {
		// A body without fields may be left out.
		o.RequestBody = &openAPIRequestBody{Required: op.body.NumField() > 0,
			Content: map[string]*openAPIMedia{mediaJSON: {Schema: g.ref(op.body)}}}
	}
	answer := rt.answer
	if answer == "" {
		answer = http.StatusText(op.status)
	}
	ok := &openAPIResponse{Description: answer}
	for _, c := range op.out {
		s := &jsonschema.Schema{Type: "string", Description: c.text}
		if c.typ != nil {
			s = g.ref(c.typ)
		} else if c.media == mediaJSON {
			s = &jsonschema.Schema{Type: "object", Description: c.text}
		}
		if ok.Content == nil {
			ok.Content = map[string]*openAPIMedia{}
		}
		ok.Content[c.media] = &openAPIMedia{Schema: s}
	}
	headers := map[string]string{}
	for k, v := range op.headers {
		headers[k] = v
	}
	if op.location {
		headers["Location"] = "where the new resource is read"
	}
	for name, doc := range headers {
		if ok.Headers == nil {
			ok.Headers = map[string]*openAPIHeader{}
		}
		ok.Headers[name] = &openAPIHeader{Description: doc, Schema: &jsonschema.Schema{Type: "string"}}
	}
	o.Responses[strconv.Itoa(op.status)] = ok
	for _, status := range errorStatuses(rt) {
		r, known := errorResponses[status]
		if !known {
			return nil, fmt.Errorf("no problem response for status %d", status)
		}
		o.Responses[strconv.Itoa(status)] = &openAPIResponse{Ref: responsesRef + r.name}
	}
	return o, nil
}

// schemaGen reflects Go types into the document's schemas.
type schemaGen struct {
	r       *jsonschema.Reflector
	defs    map[string]*jsonschema.Schema
	types   map[string]reflect.Type // by schema name
	clashes []error
}

func newSchemaGen() *schemaGen {
	g := &schemaGen{defs: map[string]*jsonschema.Schema{}, types: map[string]reflect.Type{}}
	g.r = &jsonschema.Reflector{
		Anonymous: true,
		Mapper:    schemaOf,
		Namer:     g.name,
		LookupComment: func(t reflect.Type, field string) string {
			if field == "" {
				return typeDocs[t]
			}
			return ""
		},
	}
	return g
}

// name is the schema name of a Go type ("" for types inlined where used):
// schemaNames' or the type's, capitalised, without a JSON suffix, and
// with Request for a Body suffix; a page[T] is TPage.
func (g *schemaGen) name(t reflect.Type) string {
	if t.Name() == "" || t.Kind() != reflect.Struct {
		return ""
	}
	name, ok := schemaNames[t]
	switch {
	case ok:
	case strings.HasPrefix(t.Name(), "page["):
		name = g.name(t.Field(0).Type.Elem()) + "Page"
	default:
		name = strings.TrimSuffix(t.Name(), "JSON")
		if n, found := strings.CutSuffix(name, "Body"); found {
			name = n + "Request"
		}
		r := []rune(name)
		r[0] = unicode.ToUpper(r[0])
		name = string(r)
	}
	if other, seen := g.types[name]; seen && other != t {
		g.clashes = append(g.clashes, fmt.Errorf("schema %s names both %s and %s", name, other, t))
	}
	g.types[name] = t
	return name
}

// ref reflects t and returns the schema that refers to it.
func (g *schemaGen) ref(t reflect.Type) *jsonschema.Schema {
	root := g.r.ReflectFromType(t)
	for name, def := range root.Definitions {
		g.defs[name] = def
	}
	s := *root
	s.Version, s.Definitions = "", nil
	rewriteRefs(&s)
	return &s
}

// components returns the schemas reflected so far, with the rules the
// reflector does not know applied, and every $ref pointing into the
// document's components.
//
// Errors: two types of one name.
func (g *schemaGen) components() (map[string]*jsonschema.Schema, error) {
	if err := errors.Join(g.clashes...); err != nil {
		return nil, err
	}
	for name, def := range g.defs {
		if t := g.types[name]; t != nil {
			pointerFields(t, def)
		}
		rewriteRefs(def)
	}
	return g.defs, nil
}

// pointerFields applies to the schema s of struct t what the decoder and
// encoding/json do with pointers: a pointer field is never required (the
// decoder leaves it nil when absent or null), and one without omitempty
// may be null (a nil one is written as null).
func pointerFields(t reflect.Type, s *jsonschema.Schema) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			pointerFields(f.Type, s)
			continue
		}
		if !f.IsExported() || name == "-" || f.Type.Kind() != reflect.Pointer {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s.Required = slices.DeleteFunc(s.Required, func(r string) bool { return r == name })
		if prop, ok := s.Properties.Get(name); ok && !slices.Contains(strings.Split(opts, ","), "omitempty") {
			nullable := &jsonschema.Schema{Description: prop.Description, OneOf: []*jsonschema.Schema{prop, {Type: "null"}}}
			prop.Description = ""
			s.Properties.Set(name, nullable)
		}
	}
}

// rewriteRefs points the $refs of s and its subschemas at the components.
func rewriteRefs(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if name, ok := strings.CutPrefix(s.Ref, "#/$defs/"); ok {
		s.Ref = schemasRef + name
	}
	for _, sub := range slices.Concat(s.AllOf, s.AnyOf, s.OneOf, s.PrefixItems,
		[]*jsonschema.Schema{s.Not, s.Items, s.AdditionalProperties, s.Contains, s.If, s.Then, s.Else}) {
		rewriteRefs(sub)
	}
	if s.Properties != nil {
		for sub := range s.Properties.ValuesFromOldest() {
			rewriteRefs(sub)
		}
	}
	for _, sub := range s.PatternProperties {
		rewriteRefs(sub)
	}
}

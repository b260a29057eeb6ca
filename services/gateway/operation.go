package gateway

import (
	"net/http"
	"reflect"
)

// operation is what a route does: its handler, and the Go types that
// handler reads and writes, from which the OpenAPI document describes the
// route (openapi.go). The constructors below (handleQuery, handleGet,
// handleCommand, handleCreate, handleSelfIdempotent, handlePlain) take a
// typed function and make both, so that the types documented are the types
// decoded and written.
type operation struct {
	handler http.HandlerFunc
	// query is the struct of the query parameters (query.go); nil or
	// noQuery: none.
	query reflect.Type
	// body is the request body's type; nil: none. A body type without
	// fields may be sent empty.
	body reflect.Type
	// status is the success status; out its bodies by media type (none for
	// 204).
	status int
	out    []content
	// location: the success answer has a Location header.
	location bool
	// idempotent: the operation takes an Idempotency-Key.
	idempotent bool
	// errors are statuses it may answer besides those its shape implies
	// (openapi.go's errorStatuses).
	errors []int
	// headers are response headers of the success answer, by name, with
	// what they hold.
	headers map[string]string
}

// content is one media type of an answer: JSON of a Go type, or text.
type content struct {
	media string
	typ   reflect.Type // nil: text, described by text
	text  string
}

const mediaJSON = "application/json"

// bodiless is the In of an operation that reads no body.
type bodiless struct{}

// newOperation describes an operation that reads the query Q (noQuery:
// none) and the body In (bodiless: none), and answers status with a JSON
// Out.
func newOperation[Q, In, Out any](status int) operation {
	op := operation{status: status, out: []content{{media: mediaJSON, typ: reflect.TypeFor[Out]()}}}
	if q := reflect.TypeFor[Q](); q != reflect.TypeFor[noQuery]() {
		op.query = q
	}
	if b := reflect.TypeFor[In](); b != reflect.TypeFor[bodiless]() {
		op.body = b
	}
	return op
}

// handleQuery makes a GET route out of do: the query is parsed into a Q
// (400 naming the first bad parameter, and do is not called), do's value
// is the 200 answer, its error the problem.
func handleQuery[Q, Out any](do func(r *http.Request, q Q) (Out, error)) operation {
	op := newOperation[Q, bodiless, Out](http.StatusOK)
	op.handler = func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery[Q](r)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		v, err := do(r, q)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
	return op
}

// handleGet is handleQuery for a route without query parameters.
func handleGet[Out any](do func(r *http.Request) (Out, error)) operation {
	return handleQuery(func(r *http.Request, _ noQuery) (Out, error) { return do(r) })
}

// handlePlain makes a POST route that is not a command (no
// Idempotency-Key) out of do: the query is parsed into a Q, the body read
// and decoded strictly into an In, and do's value is the 200 answer. do
// gets the ResponseWriter to set headers (a cookie), never to write.
func handlePlain[Q, In, Out any](s *server, do func(w http.ResponseWriter, r *http.Request, q Q, in In) (Out, error)) operation {
	op := newOperation[Q, In, Out](http.StatusOK)
	op.handler = func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery[Q](r)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		_, in, err := readRequest[In](r, s.cfg.MaxBodyBytes)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		v, err := do(w, r, q, in)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
	return op
}

// rawOperation is a handler that writes its own answer (a stream, text,
// no content): the route declares what it answers, and the tests check
// the answers against it.
func rawOperation(h http.HandlerFunc, status int, out ...content) operation {
	return operation{handler: h, status: status, out: out}
}

// withQuery declares the query struct Q that a raw handler parses.
func withQuery[Q any](op operation) operation {
	op.query = reflect.TypeFor[Q]()
	return op
}

// alsoAnswers adds statuses the operation may answer besides those its
// shape implies.
func (op operation) alsoAnswers(statuses ...int) operation {
	op.errors = append(op.errors, statuses...)
	return op
}

// withHeader documents a header of the success answer.
func (op operation) withHeader(name, doc string) operation {
	h := map[string]string{name: doc}
	for k, v := range op.headers {
		h[k] = v
	}
	op.headers = h
	return op
}

package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/eva-org/eva/pkg/assist"
)

// statusOf maps the error vocabulary to HTTP, once (STYLE.md habit 2).
var statusOf = map[assist.Code]int{
	assist.CodeInvalid:             http.StatusBadRequest,
	assist.CodeUnauthenticated:     http.StatusUnauthorized,
	assist.CodeForbidden:           http.StatusForbidden,
	assist.CodeNotFound:            http.StatusNotFound,
	assist.CodeGone:                http.StatusGone,
	assist.CodeConflict:            http.StatusConflict,
	assist.CodeInsufficientFunds:   http.StatusConflict,
	assist.CodeTooLarge:            http.StatusRequestEntityTooLarge,
	assist.CodeIdempotencyMismatch: http.StatusUnprocessableEntity,
	assist.CodeRateLimited:         http.StatusTooManyRequests,
	assist.CodeUnavailable:         http.StatusServiceUnavailable,
	assist.CodeInternal:            http.StatusInternalServerError,
}

// problem is an RFC 9457 problem document. Code is an extension member
// carrying the error code of the EVA vocabulary.
type problem struct {
	Type              string              `json:"type" jsonschema:"format=uri-reference" jsonschema_description:"urn:eva:problem: and the code"`
	Title             string              `json:"title"`
	Status            int                 `json:"status"`
	Detail            string              `json:"detail"`
	Code              assist.Code         `json:"code" jsonschema_description:"the EVA error code"`
	Errors            []assist.FieldError `json:"errors" jsonschema_description:"the fields at fault: a body field (dotted when nested, e.g. beneficiary.reference), a query parameter, a header (Content-Type, Idempotency-Key) or body"`
	AvailableUSDCents *int64              `json:"available_usd_cents,omitempty" jsonschema_description:"with insufficient_funds: what the fund could still cover, in integer US cents"`
}

const problemType = "urn:eva:problem:"

// codeMethodNotAllowed is the code of a problem for a method a path does
// not take: an HTTP matter, not one of the vocabulary's.
const codeMethodNotAllowed assist.Code = "method_not_allowed"

// retryAfter is an error that tells the client when to come back.
type retryAfter struct {
	err     error
	seconds int
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// toProblem turns any error into a problem. Errors that are not an
// *assist.Error are internal: internal reports so, and the detail is hidden.
func toProblem(err error) (p problem, internal bool) {
	var ae *assist.Error
	if !errors.As(err, &ae) {
		ae = assist.Errorf(assist.CodeInternal, "internal error")
		internal = true
	}
	status, ok := statusOf[ae.Code]
	if !ok {
		status, internal = http.StatusInternalServerError, true
	}
	detail := ae.Message
	switch status {
	case http.StatusInternalServerError:
		detail, internal = "internal error", true
	case http.StatusServiceUnavailable:
		// What is down stays in the logs.
		detail = "EVA cannot reach one of its parts right now; try again in a moment"
	}
	fields := ae.Fields
	if fields == nil {
		fields = []assist.FieldError{}
	}
	code := ae.Code
	if internal {
		code = assist.CodeInternal
	}
	return problem{Type: problemType + string(code), Title: http.StatusText(status), Status: status, Detail: detail,
		Code: code, Errors: fields, AvailableUSDCents: ae.AvailableUSDCents}, internal
}

// renderProblem returns the status, headers and body of the problem for
// err, and records an internal error in the request's log line.
func renderProblem(r *http.Request, err error) (int, http.Header, []byte) {
	p, internal := toProblem(err)
	if internal {
		noteError(r, err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/problem+json")
	var ra *retryAfter
	switch {
	case errors.As(err, &ra):
		h.Set("Retry-After", strconv.Itoa(max(ra.seconds, 1)))
	case p.Status == http.StatusTooManyRequests, p.Status == http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
		if p.Status == http.StatusServiceUnavailable {
			noteOutage(r, err)
		}
	case p.Status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="eva"`)
	}
	body, _ := json.Marshal(p)
	return p.Status, h, append(body, '\n')
}

// writeProblem answers with the problem for err.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	status, h, body := renderProblem(r, err)
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always marshal; the recoverer answers 500
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// invalid is a CodeInvalid error naming one field.
func invalid(field, format string, args ...any) error {
	var p assist.Problems
	p.Add(field, format, args...)
	return p.Err()
}

// notFound hides whether a thing exists.
func notFound(what, id string) error { return assist.Errorf(assist.CodeNotFound, "no %s %q", what, id) }

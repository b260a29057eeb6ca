package gateway

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
)

// query reads a request's query parameters, collecting every bad one.
type query struct {
	vals url.Values
	err  error
}

func newQuery(r *http.Request) *query { return &query{vals: r.URL.Query()} }

func (q *query) fail(field, format string, args ...any) {
	if q.err == nil {
		q.err = invalid(field, format, args...)
	}
}

// one returns the single value of name, "" when absent.
func (q *query) one(name string) string {
	vs := q.vals[name]
	if len(vs) > 1 {
		q.fail(name, "must be given once")
		return ""
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// limit is ?limit=, 1..500, default 50.
func (q *query) limit() int {
	s := q.one("limit")
	if s == "" {
		return listing.DefaultLimit
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > listing.MaxLimit {
		q.fail("limit", "must be an integer from 1 to %d", listing.MaxLimit)
		return 0
	}
	return n
}

// cursor is ?cursor=, opaque; the service that made it checks it.
func (q *query) cursor() string {
	s := q.one("cursor")
	if len(s) > 1024 {
		q.fail("cursor", "is not a cursor this list returned")
	}
	return s
}

// enum is ?name= restricted to allowed values ("" when absent).
func enum[T ~string](q *query, name string, allowed []T) string {
	s := q.one(name)
	if s != "" && !slices.Contains(allowed, T(s)) {
		strs := make([]string, len(allowed))
		for i, a := range allowed {
			strs[i] = string(a)
		}
		q.fail(name, "must be one of %s", strings.Join(strs, ", "))
	}
	return s
}

// uuidParam is ?name= holding a request id ("" when absent).
func (q *query) uuidParam(name string, required bool) string {
	s := q.one(name)
	switch {
	case s == "" && required:
		q.fail(name, "is required: a request id")
	case s != "" && !eventlog.ValidCaseID(s):
		q.fail(name, "must be a request id (a UUID)")
	}
	return s
}

// uintParam is ?name= holding a non-negative integer.
func (q *query) uintParam(name string) (uint64, bool) {
	s := q.one(name)
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		q.fail(name, "must be a non-negative integer")
		return 0, false
	}
	return n, true
}

// timeParam is ?name= holding an RFC 3339 time.
func (q *query) timeParam(name string) time.Time {
	s := q.one(name)
	if s == "" {
		q.fail(name, "is required: an RFC 3339 time such as 2025-01-31T12:00:00Z")
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.fail(name, "must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
	}
	return t.UTC()
}

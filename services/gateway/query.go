package gateway

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
)

// A route's query parameters are one struct, a field a parameter:
//
//	type listPayoutsQuery struct {
//		Request requestID    `query:"request" doc:"only this request's payouts"`
//		Status  payoutStatus `query:"status"`
//		pageQuery
//	}
//
// parseQuery reads a request's query into it and queryFields documents it
// (openapi.go), so that what is parsed is what is documented. The field's
// type says what the parameter takes:
//
//   - string: any text; the tag maxLength:"n" bounds its length;
//   - a type with values in enums (assist.State, payoutStatus, ...): one of them;
//   - limit: an integer from 1 to listing.MaxLimit, listing.DefaultLimit when absent;
//   - cursor: an opaque cursor of at most maxCursor bytes, checked by the service that made it;
//   - requestID: a request id (a canonical UUID);
//   - uint64: a non-negative integer up to math.MaxInt64; *uint64 when its absence matters;
//   - time.Time: an RFC 3339 time, read as UTC.
//
// Tags: query:"name" or query:"name,required"; default:"v" (strings and
// enums); doc:"what it means". Embedded structs add their fields. A
// parameter may be given once; an empty one is an absent one; parameters
// that are not declared are ignored. The first bad parameter, in field
// order, is the error: CodeInvalid naming it.
type (
	// limit is ?limit=: a page's size.
	limit int
	// cursor is ?cursor=: the next_cursor of the page before.
	cursor string
	// requestID is a request (case) id given as a parameter.
	requestID string
)

// maxCursor bounds a cursor's length.
const maxCursor = 1024

// pageQuery is the query of a list: ?limit= and ?cursor=.
type pageQuery struct {
	Limit  limit  `query:"limit" doc:"how many items a page holds at most"`
	Cursor cursor `query:"cursor" doc:"next_cursor of the page before; absent for the first page"`
}

// noQuery is the query of a route that reads no parameter.
type noQuery struct{}

// queryField is one declared query parameter.
type queryField struct {
	name      string
	index     []int
	typ       reflect.Type
	required  bool
	def       string
	doc       string
	maxLength int
}

var (
	limitType     = reflect.TypeFor[limit]()
	cursorType    = reflect.TypeFor[cursor]()
	requestIDType = reflect.TypeFor[requestID]()
	timeType      = reflect.TypeFor[time.Time]()
	uint64Type    = reflect.TypeFor[uint64]()
	uint64PtrType = reflect.TypeFor[*uint64]()
	stringType    = reflect.TypeFor[string]()
)

// queryFields lists the parameters a query struct declares.
//
// Errors: a field without a query tag, or of a type no parameter takes.
func queryFields(t reflect.Type) ([]queryField, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("query %s: not a struct", t)
	}
	var out []queryField
	for f := range t.Fields() {
		tag, tagged := f.Tag.Lookup("query")
		if f.Anonymous && !tagged && f.Type.Kind() == reflect.Struct {
			inner, err := queryFields(f.Type)
			if err != nil {
				return nil, err
			}
			for _, q := range inner {
				q.index = append([]int{f.Index[0]}, q.index...)
				out = append(out, q)
			}
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		if !tagged || name == "" || !f.IsExported() {
			return nil, fmt.Errorf("query %s.%s: needs a query tag", t, f.Name)
		}
		q := queryField{name: name, index: f.Index, typ: f.Type, required: opt == "required",
			def: f.Tag.Get("default"), doc: f.Tag.Get("doc")}
		if s := f.Tag.Get("maxLength"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || f.Type != stringType {
				return nil, fmt.Errorf("query %s.%s: bad maxLength %q", t, f.Name, s)
			}
			q.maxLength = n
		}
		switch ft := f.Type; {
		case ft == limitType, ft == cursorType, ft == requestIDType, ft == timeType, ft == uint64Type,
			ft == uint64PtrType, ft == stringType, enums[ft] != nil:
		default:
			return nil, fmt.Errorf("query %s.%s: no parameter is a %s", t, f.Name, ft)
		}
		if q.def != "" && f.Type != stringType && enums[f.Type] == nil {
			return nil, fmt.Errorf("query %s.%s: a default only for strings", t, f.Name)
		}
		out = append(out, q)
	}
	return out, nil
}

// parseQuery reads r's query into a Q (see above).
//
// Errors: CodeInvalid naming the first bad parameter.
func parseQuery[Q any](r *http.Request) (Q, error) {
	var q Q
	fields, err := queryFields(reflect.TypeFor[Q]())
	if err != nil {
		return q, err // a programming error: the document would not build either
	}
	vals := r.URL.Query()
	v := reflect.ValueOf(&q).Elem()
	for _, f := range fields {
		if err := f.parse(vals, v.FieldByIndex(f.index)); err != nil {
			return q, err
		}
	}
	return q, nil
}

// parse reads the parameter into v.
func (f queryField) parse(vals url.Values, v reflect.Value) error {
	vs := vals[f.name]
	if len(vs) > 1 {
		return invalid(f.name, "must be given once")
	}
	s := ""
	if len(vs) == 1 {
		s = vs[0]
	}
	if s == "" {
		s = f.def
	}
	switch {
	case f.typ == limitType:
		if s == "" {
			v.SetInt(listing.DefaultLimit)
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > listing.MaxLimit {
			return invalid(f.name, "must be an integer from 1 to %d", listing.MaxLimit)
		}
		v.SetInt(int64(n))
		return nil
	case f.typ == requestIDType:
		switch {
		case s == "" && f.required:
			return invalid(f.name, "is required: a request id")
		case s != "" && !eventlog.ValidCaseID(s):
			return invalid(f.name, "must be a request id (a UUID)")
		}
	case f.typ == timeType:
		if s == "" {
			if f.required {
				return invalid(f.name, "is required: an RFC 3339 time such as 2025-01-31T12:00:00Z")
			}
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return invalid(f.name, "must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
		}
		v.Set(reflect.ValueOf(t.UTC()))
		return nil
	case f.typ == uint64Type, f.typ == uint64PtrType:
		if s == "" {
			if f.required {
				return invalid(f.name, "is required: a non-negative integer")
			}
			return nil
		}
		// Sequences and sizes are at most MaxInt64 (what the stores keep):
		// a larger number is an error, never a wrap to the start.
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > math.MaxInt64 {
			return invalid(f.name, "must be a non-negative integer at most %d", int64(math.MaxInt64))
		}
		if f.typ == uint64PtrType {
			v.Set(reflect.ValueOf(&n))
		} else {
			v.SetUint(n)
		}
		return nil
	case f.typ == cursorType:
		if len(s) > maxCursor {
			return invalid(f.name, "is not a cursor this list returned")
		}
	case enums[f.typ] != nil:
		if allowed := enums[f.typ]; s != "" && !slices.Contains(allowed, s) {
			return invalid(f.name, "must be one of %s", strings.Join(allowed, ", "))
		}
	case f.maxLength > 0 && len(s) > f.maxLength:
		return invalid(f.name, "must be at most %d characters", f.maxLength)
	}
	if s == "" && f.required {
		return invalid(f.name, "is required")
	}
	v.SetString(s)
	return nil
}

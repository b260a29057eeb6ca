package gateway

import (
	"errors"
	"math"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/listing"
)

// Fuzz targets for the request decoders that decode_test.go does not
// cover: the bodies of the other commands, and every query. Their seeds
// are in testdata/fuzz/<target>; go test runs them, go test -fuzz=<target>
// explores.

func FuzzDecodeReason(f *testing.F)      { fuzzDecode[reasonBody](f) }
func FuzzDecodeAnswer(f *testing.F)      { fuzzDecode[answerBody](f) }
func FuzzDecodeQuestion(f *testing.F)    { fuzzDecode[questionBody](f) }
func FuzzDecodeFund(f *testing.F)        { fuzzDecode[fundBody](f) }
func FuzzDecodePayee(f *testing.F)       { fuzzDecode[payeeBody](f) }
func FuzzDecodeLogin(f *testing.F)       { fuzzDecode[loginRequest](f) }
func FuzzDecodePolicy(f *testing.F)      { fuzzDecode[policyBody](f) }
func FuzzDecodeTOTPEnrol(f *testing.F)   { fuzzDecode[totpEnrolRequest](f) }
func FuzzDecodeTOTPConfirm(f *testing.F) { fuzzDecode[totpConfirmRequest](f) }

// querySeeds are raw query strings, among them the review's cursor.
var querySeeds = []string{
	"",
	"limit=1",
	"limit=500&cursor=abc",
	"limit=0",
	"limit=501",
	"limit=-1",
	"limit=1&limit=2",
	"cursor=18446744073709551615",
	"after=18446744073709551615",
	"after=9223372036854775807",
	"after=9223372036854775808",
	"after=-1",
	"after=1&cursor=2",
	"cursor=%00",
	"status=submitted&urgency=critical&post=BGD-DHAKA",
	"status=nope",
	"t=2025-01-31T12:00:00Z",
	"t=yesterday",
	"request=0194e1c2-7a3b-7c4d-8e5f-000000000001",
	"request=../../etc",
	"seq=1&size=3&from=1&to=2&case=0194e1c2-7a3b-7c4d-8e5f-000000000001&format=csv",
	"format=xml",
	"%zz",
	"a=%e2%80%ae",
	"code=abc&state=xyz&cookie=1&session_state=s&iss=https%3A%2F%2Fidp",
	"error=access_denied&state=xyz",
	"next=%2F%2Fevil.example",
}

// checkQuery is the property of the query parser: no panic; an error is
// CodeInvalid naming one declared parameter; a success holds only values
// in range: limits from 1 to MaxLimit, sequences at most MaxInt64,
// cursors at most maxCursor bytes.
func checkQuery[Q any](t *testing.T, raw string) {
	fields, err := queryFields(reflect.TypeFor[Q]())
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.URL.RawQuery = raw
	q, err := parseQuery[Q](r)
	if err != nil {
		var ae *assist.Error
		if !errors.As(err, &ae) || ae.Code != assist.CodeInvalid || len(ae.Fields) != 1 {
			t.Fatalf("%q: %v, want one invalid field", raw, err)
		}
		if !slices.ContainsFunc(fields, func(f queryField) bool { return f.name == ae.Fields[0].Field }) {
			t.Fatalf("%q: names %q, not a parameter", raw, ae.Fields[0].Field)
		}
		return
	}
	v := reflect.ValueOf(q)
	for _, f := range fields {
		fv := v.FieldByIndex(f.index)
		switch {
		case f.typ == limitType && (fv.Int() < 1 || fv.Int() > listing.MaxLimit):
			t.Fatalf("%q: %s = %d", raw, f.name, fv.Int())
		case f.typ == uint64Type && fv.Uint() > math.MaxInt64,
			f.typ == uint64PtrType && !fv.IsNil() && fv.Elem().Uint() > math.MaxInt64:
			t.Fatalf("%q: %s beyond MaxInt64", raw, f.name)
		case f.typ == cursorType && len(fv.String()) > maxCursor:
			t.Fatalf("%q: %s of %d bytes", raw, f.name, len(fv.String()))
		case fv.Kind() == reflect.String && f.typ != cursorType && f.maxLength > 0 && utf8.RuneCountInString(fv.String()) > f.maxLength:
			t.Fatalf("%q: %s longer than %d", raw, f.name, f.maxLength)
		}
	}
}

func fuzzQuery[Q any](f *testing.F) {
	for _, s := range querySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) { checkQuery[Q](t, raw) })
}

func FuzzQueryPage(f *testing.F)         { fuzzQuery[pageQuery](f) }
func FuzzQueryListRequests(f *testing.F) { fuzzQuery[listRequestsQuery](f) }
func FuzzQueryAuditEvents(f *testing.F)  { fuzzQuery[auditEventsQuery](f) }
func FuzzQueryDeadLetters(f *testing.F)  { fuzzQuery[deadLettersQuery](f) }
func FuzzQueryAsOf(f *testing.F)         { fuzzQuery[asOfQuery](f) }
func FuzzQueryPayouts(f *testing.F)      { fuzzQuery[listPayoutsQuery](f) }
func FuzzQueryInclusion(f *testing.F)    { fuzzQuery[inclusionQuery](f) }
func FuzzQueryConsistency(f *testing.F)  { fuzzQuery[consistencyQuery](f) }
func FuzzQueryAccess(f *testing.F)       { fuzzQuery[accessQuery](f) }
func FuzzQueryExport(f *testing.F)       { fuzzQuery[exportQuery](f) }
func FuzzQuerySSOLogin(f *testing.F)     { fuzzQuery[ssoLoginQuery](f) }
func FuzzQuerySSOCallback(f *testing.F)  { fuzzQuery[ssoCallbackQuery](f) }

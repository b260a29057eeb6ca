package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
)

var decodeSeeds = []string{
	``,
	`{}`,
	`null`,
	`[]`,
	`"x"`,
	`{"post":"BGD-DHAKA","category":"shelter","urgency":"critical","amount_usd_cents":25000,"justification":"j",` +
		`"beneficiary":{"reference":"R","name":"N","date_of_birth":"1990-01-01","nationality":"BD","contact":"c"},"payee_id":"p"}`,
	`{"amount_usd_cents":10.5}`,
	`{"amount_usd_cents":-0}`,
	`{"amount_usd_cents":1e3}`,
	`{"amount_usd_cents":9223372036854775807}`,
	`{"amount_usd_cents":9223372036854775808}`,
	`{"amount_usd_cents":null}`,
	`{"beneficiary":{"reference":"R","x":{"y":[1,2,{"z":null}]}}}`,
	`{"beneficiary":[]}`,
	`{"beneficiary":null}`,
	`{"unknown":{"deep":[[[[[]]]]]}}`,
	`{"post":"a","post":"b"}`,
	`{"Post":"a"}`,
	`{"post":"\ud800"}`,
	"{\"post\":\"\xff\"}",
	`{} {}`,
	`{}x`,
	`{"reason":"x"`,
	`{"reason":}`,
	`{"fund_id":true,"note":false}`,
	`  {"note":"ok"}  `,
	"\ufeff{}",
	strings.Repeat("[", 1000),
	`{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 201),
}

// checkDecode is the property of the decoder: no panic; an error is an
// *assist.Error, invalid or too large, naming a field with a message; a
// success is a JSON object that encoding/json decodes alike, strictly.
func checkDecode[T any](t *testing.T, data []byte, limit int64) {
	got, err := decodeJSON[T](bytes.NewReader(data), limit)
	if err != nil {
		var ae *assist.Error
		if !errors.As(err, &ae) {
			t.Fatalf("%q: error %T %v is not an *assist.Error", data, err, err)
		}
		if ae.Code != assist.CodeInvalid && ae.Code != assist.CodeTooLarge {
			t.Fatalf("%q: code %s", data, ae.Code)
		}
		if len(ae.Fields) == 0 || ae.Fields[0].Field == "" || ae.Fields[0].Message == "" {
			t.Fatalf("%q: %v names no field", data, err)
		}
		if (ae.Code == assist.CodeTooLarge) != (int64(len(data)) > limit) {
			t.Fatalf("%q: %v with %d bytes, limit %d", data, err, len(data), limit)
		}
		return
	}
	if len(bytes.TrimSpace(data)) == 0 && reflect.TypeFor[T]().NumField() == 0 {
		return // a command without arguments takes an empty body
	}
	if int64(len(data)) > limit || !json.Valid(data) {
		t.Fatalf("%q accepted", data)
	}
	var want T
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("%q accepted but encoding/json says %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decoded %+v, encoding/json %+v", data, got, want)
	}
}

func fuzzDecode[T any](f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode[T](t, data, 1024)
	})
}

func FuzzDecodeFile(f *testing.F)    { fuzzDecode[fileBody](f) }
func FuzzDecodeAmend(f *testing.F)   { fuzzDecode[amendBody](f) }
func FuzzDecodeApprove(f *testing.F) { fuzzDecode[approveBody](f) }
func FuzzDecodeNoBody(f *testing.F)  { fuzzDecode[noBody](f) }

func TestDecodeJSON(t *testing.T) {
	for _, c := range []struct {
		body  string
		field string // "" when it decodes
	}{
		{`{"post":"P","amount_usd_cents":5,"beneficiary":{"reference":"R"}}`, ""},
		{`{"amount_usd_cents":10.5}`, "amount_usd_cents"},
		{`{"amount_usd_cents":"5"}`, "amount_usd_cents"},
		{`{"amount_usd_cents":1e2}`, "amount_usd_cents"},
		{`{"beneficiary":{"reference":1}}`, "beneficiary.reference"},
		{`{"beneficiary":{"passport":"X"}}`, "beneficiary.passport"},
		{`{"beneficiary":"R"}`, "beneficiary"},
		{`{"post":"a","post":"a"}`, "post"},
		{`{"POST":"a"}`, "POST"},
		{`{"post":"a"} {}`, "body"},
		{`{"post":"a"`, "body"},
		{`[]`, "body"},
		{`null`, "body"},
		{``, "body"},
		{` `, "body"},
	} {
		_, err := decodeJSON[fileBody](strings.NewReader(c.body), 1024)
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: %v", c.body, err)
			}
			continue
		}
		var ae *assist.Error
		if !errors.As(err, &ae) || ae.Code != assist.CodeInvalid || ae.Fields[0].Field != c.field {
			t.Errorf("%s: %v, want invalid %s", c.body, err, c.field)
		}
	}
	_, err := decodeJSON[fileBody](strings.NewReader(`{"post":"`+strings.Repeat("a", 100)+`"}`), 64)
	if !assist.IsCode(err, assist.CodeTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	for _, s := range decodeSeeds {
		checkDecode[fileBody](t, []byte(s), 1<<20)
		checkDecode[amendBody](t, []byte(s), 1<<20)
	}
}

// decodeJSON decodes a body of at most limit bytes exactly as the handlers
// do (readRequest), for the decoder's tests.
func decodeJSON[T any](r io.Reader, limit int64) (T, error) {
	req := httptest.NewRequest(http.MethodPost, "/", r)
	req.Header.Set("Content-Type", "application/json")
	_, v, err := readRequest[T](req, limit)
	return v, err
}

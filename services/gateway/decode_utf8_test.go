package gateway

import (
	"errors"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
)

// encoding/json silently turns invalid UTF-8 and lone surrogates into
// U+FFFD; the decoder refuses them, naming the field.
func TestDecodeRefusesBrokenText(t *testing.T) {
	type in struct {
		Note string `json:"note"`
		Sub  struct {
			Name string `json:"name"`
		} `json:"sub"`
	}
	for _, tc := range []struct {
		body, field string
	}{
		{"{\"note\":\"bad \xff byte\"}", "note"},
		{`{"note":"lone \ud800 high"}`, "note"},
		{`{"note":"lone \udc00 low"}`, "note"},
		{`{"note":"reversed \udc00\ud800"}`, "note"},
		{`{"sub":{"name":"high at end \ud83d"}}`, "sub.name"},
		{`{"sub":{"name":"high then text \ud83dx"}}`, "sub.name"},
	} {
		_, err := decodeBytes[in]([]byte(tc.body))
		var ae *assist.Error
		if !errors.As(err, &ae) || ae.Code != assist.CodeInvalid || len(ae.Fields) != 1 || ae.Fields[0].Field != tc.field {
			t.Errorf("%q: %v, want invalid %s", tc.body, err, tc.field)
		}
	}
	for _, ok := range []string{
		`{"note":"plain"}`,
		`{"note":"pair \ud83d\ude00 and é and \\ud800 as text"}`,
		"{\"note\":\"Dhaka – শেল্টার\"}",
	} {
		if _, err := decodeBytes[in]([]byte(ok)); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

package listing_test

import (
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/listing"
)

// Decode opens what Encode made, and refuses anything else with a problem
// naming the cursor: garbage, the wrong number of parts, a part with a
// control character (a NUL would reach PostgreSQL as text and fail there
// as a 5xx).
func TestDecode(t *testing.T) {
	if parts, err := listing.Decode(listing.Encode("1700000000", "0194e1c2-7a3b-7c4d-8e5f-000000000001"), 2); err != nil ||
		parts[0] != "1700000000" {
		t.Fatalf("round trip: %v %v", parts, err)
	}
	for name, c := range map[string]string{
		"garbage":              "!!not base64!!",
		"the largest uint64":   "18446744073709551615",
		"too few parts":        listing.Encode("1"),
		"too many parts":       listing.Encode("1", "2", "3"),
		"a NUL":                listing.Encode("1", "a\x00b"),
		"a bidi override":      listing.Encode("1", "\u202e"),
		"invalid UTF-8 inside": listing.Encode("1", "\xff"),
	} {
		_, err := listing.Decode(c, 2)
		var fields []assist.FieldError
		if e, ok := err.(*assist.Error); ok {
			fields = e.Fields
		}
		if !assist.IsCode(err, assist.CodeInvalid) || len(fields) != 1 || fields[0].Field != "cursor" {
			t.Errorf("%s: %v, want invalid naming cursor", name, err)
		}
	}
}

package listing_test

import (
	"strings"
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

// FuzzDecode: a cursor either opens into n parts free of control
// characters, which encode back into a cursor that opens alike, or is
// refused naming the cursor; never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "18446744073709551615", "!!", listing.Encode("1", "a"), listing.Encode("1", "\x00"),
		listing.Encode("1", "2", "3"), listing.Encode("\u202e", "x")} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, c string, n int) {
		n = 1 + (n&3)%4
		parts, err := listing.Decode(c, n)
		if err != nil {
			if e, ok := err.(*assist.Error); !ok || e.Code != assist.CodeInvalid || len(e.Fields) != 1 || e.Fields[0].Field != "cursor" {
				t.Fatalf("Decode(%q, %d): %v", c, n, err)
			}
			return
		}
		if len(parts) != n {
			t.Fatalf("Decode(%q, %d): %d parts", c, n, len(parts))
		}
		again, err := listing.Decode(listing.Encode(parts...), n)
		if err != nil || strings.Join(again, "|") != strings.Join(parts, "|") {
			t.Fatalf("Decode(%q, %d) = %q, re-encoded: %q, %v", c, n, parts, again, err)
		}
	})
}

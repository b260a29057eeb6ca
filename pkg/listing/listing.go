// Package listing holds what every list of the API shares: limits and
// opaque cursors.
package listing

import (
	"encoding/base64"
	"strings"

	"github.com/eva-org/eva/pkg/assist"
)

// Limits of a page.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Encode makes an opaque cursor of the sort key of the last item shown.
func Encode(parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "\x1f")))
}

// Decode opens a cursor made by Encode with n parts.
//
// Errors: CodeInvalid naming the field "cursor".
func Decode(cursor string, n int) ([]string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	parts := strings.Split(string(raw), "\x1f")
	if err != nil || len(parts) != n {
		return nil, BadCursor()
	}
	// A cursor made by Encode holds numbers and ids: a part with a
	// control character (a NUL, which PostgreSQL refuses as text) was
	// made by hand.
	for _, p := range parts {
		if assist.TextFault(p, false) != "" {
			return nil, BadCursor()
		}
	}
	return parts, nil
}

// BadCursor is the error for a cursor that does not parse.
func BadCursor() error {
	return &assist.Error{Code: assist.CodeInvalid, Message: "invalid cursor",
		Fields: []assist.FieldError{{Field: "cursor", Message: "is not a cursor this list returned"}}}
}

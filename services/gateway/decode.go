package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/eva-org/eva/pkg/assist"
)

// readRequest reads a request's body, at most limit bytes, and decodes it
// into an In (see decodeRequest and decodeBytes); it returns the bytes
// read too. The decoding is strict where encoding/json is lenient: keys
// must match the fields' JSON names exactly, may appear once, and must be
// known; values must have the field's type (an integer field takes only
// integers); nothing may follow the object. Every error is an
// *assist.Error: CodeTooLarge naming "body", or CodeInvalid naming the
// field at fault ("body" for the whole, "beneficiary.name" for a nested
// one, "Content-Type").
func readRequest[In any](r *http.Request, limit int64) ([]byte, In, error) {
	var zero In
	body, err := readBody(r, limit)
	if err != nil {
		return nil, zero, err
	}
	in, err := decodeRequest[In](r.Header, body)
	return body, in, err
}

func tooLarge(limit int64) error {
	return &assist.Error{Code: assist.CodeTooLarge, Message: "request body too large",
		Fields: []assist.FieldError{{Field: "body", Message: fmt.Sprintf("must be at most %d bytes", limit)}}}
}

// checker walks a JSON body against the type it decodes into, naming the
// field at fault.
type checker struct {
	dec  *json.Decoder
	data []byte
}

// validJSONText reports whether raw JSON text (a string token and the
// punctuation before it) is valid UTF-8 whose \u escapes pair every
// surrogate.
func validJSONText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	isHex4 := func(b []byte) (rune, bool) {
		if len(b) < 4 {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[:4]), 16, 32)
		return rune(n), err == nil
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := isHex4(raw[i+1:])
		if !ok {
			return false
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false // a low surrogate alone
		case r >= 0xD800 && r <= 0xDBFF:
			// A high surrogate must be followed by \u and a low one.
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := isHex4(raw[i+3:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// decodeBytes decodes a body already read into a T, strictly (see
// readRequest).
func decodeBytes[T any](data []byte) (T, error) {
	var v T
	if len(bytes.TrimSpace(data)) == 0 {
		return v, invalid("body", "is required: a JSON object")
	}
	if !json.Valid(data) {
		var raw json.RawMessage
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
			return v, syntaxError(err)
		}
		return v, invalid("body", "must hold one JSON object and nothing after it")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := (&checker{dec: dec, data: data}).checkValue(reflect.TypeFor[T](), ""); err != nil {
		return v, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, invalid("body", "must hold one JSON object and nothing after it")
	}
	// The shape is checked: decoding cannot fail on a type, only on
	// something checkValue does not know, reported on the whole body.
	if err := json.Unmarshal(data, &v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return v, invalid(te.Field, "must be %s", kindName(te.Type))
		}
		return v, invalid("body", "is not a valid request")
	}
	return v, nil
}

// checkValue reads the next JSON value from dec and checks it against t.
func (c *checker) checkValue(t reflect.Type, path string) error {
	dec := c.dec
	start := dec.InputOffset()
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if tok == nil { // null leaves a field as it is
		if path == "" {
			return invalid("body", "must be a JSON object")
		}
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	field := path
	if field == "" {
		field = "body"
	}
	want := func() error { return invalid(field, "must be %s", kindName(t)) }
	switch t.Kind() {
	case reflect.Struct:
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			if path == "" {
				return invalid("body", "must be a JSON object")
			}
			return want()
		}
		return c.checkObject(t, path)
	case reflect.Slice:
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return want()
		}
		for i := 0; dec.More(); i++ {
			if err := c.checkValue(t.Elem(), fmt.Sprintf("%s[%d]", field, i)); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return syntaxError(err)
		}
		return nil
	case reflect.Map:
		// Objects keyed by name (caps by category, deadlines by urgency):
		// each value is checked under "<field>.<key>".
		if d, ok := tok.(json.Delim); !ok || d != '{' || t.Key().Kind() != reflect.String {
			return skipThen(dec, tok, want())
		}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return syntaxError(err)
			}
			key, _ := kt.(string)
			if err := c.checkValue(t.Elem(), field+"."+key); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return syntaxError(err)
		}
		return nil
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return skipThen(dec, tok, want())
		}
		// encoding/json turns invalid UTF-8 and lone surrogate escapes
		// into U+FFFD without a word: check the raw token instead.
		if !validJSONText(c.data[start:dec.InputOffset()]) {
			return invalid(field, "must be valid UTF-8 text")
		}
		return nil
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return skipThen(dec, tok, want())
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return skipThen(dec, tok, want())
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return want()
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := tok.(json.Number)
		if !ok {
			return skipThen(dec, tok, want())
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			return want()
		}
		return nil
	default:
		// Request types hold only the kinds above.
		return fmt.Errorf("decode: unsupported field kind %s at %q", t.Kind(), field)
	}
}

func (c *checker) checkObject(t reflect.Type, path string) error {
	dec := c.dec
	fields := jsonFields(t)
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key := tok.(string) // object keys are always strings
		name := fieldName(key)
		if path != "" {
			name = path + "." + name
		}
		ft, known := fields[key]
		switch {
		case !known:
			return invalid(name, "is not a known field")
		case seen[key]:
			return invalid(name, "appears more than once")
		}
		seen[key] = true
		if err := c.checkValue(ft, name); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return syntaxError(err)
	}
	return nil
}

// fieldName is how a key is named in an error: never empty, never long.
func fieldName(key string) string {
	const maxName = 64
	switch {
	case key == "":
		return `""`
	case len(key) > maxName:
		cut := maxName
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		return key[:cut] + "…"
	}
	return key
}

// skipThen consumes the rest of a value that began with tok, so that a
// later syntax error cannot hide behind a type error, and returns err.
func skipThen(dec *json.Decoder, tok json.Token, err error) error {
	d, ok := tok.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return err
	}
	for depth := 1; depth > 0; {
		tok, terr := dec.Token()
		if terr != nil {
			return syntaxError(terr)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return err
}

// jsonFields maps the JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return invalid("body", "is not valid JSON (at byte %d): %s", se.Offset, se.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("body", "is not valid JSON: it ends too early")
	default:
		return invalid("body", "is not valid JSON")
	}
}

func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice:
		return "a JSON array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	default:
		return "a " + t.Kind().String()
	}
}

// checkContentType requires a JSON body.
func checkContentType(h http.Header) error {
	ct := h.Get("Content-Type")
	if ct == "" {
		return invalid("Content-Type", "is required: application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return invalid("Content-Type", "must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return invalid("Content-Type", "charset must be utf-8")
	}
	return nil
}

// readBody reads a request body of at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, invalid("body", "could not be read")
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(limit)
	}
	return data, nil
}

// decodeRequest checks the Content-Type and decodes body into a T. A T
// without fields takes an empty body, with or without Content-Type.
func decodeRequest[T any](h http.Header, body []byte) (T, error) {
	var zero T
	if len(bytes.TrimSpace(body)) == 0 {
		if reflect.TypeFor[T]().NumField() == 0 {
			return zero, nil
		}
		return zero, invalid("body", "is required: a JSON object")
	}
	if err := checkContentType(h); err != nil {
		return zero, err
	}
	return decodeBytes[T](body)
}

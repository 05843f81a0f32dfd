package claim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind is the JSON type of a claim value.
type Kind uint8

// Kinds. Null and Other never match a route requirement and never become a
// header: a requirement can only name strings, numbers and booleans.
const (
	Null Kind = iota
	String
	Number
	Bool
	// Other is an object, a nested array, or a number too large for a
	// float64.
	Other
)

// Value is one JSON scalar: a claim's value, or one element of an array
// claim. Values are compared by JSON type and value, so the string "true"
// never equals the boolean true, and 5 equals 5.0 (numbers compare as IEEE
// doubles, as JSON parsers read them).
type Value struct {
	Kind Kind
	// Text is the string itself, a number's JSON literal as sent, or
	// "true"/"false".
	Text string
	// Num is a Number's value.
	Num float64
}

// StringValue is the Value of a JSON string.
func StringValue(s string) Value { return Value{Kind: String, Text: s} }

// BoolValue is the Value of a JSON boolean.
func BoolValue(b bool) Value { return Value{Kind: Bool, Text: strconv.FormatBool(b)} }

// NumberValue parses a number written as in JSON or YAML (5, -1.5, 1e3).
func NumberValue(text string) (Value, error) {
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return Value{}, fmt.Errorf("%q is not a finite number", Bound(text))
	}
	return Value{Kind: Number, Text: text, Num: f}, nil
}

// Equal reports whether v and w have the same JSON type and value.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind {
		return false
	}
	switch v.Kind {
	case String, Bool:
		return v.Text == w.Text
	case Number:
		return v.Num == w.Num
	}
	return false // null and objects match nothing
}

// String renders v for messages: strings quoted, others as JSON text.
func (v Value) String() string {
	switch v.Kind {
	case String:
		return strconv.Quote(v.Text)
	case Number, Bool:
		return v.Text
	case Null:
		return "null"
	}
	return "(object)"
}

// Claim is what a token holds under one name: one Value for a scalar, one
// per element for an array. A Claim is immutable once built.
type Claim struct {
	Values []Value
	Array  bool
}

// Matches reports whether the claim holds one of want: a scalar equal to one
// of them, or an array with any element equal to one of them.
func (c Claim) Matches(want []Value) bool {
	for _, have := range c.Values {
		for _, w := range want {
			if have.Equal(w) {
				return true
			}
		}
	}
	return false
}

// HeaderValue renders the claim for an identity header: a string as is,
// a number or boolean as its JSON text, an array of those joined with ",".
// A null, an object, an array holding anything else, an empty result, or a
// control character (C0, DEL, C1) gives ok=false: no header at all, never a
// guessed one.
func (c Claim) HeaderValue() (string, bool) {
	if len(c.Values) == 0 {
		return "", false
	}
	parts := make([]string, len(c.Values))
	for i, v := range c.Values {
		if v.Kind != String && v.Kind != Number && v.Kind != Bool {
			return "", false
		}
		parts[i] = v.Text
	}
	s := strings.Join(parts, ",")
	if s == "" || HasControl(s) {
		return "", false
	}
	return s, true
}

// Lookup finds name among a JSON object's members: the whole name first, and
// only when it is absent, the name split on "." as a path into nested
// objects (so "https://x.example/roles" and "realm_access.roles" both work).
// A JSON null counts as present; ok is false when nothing is found.
func Lookup(top map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if raw, ok := top[name]; ok {
		return raw, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	obj := top
	parts := strings.Split(name, ".")
	for i, p := range parts {
		raw, ok := obj[p]
		if !ok {
			return nil, false
		}
		if i == len(parts)-1 {
			return raw, true
		}
		obj = nil
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return nil, false // not an object: the path leads nowhere
		}
	}
	return nil, false
}

// errNotJSON wraps a decoding failure of a value that passed the token's
// JSON checks, which should not happen.
var errNotJSON = errors.New("claim value is not JSON")

// Decode turns one JSON value into a Claim.
func Decode(raw json.RawMessage) (Claim, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Claim{}, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	if arr, ok := v.([]any); ok {
		c := Claim{Values: make([]Value, len(arr)), Array: true}
		for i, e := range arr {
			c.Values[i] = scalar(e)
		}
		return c, nil
	}
	return Claim{Values: []Value{scalar(v)}}, nil
}

func scalar(v any) Value {
	switch x := v.(type) {
	case nil:
		return Value{Kind: Null}
	case string:
		return StringValue(x)
	case bool:
		return BoolValue(x)
	case json.Number:
		n, err := NumberValue(string(x))
		if err != nil {
			return Value{Kind: Other}
		}
		return n
	}
	return Value{Kind: Other}
}

// HasControl reports a control character: C0 (U+0000–U+001F), DEL (U+007F)
// or C1 (U+0080–U+009F, UTF-8 0xC2 0x80–0x9F). Such characters would travel
// into identity headers and logs, where another parser may read them as
// separators (U+0085 is NEL).
func HasControl[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return true
		}
		if c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f {
			return true
		}
	}
	return false
}

package issuer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/portcullis/portcullis/claim"
)

// The strict check agrees with the json.Decoder.Token walk it replaced
// (on text json.Valid accepts: that one also took several values in a row,
// which no JWT parser then accepted).
func TestStrictJSONMatchesTokenWalk(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)
	tooDeep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	var many strings.Builder
	many.WriteString("{")
	for i := range 40 {
		fmt.Fprintf(&many, "%q:%d,", fmt.Sprint("k", i), i)
	}
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"claims", `{"iss":"https://a","sub":"b","aud":["x","y"],"exp":1e9,"n":null,"t":true,"o":{"a":[1,{"b":2}]}}`, true},
		{"empty object", `{}`, true},
		{"spaces", " { \"a\" : [ 1 , 2 ] , \"b\" : { } } ", true},
		{"duplicate key", `{"sub":"a","sub":"b"}`, false},
		{"duplicate by escape", `{"sub":"a","s\u0075b":"b"}`, false},
		{"duplicate nested", `{"o":{"a":1,"a":2}}`, false},
		{"same key in sibling objects", `{"a":{"k":1},"b":{"k":1}}`, true},
		{"duplicate among many keys", many.String() + `"k3":0}`, false},
		{"many keys", many.String() + `"last":0}`, true},
		{"escaped control", `{"a":"x\u0000"}`, false},
		{"escaped DEL", `{"a":"\u007f"}`, false},
		{"raw DEL", "{\"a\":\"\x7f\"}", false},
		{"C1", "{\"a\":\"\u0085\"}", false},
		{"control in key", `{"a\n":1}`, false},
		{"escaped quote and slash", `{"a":"\"\/\\"}`, true},
		{"lone surrogate", `{"a":"\ud800"}`, false},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, true},
		{"nested to the limit", deep, true},
		{"nested past the limit", tooDeep, false},
		{"truncated", `{"a":1`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"trailing comma", `{"a":1,}`, false},
		{"two values", `{} {}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkStrictJSON([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("checkStrictJSON(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			sameAsTokenWalk(t, []byte(tt.in))
		})
	}
}

func sameAsTokenWalk(t *testing.T, b []byte) {
	t.Helper()
	want := json.Valid(b) && oldCheckStrictJSON(b) == nil
	if got := checkStrictJSON(b) == nil; got != want {
		t.Fatalf("%q: accepted %v, the token walk %v", b, got, want)
	}
}

// FuzzStrictJSON: on any bytes, the walk agrees with the token walk.
func FuzzStrictJSON(f *testing.F) {
	f.Add([]byte(`{"iss":"a","sub":"b","aud":["x"],"exp":1,"o":{"k":[null,true,1.5e3]}}`))
	f.Add([]byte(`{"a":"\u0061","\u0061":1}`))
	f.Add([]byte(`{"a":"\ud83d\ude00","b":"\u0085"}`))
	f.Fuzz(func(t *testing.T, b []byte) { sameAsTokenWalk(t, b) })
}

func BenchmarkStrictJSON(b *testing.B) {
	payload := []byte(`{"iss":"https://issuer.example","sub":"billing","aud":["orders-api"],"exp":1893456000,"iat":1893452400,"jti":"0b6f2c1e-5f0c-4b8e","client_id":"billing","scope":"orders:read orders:write"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := checkStrictJSON(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// oldCheckStrictJSON is the json.Decoder.Token walk checkStrictJSON
// replaced, kept as the oracle.
// (was: checkStrictJSON) refuses what encoding/json silently accepts but another
// parser might read differently: duplicate object keys (RFC 7519 §4 lets a
// recipient reject them; two parsers picking different duplicates is a known
// bypass), invalid UTF-8 and unpaired surrogate escapes (which encoding/json
// turns into U+FFFD while others keep or refuse them; RFC 8259 §8.1), and
// control characters (C0, DEL and C1, raw or \u-escaped: strings are checked
// after decoding) inside strings, which would travel into identity headers
// and logs.
func oldCheckStrictJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: JSON is not valid UTF-8", ErrMalformed)
	}
	if err := checkSurrogates(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		keys   map[string]struct{}
		object bool
		expect bool // next string token in an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= maxJSONDepth {
					return fmt.Errorf("%w: JSON nested too deeply", ErrMalformed)
				}
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].expect = true
				}
				stack = append(stack, frame{object: t == '{', expect: t == '{', keys: map[string]struct{}{}})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if claim.HasControl(t) {
				return fmt.Errorf("%w: control character in a string", ErrMalformed)
			}
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expect {
				if _, dup := stack[n-1].keys[t]; dup {
					return fmt.Errorf("%w: duplicate key %q", ErrMalformed, t)
				}
				stack[n-1].keys[t] = struct{}{}
				stack[n-1].expect = false
				continue
			}
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expect = true
		}
	}
	if len(stack) != 0 {
		return fmt.Errorf("%w: unbalanced JSON", ErrMalformed)
	}
	return nil
}

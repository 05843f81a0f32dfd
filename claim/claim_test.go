package claim

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

var scopeCases = []struct {
	name string
	in   string
	want []string // nil with bad: invalid
	bad  bool
}{
	{"one", "orders:read", []string{"orders:read"}, false},
	{"two", "orders:read orders:write", []string{"orders:read", "orders:write"}, false},
	{"repeated, leading, trailing spaces", "  a   b ", []string{"a", "b"}, false},
	{"empty", "", nil, false},
	{"only spaces", "   ", nil, false},
	{"duplicates dropped", "a b a", []string{"a", "b"}, false},
	{"every allowed punctuation", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~", []string{"!#$%&'()*+,-./:;<=>?@[]^_`{|}~"}, false},
	{"U+00A0 is not a separator", "orders:read\u00a0portcullis:admin", nil, true},
	{"U+2003 em space", "a\u2003b", nil, true},
	{"U+3000 ideographic space", "a\u3000b", nil, true},
	{"U+0085 NEL", "a\u0085b", nil, true},
	{"tab", "a\tb", nil, true},
	{"newline", "a\nb", nil, true},
	{"CR", "a\rb", nil, true},
	{"vertical tab", "a\vb", nil, true},
	{"form feed", "a\fb", nil, true},
	{"NUL", "a\x00", nil, true},
	{"DEL", "a\x7f", nil, true},
	{"double quote", `a"b`, nil, true},
	{"backslash", `a\b`, nil, true},
	{"non-ASCII letter", "ädmin", nil, true},
	{"invalid UTF-8", "a\xff", nil, true},
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	for _, tc := range scopeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScope(tc.in)
			if tc.bad {
				if err == nil || !errors.Is(err, ErrScope) {
					t.Fatalf("ParseScope(%q) = %q, %v; want ErrScope", tc.in, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ParseScope(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestScopeList(t *testing.T) {
	t.Parallel()
	if got, err := ScopeList([]string{"a", "b", "a"}); err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("ScopeList = %q, %v", got, err)
	}
	for _, bad := range [][]string{{"a b"}, {""}, {"a\u00a0b"}, {"ok", "x\ty"}} {
		if _, err := ScopeList(bad); !errors.Is(err, ErrScope) {
			t.Errorf("ScopeList(%q) = %v, want ErrScope", bad, err)
		}
	}
}

func TestLookupAndMatch(t *testing.T) {
	t.Parallel()
	var top map[string]json.RawMessage
	_ = json.Unmarshal([]byte(`{"a.b":"whole","a":{"b":"nested","c":{"d":[1,true,"x",null,{"o":1}]}},
		"https://x.example/roles":["r"],"n":5,"s":"5","t":true,"f":"true","o":{"k":"v"},"z":null,"big":1e400}`), &top)
	tests := []struct {
		name  string
		claim string
		want  []Value
		match bool
		found bool
	}{
		{"whole name wins", "a.b", []Value{StringValue("whole")}, true, true},
		{"nested path", "a.c.d", []Value{StringValue("x")}, true, true},
		{"nested array number", "a.c.d", []Value{{Kind: Number, Text: "1.0", Num: 1}}, true, true},
		{"nested array bool", "a.c.d", []Value{BoolValue(true)}, true, true},
		{"nested array no match", "a.c.d", []Value{StringValue("1"), BoolValue(false)}, false, true},
		{"URL name", "https://x.example/roles", []Value{StringValue("r")}, true, true},
		{"number vs string", "n", []Value{StringValue("5")}, false, true},
		{"string vs number", "s", []Value{{Kind: Number, Text: "5", Num: 5}}, false, true},
		{"bool", "t", []Value{BoolValue(true)}, true, true},
		{"string true is not bool", "f", []Value{BoolValue(true)}, false, true},
		{"object matches nothing", "o", []Value{StringValue("v")}, false, true},
		{"null matches nothing", "z", []Value{StringValue("")}, false, true},
		{"huge number matches nothing", "big", []Value{{Kind: Number, Text: "1e308", Num: 1e308}}, false, true},
		{"missing", "nope", []Value{StringValue("x")}, false, false},
		{"path through a non-object", "n.x", []Value{StringValue("x")}, false, false},
		{"path through an array", "a.c.d.0", []Value{StringValue("x")}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, ok := Lookup(top, tc.claim)
			if ok != tc.found {
				t.Fatalf("Lookup(%q) found=%v, want %v", tc.claim, ok, tc.found)
			}
			if !ok {
				return
			}
			c, err := Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Matches(tc.want); got != tc.match {
				t.Errorf("%s %s matches %v = %v, want %v", tc.claim, raw, tc.want, got, tc.match)
			}
		})
	}
}

func TestHeaderValue(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`"a@b"`: "a@b", `5`: "5", `1.50`: "1.50", `true`: "true", `["a","b"]`: "a,b", `["a",1,false]`: "a,1,false",
		`null`: "", `{"a":1}`: "", `["a",null]`: "", `["a",{"b":1}]`: "", `["a",["b"]]`: "", `[]`: "", `""`: "",
		`"a\u0085b"`: "", `"a\u0000"`: "", `["ok","x\ny"]`: "",
	} {
		c, err := Decode(json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := c.HeaderValue()
		if got != want || ok != (want != "") {
			t.Errorf("HeaderValue(%s) = %q, %v; want %q", raw, got, ok, want)
		}
	}
}

// FuzzParseScope: whatever ParseScope accepts is a list of distinct
// scope-tokens with no space in them that round-trips through joining, and
// a string of scope-token characters and spaces is always accepted.
func FuzzParseScope(f *testing.F) {
	for _, tc := range scopeCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseScope(s)
		plain := true
		for i := 0; i < len(s); i++ {
			if s[i] != ' ' && !ValidScope(s[i:i+1]) {
				plain = false
			}
		}
		if err != nil {
			if plain {
				t.Fatalf("ParseScope(%q) refused a string of scope-tokens: %v", s, err)
			}
			return
		}
		if !plain {
			t.Fatalf("ParseScope(%q) accepted a character outside RFC 6749 §3.3: %q", s, got)
		}
		seen := map[string]bool{}
		for _, sc := range got {
			if !ValidScope(sc) || strings.Contains(sc, " ") || seen[sc] {
				t.Fatalf("ParseScope(%q) gave %q", s, got)
			}
			seen[sc] = true
		}
		again, err := ParseScope(strings.Join(got, " "))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("round trip of %q: %q, %v", got, again, err)
		}
	})
}

// FuzzClaimMatch: looking up and decoding any JSON object never panics; a
// found scalar claim matches itself and never a value of another kind; and
// header values never carry a control character.
func FuzzClaimMatch(f *testing.F) {
	f.Add(`{"groups":["a","b"]}`, "groups")
	f.Add(`{"realm_access":{"roles":["admin"]}}`, "realm_access.roles")
	f.Add(`{"https://x.example/roles":"r","https://x":{"example/roles":"n"}}`, "https://x.example/roles")
	f.Add(`{"n":5,"b":true,"s":"5"}`, "n")
	f.Add(`{"o":{"k":null}}`, "o.k")
	f.Add(`{"e":"a\u0085b"}`, "e")
	f.Add(`{"big":1e400}`, "big")
	f.Fuzz(func(t *testing.T, payload, name string) {
		var top map[string]json.RawMessage
		if json.Unmarshal([]byte(payload), &top) != nil {
			return
		}
		raw, ok := Lookup(top, name)
		if !ok {
			return
		}
		c, err := Decode(raw)
		if err != nil {
			return
		}
		if hv, ok := c.HeaderValue(); ok && (hv == "" || HasControl(hv)) {
			t.Fatalf("header value %q", hv)
		}
		for _, v := range c.Values {
			switch v.Kind {
			case String, Number, Bool:
				if !c.Matches([]Value{v}) {
					t.Fatalf("%+v does not match itself", v)
				}
				for _, k := range []Kind{String, Number, Bool} {
					if k != v.Kind && (Value{Kind: k, Text: v.Text, Num: v.Num}).Equal(v) {
						t.Fatalf("%+v equals a value of kind %d", v, k)
					}
				}
			default:
				if c.Matches([]Value{v}) {
					t.Fatalf("null or object %+v matched", v)
				}
			}
		}
	})
}

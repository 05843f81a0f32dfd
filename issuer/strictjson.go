package issuer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/portcullis/portcullis/claim"
)

// maxJSONDepth bounds nesting so a crafted token cannot make the check deep.
const maxJSONDepth = 16

// checkStrictJSON refuses what encoding/json silently accepts but another
// parser might read differently: duplicate object keys (RFC 7519 §4 lets a
// recipient reject them; two parsers picking different duplicates is a known
// bypass), invalid UTF-8 and unpaired surrogate escapes (which encoding/json
// turns into U+FFFD while others keep or refuse them; RFC 8259 §8.1), and
// control characters (C0, DEL and C1, raw or \u-escaped: strings are checked
// after decoding) inside strings, which would travel into identity headers
// and logs.
func checkStrictJSON(data []byte) error {
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

// checkSurrogates walks the JSON text's string escapes and refuses a \u
// escape of a UTF-16 surrogate that is not part of a high-low pair.
func checkSurrogates(data []byte) error {
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(data) {
				return nil // the decoder reports the truncation
			}
			i++
			if data[i] != 'u' {
				continue
			}
			r, ok := hex4(data, i+1)
			if !ok {
				return nil // the decoder reports the bad escape
			}
			i += 4
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return fmt.Errorf("%w: unpaired surrogate escape in a string", ErrMalformed)
			case r >= 0xd800 && r <= 0xdbff:
				lo, ok := rune(0), false
				if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
					lo, ok = hex4(data, i+3)
				}
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return fmt.Errorf("%w: unpaired surrogate escape in a string", ErrMalformed)
				}
				i += 6
			}
		}
	}
	return nil
}

func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

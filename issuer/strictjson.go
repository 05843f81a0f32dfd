package issuer

import (
	"bytes"
	"encoding/json"
	"fmt"
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
//
// json.Valid checks the syntax without allocating; the walk after it can
// then take the text as well-formed. (It replaced json.Decoder.Token, whose
// hundred-odd allocations per token were a fifth of a cache miss.)
func checkStrictJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: JSON is not valid UTF-8", ErrMalformed)
	}
	if !json.Valid(data) {
		return fmt.Errorf("%w: not valid JSON", ErrMalformed)
	}
	if err := checkSurrogates(data); err != nil {
		return err
	}
	w := strictWalker{b: data}
	return w.value(0)
}

// strictWalker walks JSON text that json.Valid accepted.
type strictWalker struct {
	b []byte
	i int
}

func (w *strictWalker) space() {
	for w.i < len(w.b) && (w.b[w.i] == ' ' || w.b[w.i] == '\t' || w.b[w.i] == '\n' || w.b[w.i] == '\r') {
		w.i++
	}
}

// value walks one value; depth is how many arrays and objects enclose it.
func (w *strictWalker) value(depth int) error {
	w.space()
	switch w.b[w.i] {
	case '{', '[':
		if depth >= maxJSONDepth {
			return fmt.Errorf("%w: JSON nested too deeply", ErrMalformed)
		}
		if w.b[w.i] == '{' {
			return w.object(depth + 1)
		}
		return w.array(depth + 1)
	case '"':
		_, err := w.str()
		return err
	}
	for ; w.i < len(w.b); w.i++ { // a number or literal
		switch w.b[w.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return nil
		}
	}
	return nil
}

// linearKeys is how many keys an object's duplicate check compares one by
// one before it switches to a map.
const linearKeys = 16

func (w *strictWalker) object(depth int) error {
	w.i++ // {
	var small [linearKeys][]byte
	keys := small[:0]
	var many map[string]struct{}
	for {
		w.space()
		if w.b[w.i] == '}' {
			w.i++
			return nil
		}
		key, err := w.str()
		if err != nil {
			return err
		}
		dup := false
		if many != nil {
			_, dup = many[string(key)]
			many[string(key)] = struct{}{}
		} else {
			for _, k := range keys {
				dup = dup || bytes.Equal(k, key)
			}
			if keys = append(keys, key); len(keys) > linearKeys {
				many = make(map[string]struct{}, 2*linearKeys)
				for _, k := range keys {
					many[string(k)] = struct{}{}
				}
			}
		}
		if dup {
			return fmt.Errorf("%w: duplicate key %q", ErrMalformed, key)
		}
		w.space()
		w.i++ // :
		if err := w.value(depth); err != nil {
			return err
		}
		w.space()
		if w.b[w.i] == ',' {
			w.i++
		}
	}
}

func (w *strictWalker) array(depth int) error {
	w.i++ // [
	for {
		w.space()
		if w.b[w.i] == ']' {
			w.i++
			return nil
		}
		if err := w.value(depth); err != nil {
			return err
		}
		w.space()
		if w.b[w.i] == ',' {
			w.i++
		}
	}
}

// str reads the string at w.i and returns its decoded bytes, refusing
// control characters in them.
func (w *strictWalker) str() ([]byte, error) {
	start := w.i
	escaped := false
	for w.i++; w.b[w.i] != '"'; w.i++ {
		if w.b[w.i] == '\\' {
			escaped = true
			w.i++ // the escaped byte cannot end the string
		}
	}
	w.i++
	s := w.b[start+1 : w.i-1]
	if escaped { // rare in tokens: let encoding/json decode the escapes
		var d string
		if err := json.Unmarshal(w.b[start:w.i], &d); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		s = []byte(d)
	}
	if claim.HasControl(s) {
		return nil, fmt.Errorf("%w: control character in a string", ErrMalformed)
	}
	return s, nil
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

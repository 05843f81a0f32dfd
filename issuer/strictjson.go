package issuer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxJSONDepth bounds nesting so a crafted token cannot make the check deep.
const maxJSONDepth = 16

// checkStrictJSON refuses what encoding/json silently accepts but another
// parser might read differently: duplicate object keys (RFC 7519 §4 lets a
// recipient reject them; two parsers picking different duplicates is a known
// bypass), and control characters inside strings, which would travel into
// identity headers and logs.
func checkStrictJSON(data []byte) error {
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
			if hasControl(t) {
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
		return errors.New("unbalanced JSON")
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

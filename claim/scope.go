// Package claim gives a token's claims their meaning, independent of how the
// token is encoded: the one scope parser (RFC 6749 §3.3) used for every
// issuer's tokens and for configured scopes, typed claim values as routes
// require them and identity headers carry them, and the lookup of a claim by
// name (whole first, then as a dotted path into nested objects).
// It has no I/O and no knowledge of JWT; policy, issuer and config share it.
package claim

import (
	"errors"
	"fmt"
)

// ErrScope means a scope value is not a list of RFC 6749 §3.3 scope-tokens.
var ErrScope = errors.New("scope is not made of RFC 6749 §3.3 scope-tokens")

// ValidScope reports whether s is one RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ), that is printable ASCII except space, '"'
// and '\'. Anything else (Unicode spaces such as U+00A0 included) is refused
// rather than guessed at: two parsers splitting differently is how one scope
// string becomes two grants.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ParseScope splits a space-delimited scope string (RFC 6749 §3.3) on the
// ASCII space 0x20 only; empty pieces from repeated, leading or trailing
// spaces are ignored. A piece that is not a scope-token makes the whole value
// invalid (ErrScope): a token whose scope we cannot read exactly grants
// nothing. The result keeps the first occurrence of each scope, in order.
func ParseScope(s string) ([]string, error) {
	var out []string
	for s != "" {
		i := 0
		for i < len(s) && s[i] != ' ' {
			i++
		}
		piece := s[:i]
		if i < len(s) {
			s = s[i+1:]
		} else {
			s = ""
		}
		if piece == "" {
			continue
		}
		if !ValidScope(piece) {
			return nil, fmt.Errorf("%w: %q", ErrScope, Bound(piece))
		}
		out = appendNew(out, piece)
	}
	return out, nil
}

// ScopeList checks an array of scopes, as Ory Hydra's and Entra ID's scp
// claims carry them: each element is one scope-token, never split further,
// so an element holding a space is invalid.
func ScopeList(elems []string) ([]string, error) {
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		if !ValidScope(e) {
			return nil, fmt.Errorf("%w: element %q", ErrScope, Bound(e))
		}
		out = appendNew(out, e)
	}
	return out, nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// maxQuoted bounds the part of an offending value an error message repeats.
const maxQuoted = 64

// Bound cuts s for an error message, so a crafted token cannot make an
// error (and a log line quoting it) large.
func Bound(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "…"
}

package policy

import "errors"

// ErrAmbiguousPath is returned for request targets that different servers
// could read differently. They are refused, never normalised and forwarded:
// normalising in the proxy but not the upstream (or the reverse) is how
// CVE-2019-9901 (Envoy), CVE-2021-29492 and GHSA-p224-6x5r-fjpm bypassed
// path-based policy.
var ErrAmbiguousPath = errors.New("ambiguous request path")

// Path is a request path that passed the firewall.
type Path struct {
	// Match is the fully decoded path that routes are matched against.
	Match string
	// Raw is the form sent upstream: encoded unreserved characters are
	// decoded, other percent-encodings kept, so it decodes to Match.
	Raw string
}

// CleanPath checks the escaped path of a request target (no query) and
// returns its match and forward forms. It refuses: a missing leading slash,
// "//", dot segments (also %2e-encoded), encoded "/" or "\" (%2f, %5c),
// "\", ";", "#", "%25" (double encoding), malformed escapes, NUL and other
// control or raw non-ASCII bytes, and encoded ";" or "#". It decides on the
// decoded bytes, so it also refuses a segment that ends in "." or begins or
// ends in a space (Windows and IIS drop them: "/admin." and "/admin%20" are
// "/admin" there), percent-encodings that are not valid UTF-8 (overlong
// "%c0%ae" is "." to lax decoders), and characters that compatibility
// normalisation, best-fit conversion or trimming could turn into ASCII or
// nothing (see foldable). A path without escapes costs no allocation.
func CleanPath(escaped string) (Path, error) {
	if len(escaped) == 0 || escaped[0] != '/' {
		return Path{}, ErrAmbiguousPath
	}
	hasPct := false
	for i := 0; i < len(escaped); i++ {
		c := escaped[i]
		switch {
		case c == '%':
			hasPct = true
		case c <= 0x20 || c >= 0x7f, c == '\\', c == ';', c == '#', c == '?':
			return Path{}, ErrAmbiguousPath
		case c == '/' && i > 0 && escaped[i-1] == '/':
			return Path{}, ErrAmbiguousPath
		}
	}
	if !hasPct {
		if badSegment(escaped) {
			return Path{}, ErrAmbiguousPath
		}
		return Path{Match: escaped, Raw: escaped}, nil // fast path: no allocation
	}
	match := make([]byte, 0, len(escaped))
	raw := make([]byte, 0, len(escaped))
	for i := 0; i < len(escaped); i++ {
		c := escaped[i]
		if c != '%' {
			match, raw = append(match, c), append(raw, c)
			continue
		}
		if i+2 >= len(escaped) {
			return Path{}, ErrAmbiguousPath
		}
		hi, ok1 := unhex(escaped[i+1])
		lo, ok2 := unhex(escaped[i+2])
		if !ok1 || !ok2 {
			return Path{}, ErrAmbiguousPath
		}
		d := hi<<4 | lo
		switch {
		case d == '/', d == '\\', d == '%', d == ';', d == '#', d < 0x20, d == 0x7f:
			return Path{}, ErrAmbiguousPath
		case unreserved(d):
			match, raw = append(match, d), append(raw, d)
		default:
			match = append(match, d)
			raw = append(raw, '%', upperHex[hi], upperHex[lo])
		}
		i += 2
	}
	m := string(match)
	if badSegment(m) || badUnicode(m) {
		return Path{}, ErrAmbiguousPath
	}
	return Path{Match: m, Raw: string(raw)}, nil
}

// badSegment reports a segment that servers read differently: a dot
// segment (RFC 3986 §5.2.4 removes "." and ".."), one ending in "." (Win32
// path normalisation strips trailing dots, so "/admin." and "/admin.." name
// "/admin" on IIS), and one beginning or ending in a space (stripped the
// same way, and by trimming routers).
func badSegment(p string) bool {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if seg := p[start:i]; seg != "" {
				if seg[len(seg)-1] == '.' || seg[len(seg)-1] == ' ' || seg[0] == ' ' {
					return true
				}
			}
			start = i + 1
		}
	}
	return false
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unreserved reports RFC 3986 §2.3 unreserved characters, whose percent
// encodings are equivalent to the characters themselves (§6.2.2.2).
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

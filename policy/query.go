package policy

import (
	"bytes"
	"strings"
)

// accessToken is the RFC 6750 §2.3 query parameter name.
const accessToken = "access_token"

// maxQueryDecodes bounds how many times a parameter name is percent-decoded
// while looking for a hidden access_token ("%2561ccess_token" needs two).
const maxQueryDecodes = 4

// HasAccessToken reports whether any parameter of a raw query could be read
// as access_token by some server, reading names as the most lenient parser
// would: split on "&" and ";" (older Python, Java servlet containers),
// percent-decoded (repeatedly, for double-decoding stacks) with "+" as a
// space, case-insensitive (ASP.NET), leading spaces dropped, and " ", "."
// and an unmatched "[" read as "_" with "name[...]" read as "name" (PHP).
// Tokens in URLs end up in logs and Referer headers (RFC 6750 §5.3), and a
// parameter Portcullis did not see as a token but the upstream reads as one
// would be a second, unverified credential. Names shorter than
// "access_token" are skipped without decoding, so ordinary queries cost a
// scan and no allocation.
func HasAccessToken(rawQuery string) bool { return hasParam(rawQuery, accessToken) }

// HasMethodOverride reports a "_method" query parameter, read as
// HasAccessToken reads names. Symfony and Laravel take a POST carrying
// ?_method=DELETE for a DELETE: the upstream would run a method no route
// was matched for.
func HasMethodOverride(rawQuery string) bool { return hasParam(rawQuery, methodOverride) }

// methodOverride is the query parameter PHP frameworks read as the method.
const methodOverride = "_method"

// hasParam reports a parameter of rawQuery whose name reads as name (ASCII,
// lower case).
func hasParam(rawQuery, name string) bool {
	for rawQuery != "" {
		pair := rawQuery
		if i := strings.IndexAny(rawQuery, "&;"); i >= 0 {
			pair, rawQuery = rawQuery[:i], rawQuery[i+1:]
		} else {
			rawQuery = ""
		}
		key, _, _ := strings.Cut(pair, "=")
		// Decoding and normalising only shorten a name.
		if len(key) >= len(name) && readsAs(key, name) {
			return true
		}
	}
	return false
}

func readsAs(key, want string) bool {
	var buf [64]byte
	name := append(buf[:0], key...)
	for range maxQueryDecodes {
		var changed bool
		name, changed = queryUnescape(name)
		if !changed {
			break
		}
	}
	// PHP: leading spaces dropped, "name[...]" is an array named name, an
	// unmatched "[" becomes "_", as do " " and ".".
	i := 0
	for i < len(name) && name[i] == ' ' {
		i++
	}
	name = name[i:]
	if open := bytes.IndexByte(name, '['); open >= 0 {
		if bytes.IndexByte(name[open:], ']') >= 0 {
			name = name[:open]
		} else {
			name[open] = '_'
		}
	}
	if nul := bytes.IndexByte(name, 0); nul >= 0 {
		name = name[:nul] // C-string handling stops at NUL
	}
	ascii := true
	for j, c := range name {
		switch {
		case c == ' ' || c == '.':
			name[j] = '_'
		case c >= 'A' && c <= 'Z':
			name[j] = c + 'a' - 'A'
		case c >= 0x80:
			ascii = false
		}
	}
	if ascii {
		return string(name) == want // compiled to a comparison, no copy
	}
	// Unicode case folding maps "ſ" to "s" and the Kelvin sign to "k".
	return strings.EqualFold(string(name), want)
}

// queryUnescape decodes %XX and "+" in place; malformed escapes stay as
// they are (a lenient parser keeps them).
func queryUnescape(b []byte) ([]byte, bool) {
	out := b[:0]
	changed := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '+':
			c, changed = ' ', true
		case c == '%' && i+2 < len(b):
			hi, ok1 := unhex(b[i+1])
			lo, ok2 := unhex(b[i+2])
			if ok1 && ok2 {
				c, changed = hi<<4|lo, true
				i += 2
			}
		}
		out = append(out, c)
	}
	return out, changed
}

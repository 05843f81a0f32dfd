package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// Header names used here. Tests compare them against an independently
// written list, so a typo cannot hide in both.
const (
	hAuthorization   = "Authorization"
	hWWWAuthenticate = "WWW-Authenticate"
	hRetryAfter      = "Retry-After"
	hConnection      = "Connection"
	hXForwardedFor   = "X-Forwarded-For"
	hXForwardedHost  = "X-Forwarded-Host"
	hXForwardedProto = "X-Forwarded-Proto"
	hForwarded       = "Forwarded"
	hRequestID       = "X-Request-Id" // set by the server's middleware
	hRateLimitPolicy = "RateLimit-Policy"
	hRateLimit       = "RateLimit"
	hRateLimitLimit  = "RateLimit-Limit"
	hRateLimitRemain = "RateLimit-Remaining"
	hRateLimitReset  = "RateLimit-Reset"
)

// spoofable lists request headers that never reach the upstream from the
// client: forward-auth inputs and method/URL overrides that some frameworks
// (Symfony, Laravel, IIS rewrite) obey over the real request line, which
// would let a request reach a path or method policy never saw.
var spoofable = []string{
	"x-original-url", "x-original-uri", "x-original-method", "x-rewrite-url",
	"x-http-method-override", "x-http-method", "x-method-override",
	"x-forwarded-method", "x-forwarded-uri", "x-forwarded-prefix",
}

// headerScrubber removes identity headers a client could spoof.
// Immutable; safe for concurrent use.
type headerScrubber struct {
	names []string // lower-case, '-' separated: identity headers + spoofable
}

func newHeaderScrubber(identity []string) *headerScrubber {
	s := &headerScrubber{}
	for _, n := range identity {
		s.names = append(s.names, strings.ToLower(n))
	}
	s.names = append(s.names, spoofable...)
	return s
}

// matches compares a header name with the blocked names as CGI-style servers
// do: case-insensitive, with '_' and '.' read as '-' (X_Auth_Subject and
// X.Auth.Subject become HTTP_X_AUTH_SUBJECT too). It allocates nothing.
func (s *headerScrubber) matches(name string) bool {
	if len(name) >= 7 && sepFoldEqual(name[:7], "x-auth-") {
		return true
	}
	for _, n := range s.names {
		if len(n) == len(name) && sepFoldEqual(name, n) {
			return true
		}
	}
	return false
}

func sepFoldEqual(name, lowerDash string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c == '.':
			c = '-'
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != lowerDash[i] {
			return false
		}
	}
	return true
}

// scrub deletes every blocked header, including ones a Connection header
// nominates, and drops blocked names from Connection itself: otherwise the
// reverse proxy's hop-by-hop removal would later delete the verified
// identity headers we set under those names.
func (s *headerScrubber) scrub(h http.Header) {
	for name := range h {
		if s.matches(name) {
			delete(h, name)
		}
	}
	conn := h[hConnection]
	for i, v := range conn {
		if !s.nominatesBlocked(v) {
			continue
		}
		var kept []string
		for _, tok := range strings.Split(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" && !s.matches(tok) {
				kept = append(kept, tok)
			}
		}
		conn[i] = strings.Join(kept, ", ")
	}
}

// nominatesBlocked walks the comma-separated list without allocating:
// nearly every request has a Connection header, and nearly none is hostile.
func (s *headerScrubber) nominatesBlocked(v string) bool {
	for v != "" {
		tok, rest, _ := strings.Cut(v, ",")
		if s.matches(textproto.TrimString(tok)) {
			return true
		}
		v = rest
	}
	return false
}

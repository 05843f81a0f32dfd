package policy

import (
	"errors"
	"net/netip"
	"strings"
)

// Refusals of a request target other than its path (ErrAmbiguousPath). Each
// front door answers them with 400 invalid_request before any route is
// matched; their messages are safe to show to the client.
var (
	// ErrMethod: not an upper-case RFC 9110 token, or a method that is never
	// forwarded (CONNECT, PRI).
	ErrMethod = errors.New("invalid request method")
	// ErrHost: a host that is not a plain DNS name or IP literal.
	ErrHost = errors.New("invalid host")
	// ErrTarget: a request-target that is not origin-form or absolute-form
	// http(s), or one carrying a fragment.
	ErrTarget = errors.New("invalid request target")
	// ErrMethodOverride: a "_method" query parameter (HasMethodOverride).
	ErrMethodOverride = errors.New("method override in the query")
)

// maxMethodLen bounds a method; the longest registered one (RFC 9110's and
// WebDAV's, e.g. UPDATEREDIRECTREF) has 17 characters.
const maxMethodLen = 32

// maxHostLen is the longest DNS name (RFC 1035 §2.3.4) plus ":65535".
const maxHostLen = 253 + 6

// Target is a validated request target: what every front door (proxy,
// forward-auth, gRPC Check) decides on. It is a plain value.
type Target struct {
	// Method is the request method, checked by ParseMethod (case-sensitive).
	Method string
	// Host is the canonical host (see ParseHost): lower case, no port, no
	// trailing dot, IPv6 in brackets; "" when the request named none.
	Host string
	// Path is the firewalled path: Match for routing, Raw to forward.
	Path Path
	// RawQuery is the query as sent, without "?". It never influences
	// matching or scopes.
	RawQuery string
}

// ParseTarget validates the parts of a request that routing reads: the
// method (ParseMethod), the host (ParseHost), the escaped path (CleanPath)
// and the raw query (no "#": RFC 9112 §3.2 request-targets never carry a
// fragment, and servers disagree on where one ends; no "_method" override,
// see HasMethodOverride). Every front door calls it, so they all refuse the
// same requests; the error is one of ErrMethod, ErrHost, ErrTarget,
// ErrMethodOverride or ErrAmbiguousPath.
func ParseTarget(method, host, rawPath, rawQuery string) (Target, error) {
	if err := ParseMethod(method); err != nil {
		return Target{}, err
	}
	h, err := ParseHost(host)
	if err != nil {
		return Target{}, err
	}
	if strings.IndexByte(rawQuery, '#') >= 0 {
		return Target{}, ErrTarget
	}
	if HasMethodOverride(rawQuery) {
		return Target{}, ErrMethodOverride
	}
	p, err := CleanPath(rawPath)
	if err != nil {
		return Target{}, err
	}
	return Target{Method: method, Host: h, Path: p, RawQuery: rawQuery}, nil
}

// SplitTarget splits an HTTP/1.1 request-target (RFC 9112 §3.2), exactly as
// sent, into the authority (absolute-form only), the escaped path and the
// raw query. Origin-form ("/p?q") and absolute-form with an http or https
// scheme ("http://host/p?q") are accepted. Asterisk-form ("*"),
// authority-form ("host:443", CONNECT's), other schemes, an absolute-form
// target without a path, and any "#" are ErrTarget: a request that is
// refused is never forwarded. It does not allocate.
func SplitTarget(rt string) (authority, rawPath, rawQuery string, err error) {
	if strings.IndexByte(rt, '#') >= 0 {
		return "", "", "", ErrTarget
	}
	if !strings.HasPrefix(rt, "/") {
		rest, ok := cutScheme(rt)
		if !ok {
			return "", "", "", ErrTarget
		}
		i := strings.IndexAny(rest, "/?")
		if i <= 0 || rest[i] != '/' {
			return "", "", "", ErrTarget // no authority, or no path
		}
		authority, rt = rest[:i], rest[i:]
	}
	rawPath, rawQuery, _ = strings.Cut(rt, "?")
	return authority, rawPath, rawQuery, nil
}

// cutScheme removes a case-insensitive "http://" or "https://" prefix.
func cutScheme(s string) (string, bool) {
	for _, scheme := range [...]string{"http://", "https://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			return s[len(scheme):], true
		}
	}
	return "", false
}

// ParseMethod checks a request method. Methods are case-sensitive tokens
// (RFC 9110 §9.1): "get" is not GET, yet some frameworks upper-case it and
// would run a GET handler that a route limited to GET never checked, so a
// method with a lower-case letter is refused, as is any character outside
// tchar (RFC 9110 §5.6.2). CONNECT (§9.3.6) asks for a tunnel, which would
// carry requests no route sees, and PRI is HTTP/2's connection preface
// (RFC 9113 §3.4); neither is ever forwarded.
func ParseMethod(m string) error {
	if m == "" || len(m) > maxMethodLen {
		return ErrMethod
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c >= 'a' && c <= 'z' || !tchar(c) {
			return ErrMethod
		}
	}
	if m == "CONNECT" || m == "PRI" {
		return ErrMethod
	}
	return nil
}

// tchar reports RFC 9110 §5.6.2 token characters.
func tchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ParseHost returns the canonical form of a Host header, URI authority or
// configured route host: lower case (RFC 9110 §4.2.3: the host is
// case-insensitive), without a port and without one trailing dot (the
// fully-qualified "example.com." names example.com), an IPv6 literal
// in brackets in RFC 5952 form. "" stays "". Anything that is not a plain DNS name
// (letters, digits, "-", "_", "." in non-empty labels), an IPv4 address in
// dotted-decimal form or a bracketed IPv6 address, each with at most one
// numeric port, is ErrHost: userinfo ("a@b"), several ports, percent-
// encoding, non-ASCII, and names that resolvers read as numbers ("127.1",
// "0x7f.1", "2130706433") are refused rather than guessed. A name already
// in canonical form is returned without allocating.
func ParseHost(h string) (string, error) {
	name, err := hostName(h)
	if err != nil {
		return "", err
	}
	return lowerASCII(name), nil
}

// hostName is ParseHost without the lower-casing, for the matcher, which
// compares case-insensitively instead of allocating.
func hostName(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	if len(h) > maxHostLen+2 {
		return "", ErrHost
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:]) {
			return "", ErrHost
		}
		a, err := netip.ParseAddr(h[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", ErrHost
		}
		return "[" + a.String() + "]", nil
	}
	name := h
	if i := strings.IndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return "", ErrHost // a second ":" is another port or a bare IPv6
		}
		name = h[:i]
	}
	name = strings.TrimSuffix(name, ".")
	if !validName(name) {
		return "", ErrHost
	}
	if numericName(name) {
		if a, err := netip.ParseAddr(name); err != nil || !a.Is4() {
			return "", ErrHost
		}
	}
	return name, nil
}

// validPort accepts "", ":" and ":" followed by a decimal
// port up to 65535 (RFC 3986 §3.2.3 allows an empty port).
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) > 6 {
		return false
	}
	n := 0
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// validName checks a DNS name's shape: non-empty labels of at most 63
// letters, digits, "-" or "_" (underscores appear in real internal names).
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		if label++; label > 63 {
			return false
		}
	}
	return label > 0
}

// numericName reports a name whose last label is a number (decimal, or hex
// with 0x), which URL parsers (WHATWG §3.5) and inet_aton read as an IPv4
// address: such a name must be a plain dotted-decimal address.
func numericName(s string) bool {
	last := s[strings.LastIndexByte(s, '.')+1:]
	if len(last) > 1 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases s, allocating only when it has an upper-case letter.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

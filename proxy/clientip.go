package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// trust holds the trusted_proxies ranges. Immutable; safe for concurrent use.
type trust struct {
	prefixes []netip.Prefix
}

func (t *trust) trusted(a netip.Addr) bool {
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses http.Request.RemoteAddr. A zone (a link-local peer's
// interface) is dropped: netip.Prefix.Contains never matches a zoned
// address, which would make a trusted link-local proxy untrusted.
func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, _ := netip.ParseAddr(remote)
		return a.WithZone("").Unmap()
	}
	return ap.Addr().WithZone("").Unmap()
}

// origin is who sent a request: the socket peer, whether that peer is a
// trusted proxy, and the client behind it.
type origin struct {
	peer    netip.Addr
	trusted bool
	client  netip.Addr
}

// origin works out the request's origin once. The client is the socket
// peer, unless the peer is a trusted proxy, in which case it is the
// rightmost address in X-Forwarded-For (or, without it, Forwarded) that is
// not itself trusted. Entries left of an untrusted hop are ignored: anyone
// could have written them. A malformed entry stops the walk at the last
// good address.
func (t *trust) origin(r *http.Request) origin {
	o := origin{peer: peerAddr(r.RemoteAddr)}
	o.trusted = o.peer.IsValid() && t.trusted(o.peer)
	o.client = o.peer
	if o.trusted {
		o.client = t.walk(o.peer, r.Header[hXForwardedFor], r.Header[hForwarded])
	}
	return o
}

// walk finds the client behind a trusted peer (see origin).
func (t *trust) walk(peer netip.Addr, xff, forwarded []string) netip.Addr {
	var hops []string
	if len(xff) > 0 {
		for _, h := range xff {
			for _, part := range strings.Split(h, ",") {
				hops = append(hops, strings.TrimSpace(part))
			}
		}
	} else {
		hops = forwardedFor(forwarded)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return client
		}
		client = a
		if !t.trusted(a) {
			return a
		}
	}
	return client
}

// parseHop reads one address: "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
// "[2001:db8::1]:80", "192.0.2.1:80", with RFC 7239 §6.3 obfuscated ports
// ("_x") too. The port and an IPv6 zone ("fe80::1%eth0") are dropped and an
// IPv4-mapped address is its IPv4 address, so one client is one key
// whatever a proxy wrote.
func parseHop(s string) (netip.Addr, bool) {
	host := s
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 || !validHopPort(s[end+1:]) {
			return netip.Addr{}, false
		}
		host = s[1:end]
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		if !validHopPort(s[i:]) {
			return netip.Addr{}, false
		}
		host = s[:i]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// validHopPort accepts "", ":" + a decimal port, or ":" + an RFC 7239 §6.3
// obfuscated port ("_" followed by ALPHA / DIGIT / "." / "_" / "-").
func validHopPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) < 2 || p[0] != ':' {
		return false
	}
	digits, obf := true, p[1] == '_' && len(p) > 2
	for i := 1; i < len(p); i++ {
		c := p[i]
		isDigit := c >= '0' && c <= '9'
		digits = digits && isDigit
		obf = obf && (isDigit || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-')
	}
	return (digits && len(p) <= 6) || obf
}

// forwardedFor extracts the for= values of RFC 7239 Forwarded headers, in
// order. Obfuscated identifiers ("unknown", "_hidden") come back as-is and
// fail to parse, which stops the walk.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				name, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(name, "for") {
					out = append(out, strings.Trim(val, `"`))
				}
			}
		}
	}
	return out
}

// ipKey is the rate-limit key for an address: IPv6 clients are keyed by
// their /64, since one host commonly holds a whole /64.
func ipKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

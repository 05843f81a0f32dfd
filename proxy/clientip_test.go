package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/config"
)

var clientIPCases = []struct {
	name      string
	trusted   []string
	peer      string
	xff       []string
	forwarded []string
	want      string
}{
	{"no trust: socket", nil, "198.51.100.1", []string{"203.0.113.9"}, nil, "198.51.100.1"},
	{"untrusted peer: socket", []string{"10.0.0.0/8"}, "198.51.100.1", []string{"203.0.113.9"}, nil, "198.51.100.1"},
	{"trusted peer: rightmost untrusted", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"6.6.6.6, 203.0.113.9, 10.0.0.2"}, nil, "203.0.113.9"},
	{"several XFF headers", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"6.6.6.6", "203.0.113.9"}, nil, "203.0.113.9"},
	{"all trusted: leftmost", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"10.1.1.1, 10.0.0.2"}, nil, "10.1.1.1"},
	{"garbage stops the walk", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"203.0.113.9, nonsense"}, nil, "10.0.0.1"},
	{"forwarded header", []string{"10.0.0.0/8"}, "10.0.0.1", nil, []string{`for=198.51.100.7;proto=https, for="[2001:db8::1]:443"`}, "2001:db8::1"},
	{"forwarded with port", []string{"10.0.0.0/8"}, "10.0.0.1", nil, []string{"for=198.51.100.7:1234"}, "198.51.100.7"},
	{"forwarded unknown", []string{"10.0.0.0/8"}, "10.0.0.1", nil, []string{"for=unknown"}, "10.0.0.1"},
	{"mapped v4", []string{"10.0.0.0/8"}, "::ffff:10.0.0.1", []string{"203.0.113.9"}, nil, "203.0.113.9"},
	{"xff ipv4 port dropped", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"203.0.113.9:4711"}, nil, "203.0.113.9"},
	{"xff ipv6 port dropped", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"[2001:db8::1]:4711"}, nil, "2001:db8::1"},
	{"xff ipv6 brackets", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"[2001:db8::1]"}, nil, "2001:db8::1"},
	{"xff zone dropped", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"fe80::1%eth0"}, nil, "fe80::1"},
	{"xff zone and port dropped", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"[fe80::1%25eth0]:80"}, nil, "fe80::1"},
	{"xff mapped is ipv4", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"::ffff:203.0.113.9"}, nil, "203.0.113.9"},
	{"xff mapped trusted hop skipped", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"203.0.113.9, ::ffff:10.0.0.2"}, nil, "203.0.113.9"},
	{"xff bad port stops the walk", []string{"10.0.0.0/8"}, "10.0.0.1", []string{"203.0.113.9:http"}, nil, "10.0.0.1"},
	{"forwarded obfuscated port", []string{"10.0.0.0/8"}, "10.0.0.1", nil, []string{`for="[2001:db8::1]:_a1"`}, "2001:db8::1"},
	{"forwarded mapped", []string{"10.0.0.0/8"}, "10.0.0.1", nil, []string{`For="[::ffff:198.51.100.7]"`}, "198.51.100.7"},
	{"forwarded zone", []string{"10.0.0.0/8"}, "10.0.0.1", nil, []string{`for="[fe80::1%25eth0]"`}, "fe80::1"},
	{"zoned trusted peer", []string{"fe80::/10"}, "fe80::1%eth0", []string{"203.0.113.9"}, nil, "203.0.113.9"},
}

// clientOf asks origin about a request from peer carrying these headers.
func clientOf(tr *trust, peer netip.Addr, xff, forwarded []string) netip.Addr {
	r := &http.Request{RemoteAddr: netip.AddrPortFrom(peer, 1234).String(), Header: http.Header{}}
	if xff != nil {
		r.Header[hXForwardedFor] = xff
	}
	if forwarded != nil {
		r.Header[hForwarded] = forwarded
	}
	return tr.origin(r).client
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	for _, tc := range clientIPCases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &trust{}
			for _, p := range tc.trusted {
				pfx, _ := config.ParsePrefix(p)
				tr.prefixes = append(tr.prefixes, pfx)
			}
			got := clientOf(tr, netip.MustParseAddr(tc.peer), tc.xff, tc.forwarded)
			if got.String() != tc.want {
				t.Errorf("clientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestIPKeyGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	a := ipKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := ipKey(netip.MustParseAddr("2001:db8:1:2:bbbb::2"))
	c := ipKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("keys %s %s %s: want the same /64 to share and another to differ", a, b, c)
	}
	if ipKey(netip.MustParseAddr("192.0.2.1")) != "192.0.2.1" {
		t.Error("IPv4 key changed")
	}
}

// FuzzClientIP: whatever the headers say, the answer is the peer or an
// address that appears in them, and never a trusted address when an
// untrusted one was on the path.
func FuzzClientIP(f *testing.F) {
	for _, tc := range clientIPCases {
		f.Add(tc.peer, strings.Join(tc.xff, "\n"), strings.Join(tc.forwarded, "\n"))
	}
	tr := &trust{prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, peer, xff, fwd string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		p = p.WithZone("").Unmap() // as origin reads a peer
		var xs, fs []string
		if xff != "" {
			xs = strings.Split(xff, "\n")
		}
		if fwd != "" {
			fs = strings.Split(fwd, "\n")
		}
		got := clientOf(tr, p, xs, fs)
		if !got.IsValid() {
			t.Fatalf("invalid client IP for peer %s", p)
		}
		if !tr.trusted(p) && got != p {
			t.Fatalf("untrusted peer %s yielded %s", p, got)
		}
		if got == p {
			return
		}
		// Otherwise the answer is one of the hops the headers named.
		var hops []string
		for _, x := range xs {
			hops = append(hops, strings.Split(x, ",")...)
		}
		if len(xs) == 0 {
			hops = forwardedFor(fs)
		}
		for _, h := range hops {
			if a, ok := parseHop(strings.TrimSpace(h)); ok && a == got {
				return
			}
		}
		t.Fatalf("client IP %s is neither the peer nor a hop of %q / %q", got, xff, fwd)
	})
}

func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer x", "Basic YTpi", "Bearer ", "Bearer  a b", "",
		"Bearer a,Bearer b", `Digest username="a", realm="x,y"`, "Basic YTpi, Bearer b", `Digest a="\",Bearer b"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, sent, err := bearer([]string{h})
		if err == nil && sent && (tok == "" || strings.HasPrefix(tok, " ") || strings.HasSuffix(tok, " ")) {
			t.Fatalf("bearer(%q) = %q", h, tok)
		}
		if !sent && tok != "" {
			t.Fatalf("bearer(%q) returned a token without one being sent", h)
		}
		if err == nil && strings.Contains(tok, ",") {
			t.Fatalf("bearer(%q) = %q: a comma-joined list taken for one token", h, tok)
		}
	})
}

func TestHeaderNamesAreSpelledRight(t *testing.T) {
	t.Parallel()
	// Written independently of the constants, so a typo cannot hide in both.
	golden := map[string]string{
		hAuthorization: "Authorization", hWWWAuthenticate: "WWW-Authenticate", hRetryAfter: "Retry-After",
		hRateLimitPolicy: "RateLimit-Policy", hRateLimit: "RateLimit", hRateLimitLimit: "RateLimit-Limit",
		hRateLimitRemain: "RateLimit-Remaining", hRateLimitReset: "RateLimit-Reset", hXForwardedFor: "X-Forwarded-For",
		hForwarded: "Forwarded", hXForwardedMethod: "X-Forwarded-Method", hXForwardedURI: "X-Forwarded-Uri",
		hXOriginalURL: "X-Original-Url", hXOriginalURI: "X-Original-Uri", hXOriginalMethod: "X-Original-Method",
	}
	for got, want := range golden {
		if got != want {
			t.Errorf("header constant %q, want %q", got, want)
		}
	}
	for _, name := range []string{"Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options", "Content-Security-Policy", "Referrer-Policy"} {
		if _, ok := config.DefaultSecurityHeaders()[name]; !ok {
			t.Errorf("default security headers lack %s", name)
		}
	}
}

func TestScrubberMatchesCGIAliases(t *testing.T) {
	t.Parallel()
	s := newHeaderScrubber([]string{"X-User"})
	for name, want := range map[string]bool{
		"X-Auth-Subject": true, "X_Auth_Subject": true, "X.Auth.Subject": true, "x-auth-whatever": true,
		"X-User": true, "X_USER": true, "X-Original-Url": true, "X-Http-Method-Override": true,
		"X-Authorization": false, "X-Userx": false, "Accept": false, "X-Aut": false,
	} {
		if got := s.matches(name); got != want {
			t.Errorf("matches(%q) = %v, want %v", name, got, want)
		}
	}
}

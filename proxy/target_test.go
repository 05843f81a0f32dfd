package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// targetConfig puts a stricter route behind a host and a method, so a
// request that spells either differently and slips past it lands on the
// public catch-all: a bypass shows as a 200 the upstream saw.
const targetConfig = `
environment: development
upstream: {url: "${UPSTREAM}", timeout: 5s}
issuer:
  url: https://auth.test
  keys: [{id: es, algorithm: ES256, private_key_file: key.pem}]
audience: [orders-api]
routes:
  - {path: /, host: Secure.Example.COM., scopes: [admin]}
  - {path: /orders, methods: [GET], auth: none}
  - {path: /orders, scopes: [orders:write]}
  - {path: /admin, scopes: [admin]}
  - {path: /, auth: none}
`

// send writes a request exactly as given (request line and headers, no
// body) and returns the response with its body read.
func send(t testing.TB, addr, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", request, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestRequestTargetSpellings(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, targetConfig)
	admin := e.token(t, "alice", "admin", nil)
	tests := []struct {
		name       string
		line       string // request line without " HTTP/1.1"
		host       string // Host header; "-" for none
		headers    []string
		wantStatus int
		// what the upstream must have received; empty wantURI: nothing
		wantMethod, wantURI, wantHost string
	}{
		{name: "plain", line: "GET /x", host: "app.test", wantStatus: 200, wantMethod: "GET", wantURI: "/x", wantHost: "app.test"},

		// Host spellings of the restricted route all reach it.
		{name: "host as configured", line: "GET /x", host: "secure.example.com", wantStatus: 401},
		{name: "host upper case", line: "GET /x", host: "SECURE.Example.com", wantStatus: 401},
		{name: "host trailing dot", line: "GET /x", host: "secure.example.com.", wantStatus: 401},
		{name: "host port", line: "GET /x", host: "secure.example.com:8443", wantStatus: 401},
		{name: "host dot and port", line: "GET /x", host: "Secure.Example.COM.:8443", wantStatus: 401},
		{name: "host empty port", line: "GET /x", host: "secure.example.com:", wantStatus: 401},
		{name: "host allowed with token", line: "GET /x", host: "Secure.Example.COM.:8443", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 200, wantMethod: "GET", wantURI: "/x", wantHost: "secure.example.com:8443"},
		{name: "host trailing dot forwarded canonical", line: "GET /x", host: "secure.example.com.", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 200, wantMethod: "GET", wantURI: "/x", wantHost: "secure.example.com"},
		{name: "ipv6 host", line: "GET /x", host: "[::1]:80", wantStatus: 200, wantMethod: "GET", wantURI: "/x", wantHost: "[::1]:80"},
		{name: "ipv6 host canonical", line: "GET /x", host: "[0:0::1]", wantStatus: 200, wantMethod: "GET", wantURI: "/x", wantHost: "[::1]"},
		{name: "empty port dropped", line: "GET /x", host: "app.test:", wantStatus: 200, wantMethod: "GET", wantURI: "/x", wantHost: "app.test"},
		// Hosts that could mean two things are refused.
		{name: "host two trailing dots", line: "GET /x", host: "secure.example.com..", wantStatus: 400},
		{name: "host userinfo", line: "GET /x", host: "user@secure.example.com", wantStatus: 400},
		{name: "host two ports", line: "GET /x", host: "secure.example.com:80:80", wantStatus: 400},
		{name: "host list", line: "GET /x", host: "app.test,secure.example.com", wantStatus: 400},
		{name: "host numeric shorthand", line: "GET /x", host: "127.1", wantStatus: 400},
		{name: "host zone", line: "GET /x", host: "[fe80::1%25lo]", wantStatus: 400},
		{name: "host bare ipv6", line: "GET /x", host: "::1", wantStatus: 400},
		{name: "host percent", line: "GET /x", host: "secure%2eexample.com", wantStatus: 400},
		{name: "two hosts", line: "GET /x", host: "app.test\r\nHost: secure.example.com", wantStatus: 400},

		// Request-target forms.
		{name: "absolute-form decides on its host", line: "GET http://secure.example.com/x", host: "app.test", wantStatus: 401},
		{name: "absolute-form host is what the upstream gets", line: "GET http://app.test/x?q=1", host: "secure.example.com", wantStatus: 200, wantMethod: "GET", wantURI: "/x?q=1", wantHost: "app.test"},
		{name: "absolute-form userinfo", line: "GET http://user@secure.example.com/x", host: "app.test", wantStatus: 400},
		{name: "absolute-form other scheme", line: "GET ftp://app.test/x", host: "app.test", wantStatus: 400},
		{name: "absolute-form without path", line: "GET http://app.test", host: "app.test", wantStatus: 400},
		{name: "absolute-form path trick", line: "GET http://app.test/x/%2e%2e/admin", host: "app.test", wantStatus: 400},
		{name: "asterisk-form GET", line: "GET *", host: "app.test", wantStatus: 400},
		{name: "authority-form GET", line: "GET app.test:80", host: "app.test", wantStatus: 400},
		{name: "fragment in target", line: "GET /x#/../admin", host: "app.test", wantStatus: 400},
		{name: "fragment in query", line: "GET /x?a#b", host: "app.test", wantStatus: 400},

		// Methods are case-sensitive tokens; tunnels are never forwarded.
		{name: "lower-case method", line: "get /orders", host: "app.test", wantStatus: 400},
		{name: "mixed-case method", line: "Get /orders", host: "app.test", wantStatus: 400},
		{name: "lower-case write", line: "post /orders", host: "app.test", wantStatus: 400},
		{name: "lower-case on public route", line: "get /x", host: "app.test", wantStatus: 400},
		{name: "GET allowed", line: "GET /orders", host: "app.test", wantStatus: 200, wantMethod: "GET", wantURI: "/orders", wantHost: "app.test"},
		{name: "POST needs a token", line: "POST /orders", host: "app.test", wantStatus: 401},
		{name: "CONNECT authority-form", line: "CONNECT app.test:443", host: "app.test:443", wantStatus: 400},
		{name: "CONNECT origin-form", line: "CONNECT /x", host: "app.test", wantStatus: 400},
		{name: "PRI", line: "PRI /x", host: "app.test", wantStatus: 400},
		{name: "method override in query", line: "GET /orders?_method=DELETE", host: "app.test", wantStatus: 400},
		{name: "encoded method override", line: "POST /x?%5Fmethod=DELETE", host: "app.test", wantStatus: 400},

		// Paths that other servers read as another path.
		{name: "trailing dot", line: "GET /admin.", host: "app.test", wantStatus: 400},
		{name: "encoded trailing dot", line: "GET /admin%2e", host: "app.test", wantStatus: 400},
		{name: "trailing encoded space", line: "GET /admin%20", host: "app.test", wantStatus: 400},
		{name: "leading encoded space", line: "GET /%20admin", host: "app.test", wantStatus: 400},
		{name: "encoded tab", line: "GET /admin%09", host: "app.test", wantStatus: 400},
		{name: "no-break space", line: "GET /admin%C2%A0", host: "app.test", wantStatus: 400},
		{name: "ideographic space", line: "GET /admin%E3%80%80", host: "app.test", wantStatus: 400},
		{name: "zero width space", line: "GET /admin%E2%80%8B", host: "app.test", wantStatus: 400},
		{name: "overlong dots", line: "GET /x/%c0%ae%c0%ae/admin", host: "app.test", wantStatus: 400},
		{name: "3-byte overlong dot", line: "GET /x/%e0%80%ae%e0%80%ae/admin", host: "app.test", wantStatus: 400},
		{name: "fullwidth solidus", line: "GET /x%EF%BC%8F..%EF%BC%8Fadmin", host: "app.test", wantStatus: 400},
		{name: "fullwidth letters", line: "GET /%EF%BD%81dmin", host: "app.test", wantStatus: 400},
		{name: "division slash", line: "GET /x%E2%88%95admin", host: "app.test", wantStatus: 400},
		{name: "non-ASCII letters pass", line: "GET /caf%C3%A9", host: "app.test", wantStatus: 200, wantMethod: "GET", wantURI: "/caf%C3%A9", wantHost: "app.test"},
		{name: "inner encoded space passes", line: "GET /a%20b", host: "app.test", wantStatus: 200, wantMethod: "GET", wantURI: "/a%20b", wantHost: "app.test"},

		// access_token in the query, however its name is spelled.
		{name: "query token", line: "GET /admin?access_token=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "encoded query token name", line: "GET /admin?%61ccess_token=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "encoded underscore", line: "GET /admin?access%5Ftoken=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "double-encoded name", line: "GET /admin?%2561ccess_token=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "semicolon separator", line: "GET /admin?a=1;access_token=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "upper-case name", line: "GET /admin?ACCESS_TOKEN=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "php dot name", line: "GET /admin?access.token=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "php array name", line: "GET /admin?access_token[]=x", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 400},
		{name: "query token without header", line: "GET /admin?access%5Ftoken=" + admin, host: "app.test", wantStatus: 400},
		{name: "query token on public route is ignored", line: "GET /x?access_token=1", host: "app.test", wantStatus: 200, wantMethod: "GET", wantURI: "/x?access_token=1", wantHost: "app.test"},
		{name: "other query passes as sent", line: "GET /admin?next=%23top&q=a+b", host: "app.test", headers: []string{"Authorization: Bearer " + admin}, wantStatus: 200, wantMethod: "GET", wantURI: "/admin?next=%23top&q=a+b", wantHost: "app.test"},
		{name: "query never routes", line: "GET /x?/admin", host: "app.test", wantStatus: 200, wantMethod: "GET", wantURI: "/x?/admin", wantHost: "app.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			var b strings.Builder
			fmt.Fprintf(&b, "%s HTTP/1.1\r\n", tc.line)
			if tc.host != "-" {
				fmt.Fprintf(&b, "Host: %s\r\n", tc.host)
			}
			for _, h := range tc.headers {
				b.WriteString(h + "\r\n")
			}
			b.WriteString("Connection: close\r\n\r\n")
			resp, body := send(t, e.front.Listener.Addr().String(), b.String())
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
			got := e.up.got()
			if tc.wantURI == "" {
				if len(got) != 0 {
					t.Fatalf("upstream received %+v, want nothing", got[0])
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream received %d requests, want 1", len(got))
			}
			if g := got[0]; g.method != tc.wantMethod || g.requestURI != tc.wantURI || g.host != tc.wantHost {
				t.Errorf("upstream received %s %s (Host %s), want %s %s (Host %s)", g.method, g.requestURI, g.host, tc.wantMethod, tc.wantURI, tc.wantHost)
			}
		})
	}
}

func TestForwardAuthTargetSpellings(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, targetConfig+"trusted_proxies: [127.0.0.1]\n")
	tests := []struct {
		name       string
		target     string
		headers    []string
		wantStatus int
	}{
		{"public", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x", "X-Forwarded-Host: app.test"}, 200},
		// Fragments anywhere in the original URL.
		{"fragment in full URL", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test/x#/../admin"}, 400},
		{"fragment after query in full URL", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test/x?a#b"}, 400},
		{"encoded fragment in full URL query", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test/x?a=%23b"}, 400},
		{"fragment in path form", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: /x#y"}, 400},
		{"encoded fragment in path form", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: /x%23y"}, 400},
		{"fragment in X-Forwarded-Uri", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x?a#b"}, 400},
		{"fragment in X-Original-Uri", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-Uri: /x#b"}, 400},
		// Methods as in proxy mode.
		{"lower-case original method", "/auth/verify", []string{"X-Forwarded-Method: get", "X-Forwarded-Uri: /orders"}, 400},
		{"mixed-case original method", "/auth/verify", []string{"X-Original-Method: Post", "X-Original-Uri: /orders"}, 400},
		{"CONNECT original method", "/auth/verify", []string{"X-Forwarded-Method: CONNECT", "X-Forwarded-Uri: /x"}, 400},
		{"upper-case write needs token", "/auth/verify", []string{"X-Forwarded-Method: POST", "X-Forwarded-Uri: /orders"}, 401},
		{"method override in original query", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /orders?_method=DELETE"}, 400},
		// Hosts as in proxy mode.
		{"forwarded host spelled differently", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x", "X-Forwarded-Host: SECURE.example.com.:443"}, 401},
		{"full URL host spelled differently", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://Secure.Example.com.:8443/x"}, 401},
		{"full URL and forwarded host agree", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://secure.example.com/x", "X-Forwarded-Host: secure.example.com:443"}, 401},
		{"full URL and forwarded host disagree", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test/x", "X-Forwarded-Host: secure.example.com"}, 400},
		{"forwarded host userinfo", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x", "X-Forwarded-Host: a@secure.example.com"}, 400},
		{"forwarded host two ports", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x", "X-Forwarded-Host: app.test:1:2"}, 400},
		{"forwarded host list", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x", "X-Forwarded-Host: app.test, secure.example.com"}, 400},
		{"full URL userinfo", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://u@app.test/x"}, 400},
		{"full URL without path", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test"}, 400},
		{"full URL other scheme", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: ftp://app.test/x"}, 400},
		{"full URL raw path checked", "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test/admin%2e"}, 400},
		// Paths as in proxy mode.
		{"trailing dot", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /admin."}, 400},
		{"overlong dot", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /x/%c0%ae%c0%ae/admin"}, 400},
		{"encoded query token name", "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /admin?%61ccess_token=x"}, 400},
		// Envoy's path-suffix form.
		{"suffix trailing space", "/auth/verify/admin%20", nil, 400},
		{"suffix fullwidth", "/auth/verify/x%EF%BC%8Fadmin", nil, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.raw(t, "GET", tc.target, tc.headers...)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
		})
	}
	// The forward-auth request's own method counts in the suffix form.
	resp, body := e.raw(t, "get", "/auth/verify/x")
	if resp.StatusCode != 400 {
		t.Errorf("lower-case forward-auth method: status %d, want 400; body %s", resp.StatusCode, body)
	}
	if n := len(e.up.got()); n != 0 {
		t.Errorf("forward-auth reached the upstream %d times", n)
	}
}

func TestForwardHost(t *testing.T) {
	for _, tc := range []struct{ sent, canon, want string }{
		{"app.test", "app.test", "app.test"},
		{"app.test:8080", "app.test", "app.test:8080"},
		{"App.Test.:8080", "app.test", "app.test:8080"},
		{"app.test.", "app.test", "app.test"},
		{"app.test:", "app.test", "app.test"},
		{"[::1]:80", "[::1]", "[::1]:80"},
		{"[0::1]", "[::1]", "[::1]"},
		{"", "", ""},
	} {
		if got := forwardHost(tc.sent, tc.canon); got != tc.want {
			t.Errorf("forwardHost(%q, %q) = %q, want %q", tc.sent, tc.canon, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = forwardHost("api.example.com:8443", "api.example.com") }); n != 0 {
		t.Errorf("forwardHost allocates %v times for a canonical host, want 0", n)
	}
}

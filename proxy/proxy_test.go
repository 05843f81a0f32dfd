package proxy

import (
	"bufio"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/issuer"
)

// forge builds a token from literal JSON signed with an arbitrary method and
// key, for the attacks a well-behaved library refuses to produce.
func forge(t testing.TB, method jwt.SigningMethod, key any, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	if method == nil {
		return s + "."
	}
	sig, err := method.Sign(s, key)
	if err != nil {
		t.Fatal(err)
	}
	return s + "." + enc.EncodeToString(sig)
}

func payload(over map[string]any) string {
	now := time.Now()
	c := map[string]any{"iss": testIssuer, "sub": "mallory", "aud": "orders-api", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "scope": "admin"}
	for k, v := range over {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func TestProxyDecisions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	pubDER, _ := x509.MarshalPKIXPublicKey(&testKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	admin := e.token(t, "alice", "admin orders:read", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	bearer := func(tok string) string { return "Authorization: Bearer " + tok }
	now := time.Now()
	tests := []struct {
		name         string
		method       string
		target       string
		headers      []string
		wantStatus   int
		wantUpstream bool
		wantWWW      string // substring of WWW-Authenticate
	}{
		{name: "valid token", target: "/admin/users", headers: []string{bearer(admin)}, wantStatus: 200, wantUpstream: true},
		{name: "scheme case-insensitive", target: "/admin", headers: []string{"Authorization: bEaReR " + admin}, wantStatus: 200, wantUpstream: true},
		{name: "missing token", target: "/admin", wantStatus: 401, wantWWW: `Bearer realm="portcullis"`},
		{name: "basic credentials are no token", target: "/admin", headers: []string{"Authorization: Basic YTpi"}, wantStatus: 401},
		{name: "expired", target: "/admin", headers: []string{bearer(e.token(t, "alice", "admin", func(c *issuer.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour))
		}))}, wantStatus: 401, wantWWW: `error="invalid_token"`},
		{name: "not yet valid", target: "/admin", headers: []string{bearer(e.token(t, "alice", "admin", func(c *issuer.Claims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))
		}))}, wantStatus: 401, wantWWW: `error="invalid_token"`},
		{name: "wrong issuer", target: "/admin", headers: []string{bearer(e.token(t, "alice", "admin", func(c *issuer.Claims) { c.Issuer = "https://evil" }))}, wantStatus: 401},
		{name: "wrong audience", target: "/admin", headers: []string{bearer(e.token(t, "alice", "admin", func(c *issuer.Claims) { c.Audience = jwt.ClaimStrings{"payments"} }))}, wantStatus: 401},
		{name: "alg none", target: "/admin", headers: []string{bearer(forge(t, nil, nil, `{"alg":"none","typ":"at+jwt","kid":"es"}`, payload(nil)))}, wantStatus: 401},
		{name: "HS256 signed with the ES256 public key", target: "/admin", headers: []string{bearer(forge(t, jwt.SigningMethodHS256, pubPEM, `{"alg":"HS256","typ":"at+jwt","kid":"es"}`, payload(nil)))}, wantStatus: 401},
		{name: "unknown kid", target: "/admin", headers: []string{bearer(forge(t, jwt.SigningMethodES256, testKey, `{"alg":"ES256","typ":"at+jwt","kid":"other"}`, payload(nil)))}, wantStatus: 401},
		{name: "jku header", target: "/admin", headers: []string{bearer(forge(t, jwt.SigningMethodES256, testKey, `{"alg":"ES256","typ":"at+jwt","kid":"es","jku":"http://evil/jwks"}`, payload(nil)))}, wantStatus: 401},
		{name: "tampered payload", target: "/admin", headers: []string{bearer(tamper(reader))}, wantStatus: 401},
		{name: "oversized token", target: "/admin", headers: []string{bearer(admin + strings.Repeat("A", 9000))}, wantStatus: 401},
		{name: "insufficient scope", target: "/admin", headers: []string{bearer(reader)}, wantStatus: 403, wantWWW: `error="insufficient_scope", scope="admin"`},
		{name: "method not routed", method: "POST", target: "/orders/1", headers: []string{bearer(admin)}, wantStatus: 200, wantUpstream: true},
		{name: "public route ignores tokens", target: "/public/x", headers: []string{"Authorization: Bearer garbage"}, wantStatus: 200, wantUpstream: true},
		{name: "optional anonymous", target: "/docs", wantStatus: 200, wantUpstream: true},
		{name: "optional with bad token", target: "/docs", headers: []string{bearer("a.b.c")}, wantStatus: 401},
		{name: "two Authorization headers", target: "/admin", headers: []string{bearer(admin), bearer(admin)}, wantStatus: 400},
		{name: "two credentials in one header", target: "/admin", headers: []string{"Authorization: Bearer " + admin + ", Bearer " + reader}, wantStatus: 400},
		{name: "basic then bearer in one header", target: "/admin", headers: []string{"Authorization: Basic YTpi,Bearer " + admin}, wantStatus: 400},
		{name: "query token", target: "/admin?access_token=" + admin, wantStatus: 400},
		{name: "query token with header", target: "/admin?x=1&access_token=x", headers: []string{bearer(admin)}, wantStatus: 400},
		{name: "percent-encoded query token", target: "/admin?%61ccess_token=x", headers: []string{bearer(admin)}, wantStatus: 400},
		{name: "double slash", target: "//admin", headers: []string{bearer(reader)}, wantStatus: 400},
		{name: "dot-dot from public", target: "/public/../admin", wantStatus: 400},
		{name: "encoded dot-dot", target: "/public/%2e%2e/admin", wantStatus: 400},
		{name: "encoded slash", target: "/public%2fadmin", wantStatus: 400},
		{name: "encoded backslash", target: "/public%5c..%5cadmin", wantStatus: 400},
		{name: "semicolon", target: "/public;/../admin", wantStatus: 400},
		{name: "double encoding", target: "/public/%252e%252e/admin", wantStatus: 400},
		{name: "NUL", target: "/public%00/admin", wantStatus: 400},
		{name: "encoded letters reach the real route", target: "/%61dmin", wantStatus: 401},
		{name: "query cannot change the route", target: "/admin?/public", wantStatus: 401},
		{name: "absolute-form target", target: "http://app.test/admin", wantStatus: 401},
		{name: "case-sensitive path is another route", target: "/Admin", headers: []string{bearer(reader)}, wantStatus: 200, wantUpstream: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			method := tc.method
			if method == "" {
				method = "GET"
			}
			resp, body := e.raw(t, method, tc.target, tc.headers...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
			got := e.up.got()
			if tc.wantUpstream != (len(got) > 0) {
				t.Fatalf("upstream saw %d requests, want seen=%v", len(got), tc.wantUpstream)
			}
			if tc.wantWWW != "" && !strings.Contains(resp.Header.Get("WWW-Authenticate"), tc.wantWWW) {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", resp.Header.Get("WWW-Authenticate"), tc.wantWWW)
			}
			if resp.StatusCode >= 400 {
				var eb map[string]string
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb["error"] == "" {
					t.Errorf("error body %q is not JSON with an error", body)
				}
				if strings.Contains(body, "eyJ") {
					t.Errorf("error body echoes the token: %s", body)
				}
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Strict-Transport-Security") == "" {
				t.Errorf("security headers missing: %v", resp.Header)
			}
		})
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	p = []byte(strings.Replace(string(p), `"orders:read"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

func TestIdentityHeadersCannotBeSpoofed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tok := e.token(t, "alice", "orders:read", nil)
	spoof := []string{
		"X-Auth-Subject: admin", "X_Auth_Subject: admin", "X.Auth.Subject: admin", "x-auth-scopes: admin",
		"X-Auth-Anything: 1", "X-Original-URL: /admin", "X-Rewrite-URL: /admin", "X-HTTP-Method-Override: DELETE",
		"Connection: keep-alive, X-Auth-Client-Id", "Connection: X-Auth-Token-Id", "X-Auth-Client-Id: evil", "X-Auth-Token-Id: evil",
	}
	forbidden := []string{"X_auth_subject", "X.auth.subject", "X-Auth-Anything", "X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override"}
	for _, tc := range []struct {
		name        string
		target      string
		auth        []string
		wantSubject string
	}{
		{"public route", "/public/x", nil, ""},
		{"optional anonymous", "/docs", nil, ""},
		{"authenticated", "/orders/1", []string{"Authorization: Bearer " + tok}, "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			resp, body := e.raw(t, "GET", tc.target, append(spoof, tc.auth...)...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := e.up.got()
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests", len(got))
			}
			h := got[0].header
			if v := h.Values("X-Auth-Subject"); tc.wantSubject == "" && len(v) > 0 || tc.wantSubject != "" && (len(v) != 1 || v[0] != tc.wantSubject) {
				t.Errorf("X-Auth-Subject = %q, want %q", v, tc.wantSubject)
			}
			if tc.wantSubject != "" {
				if h.Get("X-Auth-Scopes") != "orders:read" || h.Get("X-Auth-Client-Id") != "alice" || h.Get("X-Auth-Issuer") != testIssuer || h.Get("X-Auth-Token-Id") == "evil" {
					t.Errorf("identity headers %v", h)
				}
			} else if h.Get("X-Auth-Scopes") != "" || h.Get("X-Auth-Client-Id") != "" || h.Get("X-Auth-Token-Id") != "" {
				t.Errorf("anonymous request carries identity headers: %v", h)
			}
			for _, name := range forbidden {
				if _, ok := h[name]; ok {
					t.Errorf("upstream received %s", name)
				}
			}
			if h.Get("Authorization") != "" {
				t.Error("upstream received Authorization with forward_authorization off")
			}
		})
	}
}

func TestSecurityHeadersReplaceUpstreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	resp, _ := e.raw(t, "GET", "/public/x")
	want := map[string]string{
		"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
		"Content-Security-Policy": "default-src 'self'", "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	}
	for k, v := range want {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want exactly %q", k, got, v)
		}
	}
	for _, k := range []string{"Server", "X-Powered-By"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("%s = %q, want it removed", k, v)
		}
	}
}

func TestForwardedHeadersFromTrustView(t *testing.T) {
	t.Parallel()
	untrusted := newEnv(t, "")
	untrusted.raw(t, "GET", "/public", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Host: evil.test")
	h := untrusted.up.got()[0].header
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Host") != "app.test" {
		t.Errorf("untrusted peer: XFF %q host %q, want 127.0.0.1 and app.test", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Host"))
	}
	trusted := newEnv(t, "trusted_proxies: [127.0.0.1]\n")
	trusted.raw(t, "GET", "/public", "X-Forwarded-For: 203.0.113.7")
	h = trusted.up.got()[0].header
	if h.Get("X-Forwarded-For") != "203.0.113.7, 127.0.0.1" {
		t.Errorf("trusted peer: XFF %q, want the chain extended", h.Get("X-Forwarded-For"))
	}
}

func TestEncodedPathReachesUpstreamDecodingToMatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tok := e.token(t, "alice", "admin", nil)
	resp, _ := e.raw(t, "GET", "/%61dmin/caf%C3%A9?q=%2e", "Authorization: Bearer "+tok)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := e.up.got()[0]
	if s.path != "/admin/café" || s.requestURI != "/admin/caf%C3%A9?q=%2e" {
		t.Errorf("upstream got path %q uri %q", s.path, s.requestURI)
	}
}

func TestRateLimitedRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tok := e.token(t, "alice", "", nil)
	other := e.token(t, "bob", "", nil)
	for i := 0; i < 2; i++ {
		resp, _ := e.raw(t, "GET", "/limited", "Authorization: Bearer "+tok)
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Limit") != "2" || resp.Header.Get("RateLimit-Remaining") != fmt.Sprint(1-i) {
			t.Fatalf("request %d: %d %v", i, resp.StatusCode, resp.Header)
		}
		if resp.Header.Get("RateLimit-Policy") != `"route:4";q=2;w=60` {
			t.Errorf("RateLimit-Policy = %q", resp.Header.Get("RateLimit-Policy"))
		}
	}
	e.up.reset()
	resp, body := e.raw(t, "GET", "/limited", "Authorization: Bearer "+tok)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "rate_limited") {
		t.Fatalf("third request: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp.Header.Get("RateLimit") == "" || resp.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("429 lacks RateLimit headers: %v", resp.Header)
	}
	if len(e.up.got()) != 0 {
		t.Error("upstream saw a rate-limited request")
	}
	if resp, _ := e.raw(t, "GET", "/limited", "Authorization: Bearer "+other); resp.StatusCode != 200 {
		t.Errorf("another subject: %d, want its own bucket", resp.StatusCode)
	}
	// Shadow mode lets the request through.
	for i := 0; i < 3; i++ {
		if resp, _ := e.raw(t, "GET", "/shadow", "Authorization: Bearer "+tok); resp.StatusCode != 200 {
			t.Errorf("shadow limit refused request %d: %d", i, resp.StatusCode)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tok := e.token(t, "alice", "", nil)
	resp, body := e.raw(t, "GET", "/slow", "Authorization: Bearer "+tok)
	if resp.StatusCode != 504 || !strings.Contains(body, "gateway_timeout") {
		t.Errorf("slow upstream: %d %s, want 504", resp.StatusCode, body)
	}
	addr := e.up.Listener.Addr().String()
	e.up.Close()
	resp, body = e.raw(t, "GET", "/anything", "Authorization: Bearer "+tok)
	if resp.StatusCode != 502 || strings.Contains(body, addr) || strings.Contains(body, "127.0.0.1") {
		t.Errorf("upstream down: %d %s, want 502 without the address", resp.StatusCode, body)
	}
}

func TestStreamingAndWebSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tok := e.token(t, "alice", "", nil)

	t.Run("SSE is flushed as it arrives", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.front.URL+"/sse", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		line, err := r.ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event %q, %v (not flushed before the upstream continued?)", line, err)
		}
		close(e.up.sse)
		rest, _ := io.ReadAll(r)
		if !strings.Contains(string(rest), "data: second") {
			t.Errorf("second event missing: %q", rest)
		}
	})

	t.Run("WebSocket upgrade after auth", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.front.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", tok)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo %q, %v", buf, err)
		}
	})

	t.Run("WebSocket upgrade without a token never reaches upstream", func(t *testing.T) {
		e.up.reset()
		resp, _ := e.raw(t, "GET", "/ws", "Upgrade: websocket", "Connection: Upgrade")
		if resp.StatusCode != 401 || len(e.up.got()) != 0 {
			t.Errorf("status %d, upstream saw %d", resp.StatusCode, len(e.up.got()))
		}
	})
}

func TestOversizedHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	resp, _ := e.raw(t, "GET", "/public", "X-Big: "+strings.Repeat("a", 64<<10))
	if resp.StatusCode != 431 || len(e.up.got()) != 0 {
		t.Errorf("status %d, upstream saw %d; want 431 and nothing forwarded", resp.StatusCode, len(e.up.got()))
	}
}

// TestNewTokensPayPerClientIPBeforeCrypto: each new token costs its client IP
// one unit of rate_limit.new_tokens before its signature is checked, so a
// flood of fresh or forged tokens from one address is refused without crypto,
// while a token already verified keeps working.
func TestNewTokensPayPerClientIPBeforeCrypto(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "rate_limit: {new_tokens: {requests: 2, per: 1h}}\n")
	first := e.token(t, "user-0", "", nil)
	for i := 0; i < 2; i++ {
		tok := first
		if i == 1 {
			tok = e.token(t, "user-1", "", nil)
		}
		if resp, _ := e.raw(t, "GET", "/public-not", "Authorization: Bearer "+tok); resp.StatusCode != 200 {
			t.Fatalf("new token %d: %d", i, resp.StatusCode)
		}
	}
	e.up.reset()
	third := e.token(t, "user-3", "", nil)
	resp, body := e.raw(t, "GET", "/anything", "Authorization: Bearer "+third)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || len(e.up.got()) != 0 {
		t.Fatalf("third new token from one IP: %d %s, upstream saw %d", resp.StatusCode, body, len(e.up.got()))
	}
	forged := tamper(e.token(t, "user-4", "orders:read", nil))
	if resp, _ := e.raw(t, "GET", "/anything", "Authorization: Bearer "+forged); resp.StatusCode != 429 {
		t.Errorf("forged token past the IP budget: %d, want 429 before any signature check", resp.StatusCode)
	}
	if resp, _ := e.raw(t, "GET", "/anything", "Authorization: Bearer "+first); resp.StatusCode != 200 {
		t.Errorf("an already verified token after the budget ran out: %d, want 200", resp.StatusCode)
	}
	if got := testutil.ToFloat64(e.metrics.AuthFailures.WithLabelValues("signature")); got != 0 {
		t.Errorf("%v signature checks failed; the forged token should not have reached one", got)
	}
}

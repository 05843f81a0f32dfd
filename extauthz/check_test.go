package extauthz

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// call is one original request, described once and sent through both front
// doors: as Envoy's ext_authz filter builds a CheckRequest, and as a
// trusted ingress describes it to /auth/verify.
type call struct {
	method, target string
	client         string      // the downstream client's address
	headers        [][2]string // in order; a name may repeat
}

// envoy builds the CheckRequest the way Envoy does: header names
// lower-cased, repeated headers joined with ",", the raw request target
// (query included) in path with query left empty, pseudo-headers in the
// map, and the downstream address in source.
func (c call) envoy() *authv3.CheckRequest {
	m := map[string]string{":authority": "app.test", ":method": c.method, ":path": c.target, ":scheme": "http", "x-request-id": "req-1"}
	for _, kv := range c.headers {
		k := strings.ToLower(kv[0])
		if prev, ok := m[k]; ok {
			m[k] = prev + "," + kv[1]
		} else {
			m[k] = kv[1]
		}
	}
	client := c.client
	if client == "" {
		client = "192.0.2.10"
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: client, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: c.method, Headers: m, Path: c.target, Host: "app.test", Scheme: "http", Protocol: "HTTP/1.1",
		}},
	}}
}

// verdict is what a front door answered, reduced to what both can say.
type verdict struct {
	status   int
	body     string
	headers  map[string]string // response headers of a refusal, lower-case names
	identity map[string]string // headers set upstream when allowed
}

func (e *env) check(t *testing.T, c call) (verdict, *authv3.CheckResponse) {
	t.Helper()
	resp, err := e.client.Check(context.Background(), c.envoy())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	v := verdict{headers: map[string]string{}, identity: map[string]string{}}
	switch r := resp.HttpResponse.(type) {
	case *authv3.CheckResponse_OkResponse:
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("ok_response with status %v", resp.GetStatus())
		}
		v.status = 200
		for _, h := range r.OkResponse.GetHeaders() {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s has append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
			}
			v.identity[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	case *authv3.CheckResponse_DeniedResponse:
		v.status = int(r.DeniedResponse.GetStatus().GetCode())
		v.body = r.DeniedResponse.GetBody()
		for _, h := range r.DeniedResponse.GetHeaders() {
			v.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if got, want := codes.Code(resp.GetStatus().GetCode()), Code(v.status); got != want || got == codes.OK {
			t.Errorf("gRPC code %v for HTTP %d, want %v", got, v.status, want)
		}
	default:
		t.Fatalf("no http_response in %v", resp)
	}
	return v, resp
}

func (e *env) forwardAuth(t *testing.T, c call) verdict {
	t.Helper()
	req, err := http.NewRequest("GET", e.verify.URL+"/auth/verify", nil)
	if err != nil {
		t.Fatal(err)
	}
	client := c.client
	if client == "" {
		client = "192.0.2.10"
	}
	req.Header["X-Forwarded-Method"] = []string{c.method}
	req.Header["X-Forwarded-Uri"] = []string{c.target}
	req.Header["X-Forwarded-Host"] = []string{"app.test"}
	req.Header["X-Forwarded-For"] = []string{client}
	for _, kv := range c.headers {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	v := verdict{status: resp.StatusCode, headers: map[string]string{}, identity: map[string]string{}}
	for k, vals := range resp.Header {
		lk := strings.ToLower(k)
		switch {
		case lk == "date" || lk == "content-length":
		case resp.StatusCode == 200 && strings.HasPrefix(lk, "x-auth-"):
			v.identity[lk] = vals[0]
		case resp.StatusCode != 200:
			v.headers[lk] = strings.Join(vals, ",")
		}
	}
	if resp.StatusCode != 200 {
		v.body = string(body)
	}
	return v
}

// decisionCases are requests every front door must decide alike.
func decisionCases(t *testing.T, e *env) []struct {
	name       string
	c          call
	wantStatus int
} {
	reader := e.token(t, "bob", "orders:read")
	admin := e.token(t, "alice", "admin orders:read")
	bearer := func(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }
	return []struct {
		name       string
		c          call
		wantStatus int
	}{
		{"allowed, query in path", call{method: "GET", target: "/orders/1?x=1&y=2", headers: [][2]string{bearer(reader)}}, 200},
		{"allowed admin", call{method: "POST", target: "/admin/users", headers: [][2]string{bearer(admin)}}, 200},
		{"public, no identity", call{method: "GET", target: "/public/x"}, 200},
		{"optional, anonymous", call{method: "GET", target: "/docs"}, 200},
		{"no token", call{method: "GET", target: "/admin"}, 401},
		{"bad token", call{method: "GET", target: "/admin", headers: [][2]string{bearer("a.b.c")}}, 401},
		{"basic is no token", call{method: "GET", target: "/admin", headers: [][2]string{{"Authorization", "Basic YTpi"}}}, 401},
		{"insufficient scope", call{method: "GET", target: "/admin", headers: [][2]string{bearer(reader)}}, 403},
		{"method not routed", call{method: "DELETE", target: "/orders/1", headers: [][2]string{bearer(reader)}}, 404},
		{"no route", call{method: "GET", target: "/nowhere", headers: [][2]string{bearer(admin)}}, 404},
		{"dot segments", call{method: "GET", target: "/public/../admin"}, 400},
		{"encoded dot segments", call{method: "GET", target: "/public/%2e%2e/admin"}, 400},
		{"encoded slash", call{method: "GET", target: "/public%2Fadmin"}, 400},
		{"double slash", call{method: "GET", target: "//admin"}, 400},
		{"fragment", call{method: "GET", target: "/public?a#/admin"}, 400},
		{"lower-case method", call{method: "get", target: "/orders/1", headers: [][2]string{bearer(reader)}}, 400},
		{"access_token in query", call{method: "GET", target: "/orders/1?access_token=" + reader, headers: [][2]string{bearer(reader)}}, 400},
		{"encoded access_token in query", call{method: "GET", target: "/orders/1?%61ccess_token=x", headers: [][2]string{bearer(reader)}}, 400},
		{"two credentials", call{method: "GET", target: "/orders/1", headers: [][2]string{bearer(reader), bearer(admin)}}, 400},
		{"basic and bearer", call{method: "GET", target: "/orders/1", headers: [][2]string{{"Authorization", "Basic YTpi"}, bearer(admin)}}, 400},
		{"x-forwarded-for spoof is only a header", call{method: "GET", target: "/orders/1", headers: [][2]string{bearer(reader), {"X-Forwarded-For", "203.0.113.9"}}}, 200},
	}
}

// TestSameVerdictsAsForwardAuth is the differential test: every request
// gets the same status, body and refusal headers (security headers
// included) from Check as from /auth/verify, and the same identity headers
// when allowed.
func TestSameVerdictsAsForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	for _, tc := range decisionCases(t, e) {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := e.check(t, tc.c)
			f := e.forwardAuth(t, tc.c)
			if g.status != tc.wantStatus || f.status != tc.wantStatus {
				t.Fatalf("Check %d, /auth/verify %d, want %d; bodies %q, %q", g.status, f.status, tc.wantStatus, g.body, f.body)
			}
			if g.body != f.body {
				t.Errorf("bodies differ:\nCheck        %q\n/auth/verify %q", g.body, f.body)
			}
			if !mapsEqual(g.headers, f.headers) {
				t.Errorf("refusal headers differ:\nCheck        %v\n/auth/verify %v", g.headers, f.headers)
			}
			if !mapsEqual(g.identity, f.identity) {
				t.Errorf("identity headers differ:\nCheck        %v\n/auth/verify %v", g.identity, f.identity)
			}
			if tc.wantStatus >= 400 && (g.headers["content-type"] != "application/json" || !strings.Contains(g.body, `"error"`)) {
				t.Errorf("refusal without a JSON body: %v %q", g.headers, g.body)
			}
			if tc.wantStatus == 401 && g.headers["www-authenticate"] == "" {
				t.Errorf("401 without WWW-Authenticate: %v", g.headers)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRateLimitedSameAsForwardAuth: the 429 carries Retry-After and the
// RateLimit fields through both front doors, and an allowed limited
// request's RateLimit fields go in response_headers_to_add.
func TestRateLimitedSameAsForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	limited := func(tok string) call {
		return call{method: "GET", target: "/limited", headers: [][2]string{{"Authorization", "Bearer " + tok}}}
	}
	gc, fc := limited(e.token(t, "grpc-user", "")), limited(e.token(t, "http-user", ""))
	for i := range 2 {
		_, resp := e.check(t, gc)
		add := resp.GetOkResponse().GetResponseHeadersToAdd()
		var names []string
		for _, h := range add {
			names = append(names, h.GetHeader().GetKey())
		}
		if want := []string{"ratelimit-policy", "ratelimit", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}; !slices.Equal(names, want) {
			t.Fatalf("request %d: response_headers_to_add %q, want %q", i, names, want)
		}
		if f := e.forwardAuth(t, fc); f.status != 200 {
			t.Fatalf("/auth/verify request %d: %d", i, f.status)
		}
	}
	g, _ := e.check(t, gc)
	f := e.forwardAuth(t, fc)
	if g.status != 429 || f.status != 429 || g.body != f.body {
		t.Fatalf("Check %d %q, /auth/verify %d %q; want 429 twice", g.status, g.body, f.status, f.body)
	}
	for _, name := range []string{"ratelimit-policy", "ratelimit-limit", "ratelimit-remaining", "content-type", "cache-control"} {
		if g.headers[name] == "" || g.headers[name] != f.headers[name] {
			t.Errorf("%s: Check %q, /auth/verify %q", name, g.headers[name], f.headers[name])
		}
	}
	// Retry-After and RateLimit-Reset count seconds from each bucket's own
	// requests, which a busy machine may space a second apart.
	for _, name := range []string{"retry-after", "ratelimit-reset", "ratelimit"} {
		if g.headers[name] == "" || f.headers[name] == "" {
			t.Errorf("%s: Check %q, /auth/verify %q; want both set", name, g.headers[name], f.headers[name])
		}
	}
}

// TestOkResponseHeaders: identity headers are set (overwriting spoofed
// copies), and headers_to_remove names every identity header left unset,
// every other spoofable header the request carries in any spelling, and
// authorization; never a header that is set.
func TestOkResponseHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	fwd := newEnv(t, "forward_authorization: true\n")
	spoofed := [][2]string{
		{"X-Auth-Subject", "root"}, {"x_auth_subject", "root"}, {"X.Auth.Scopes", "admin"}, {"X-Auth-Extra", "1"},
		{"X-Original-URL", "/admin"}, {"X-Http-Method-Override", "DELETE"}, {"Accept", "*/*"},
	}
	identity := []string{"x-auth-subject", "x-auth-client-id", "x-auth-scopes", "x-auth-issuer", "x-auth-token-id"}
	spoofRemoved := []string{"x-auth-extra", "x-http-method-override", "x-original-url", "x.auth.scopes", "x_auth_subject"}
	tests := []struct {
		name       string
		e          *env
		target     string
		withToken  bool
		wantSet    []string
		wantRemove []string
	}{
		{"verified", e, "/orders/1", true, identity, append(slices.Clone(spoofRemoved), "authorization")},
		{"public route", e, "/public", true, nil, append(append(slices.Clone(identity), spoofRemoved...), "authorization")},
		{"forward_authorization", fwd, "/orders/1", true, identity, spoofRemoved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := call{method: "GET", target: tc.target, headers: spoofed}
			if tc.withToken {
				c.headers = append(slices.Clone(spoofed), [2]string{"Authorization", "Bearer " + tc.e.token(t, "bob", "orders:read")})
			}
			v, resp := tc.e.check(t, c)
			if v.status != 200 {
				t.Fatalf("status %d %q", v.status, v.body)
			}
			var set []string
			for k := range v.identity {
				set = append(set, k)
			}
			slices.Sort(set)
			want := slices.Sorted(slices.Values(tc.wantSet))
			if !slices.Equal(set, want) {
				t.Errorf("set %q, want %q", set, want)
			}
			if tc.withToken && len(tc.wantSet) > 0 && (v.identity["x-auth-subject"] != "bob" || v.identity["x-auth-scopes"] != "orders:read") {
				t.Errorf("identity %v", v.identity)
			}
			remove := slices.Sorted(slices.Values(resp.GetOkResponse().GetHeadersToRemove()))
			if wantRemove := slices.Sorted(slices.Values(tc.wantRemove)); !slices.Equal(remove, wantRemove) {
				t.Errorf("headers_to_remove %q, want %q", remove, wantRemove)
			}
			for _, r := range remove {
				if _, ok := v.identity[r]; ok {
					t.Errorf("%s is both set and removed (Envoy removes after setting)", r)
				}
			}
		})
	}
}

// TestClientAddressFromSource: rate limits key on attributes.source, never
// on an x-forwarded-for inside the request, and a header: key reads the
// lower-cased header map.
func TestClientAddressFromSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	steps := []struct {
		name       string
		c          call
		wantStatus int
	}{
		{"first from .10", call{method: "GET", target: "/byip", client: "192.0.2.10", headers: [][2]string{{"X-Forwarded-For", "203.0.113.1"}}}, 200},
		{"same source, other forwarded-for", call{method: "GET", target: "/byip", client: "192.0.2.10", headers: [][2]string{{"X-Forwarded-For", "203.0.113.2"}}}, 429},
		{"other source", call{method: "GET", target: "/byip", client: "192.0.2.11", headers: [][2]string{{"X-Forwarded-For", "203.0.113.1"}}}, 200},
		{"IPv4-mapped is the same client", call{method: "GET", target: "/byip", client: "::ffff:192.0.2.11"}, 429},
		{"api key k1", call{method: "GET", target: "/byheader", headers: [][2]string{{"X-Api-Key", "k1"}}}, 200},
		{"api key k1 again", call{method: "GET", target: "/byheader", client: "192.0.2.99", headers: [][2]string{{"X-Api-Key", "k1"}}}, 429},
		{"api key k2", call{method: "GET", target: "/byheader", headers: [][2]string{{"X-Api-Key", "k2"}}}, 200},
	}
	for _, s := range steps {
		if v, _ := e.check(t, s.c); v.status != s.wantStatus {
			t.Fatalf("%s: status %d, want %d (%s)", s.name, v.status, s.wantStatus, v.body)
		}
	}
}

// TestMalformedCheckRequests: what Envoy never sends is refused, never
// allowed.
func TestMalformedCheckRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	withQuery := call{method: "GET", target: "/public?a=1"}.envoy()
	withQuery.Attributes.Request.Http.Query = "access_token=x"
	queryOnly := call{method: "GET", target: "/orders/1"}.envoy()
	queryOnly.Attributes.Request.Http.Query = "access_token=x"
	queryOnly.Attributes.Request.Http.Headers["authorization"] = "Bearer " + e.token(t, "bob", "orders:read")
	mixedCase := call{method: "GET", target: "/orders/1", headers: [][2]string{{"Authorization", "Bearer " + e.token(t, "bob", "orders:read")}}}.envoy()
	mixedCase.Attributes.Request.Http.Headers["Authorization"] = "Bearer x"
	tests := []struct {
		name       string
		req        *authv3.CheckRequest
		wantStatus int
	}{
		{"empty", &authv3.CheckRequest{}, 400},
		{"no http attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}, 400},
		{"query in both path and query", withQuery, 400},
		{"access_token in the query field", queryOnly, 400},
		{"authorization in two spellings", mixedCase, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeniedResponse()
			if d == nil || int(d.GetStatus().GetCode()) != tc.wantStatus || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
				t.Fatalf("got %v, want denied %d", resp, tc.wantStatus)
			}
		})
	}
}

// TestHeaderMap: with encode_raw_headers Envoy sends header_map (values as
// bytes, a repeated header as repeated entries) instead of headers.
func TestHeaderMap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tok := e.token(t, "bob", "orders:read")
	raw := func(auth ...string) *authv3.CheckRequest {
		req := call{method: "GET", target: "/orders/1"}.envoy()
		req.Attributes.Request.Http.Headers = nil
		hm := &corev3.HeaderMap{}
		for _, a := range auth {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: []byte(a)})
		}
		req.Attributes.Request.Http.HeaderMap = hm
		return req
	}
	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		want int
	}{
		{"one token", raw("Bearer " + tok), 200},
		{"two tokens", raw("Bearer "+tok, "Bearer "+tok), 400},
		{"none", raw(), 401},
	} {
		resp, err := e.client.Check(context.Background(), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		got := 200
		if d := resp.GetDeniedResponse(); d != nil {
			got = int(d.GetStatus().GetCode())
		}
		if got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	for _, svc := range []string{"", ServiceName} {
		resp, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health(%q) = %v, %v; want SERVING", svc, resp, err)
		}
	}
	if _, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "other"}); status.Code(err) != codes.NotFound {
		t.Errorf("health(other) err %v, want NotFound", err)
	}
	e.srv.Drain()
	for _, svc := range []string{"", ServiceName} {
		resp, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("draining: health(%q) = %v, %v; want NOT_SERVING", svc, resp, err)
		}
	}
	// Check still answers while draining.
	if v, _ := e.check(t, call{method: "GET", target: "/public"}); v.status != 200 {
		t.Errorf("Check while draining: %d", v.status)
	}
}

func TestCode(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]codes.Code{
		200: codes.OK, 400: codes.InvalidArgument, 401: codes.Unauthenticated, 403: codes.PermissionDenied,
		404: codes.NotFound, 429: codes.ResourceExhausted, 503: codes.Unavailable, 418: codes.PermissionDenied,
	} {
		if got := Code(status); got != want {
			t.Errorf("Code(%d) = %v, want %v", status, got, want)
		}
	}
}

package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

func TestBearer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		values    []string
		wantToken string
		wantSent  bool
		wantErr   error
	}{
		{name: "none", values: nil},
		{name: "bearer", values: []string{"Bearer abc.def"}, wantToken: "abc.def", wantSent: true},
		{name: "scheme case", values: []string{"bEARER abc"}, wantToken: "abc", wantSent: true},
		{name: "empty bearer", values: []string{"Bearer "}, wantSent: true, wantErr: errEmptyBearer},
		{name: "basic", values: []string{"Basic YTpi"}},
		{name: "digest params are one credentials", values: []string{`Digest username="a", realm="x,y", nonce="n"`}},
		{name: "two fields", values: []string{"Bearer a", "Bearer b"}, wantSent: true, wantErr: errDuplicateAuthorization},
		{name: "comma-joined bearers (Envoy)", values: []string{"Bearer a,Bearer b"}, wantSent: true, wantErr: errDuplicateAuthorization},
		{name: "comma inside a bearer", values: []string{"Bearer a,b"}, wantSent: true, wantErr: errDuplicateAuthorization},
		{name: "basic then bearer", values: []string{"Basic YTpi, Bearer b"}, wantSent: true, wantErr: errDuplicateAuthorization},
		{name: "digest then bearer", values: []string{`Digest username="a", Bearer b`}, wantSent: true, wantErr: errDuplicateAuthorization},
		{name: "token68 then scheme alone", values: []string{"Basic YTpi,Negotiate"}, wantSent: true, wantErr: errDuplicateAuthorization},
		{name: "empty list elements", values: []string{`Digest a=1,, b=2`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, sent, err := bearer(tc.values)
			if tok != tc.wantToken || sent != tc.wantSent || !errors.Is(err, tc.wantErr) {
				t.Errorf("bearer(%q) = %q, %v, %v; want %q, %v, %v", tc.values, tok, sent, err, tc.wantToken, tc.wantSent, tc.wantErr)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, target string
		wantPath, wantQuery  string
		wantErr              error
	}{
		{name: "plain", method: "GET", target: "/orders/1", wantPath: "/orders/1"},
		{name: "query kept", method: "GET", target: "/orders/1?a=b&c", wantPath: "/orders/1", wantQuery: "a=b&c"},
		{name: "encoded unreserved decoded", method: "GET", target: "/%61dmin", wantPath: "/admin"},
		{name: "lower-case method", method: "get", target: "/orders", wantErr: policy.ErrMethod},
		{name: "empty method", method: "", target: "/orders", wantErr: policy.ErrMethod},
		{name: "dot segment", method: "GET", target: "/public/../admin", wantErr: policy.ErrAmbiguousPath},
		{name: "encoded slash", method: "GET", target: "/public%2fadmin", wantErr: policy.ErrAmbiguousPath},
		{name: "fragment in path", method: "GET", target: "/public#x", wantErr: policy.ErrTarget},
		{name: "fragment in query", method: "GET", target: "/public?a=1#/admin", wantErr: policy.ErrTarget},
		{name: "not origin-form", method: "GET", target: "http://x/admin", wantErr: policy.ErrTarget},
		{name: "empty", method: "GET", target: "", wantErr: policy.ErrTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := ParseTarget(tc.method, "app.test", tc.target)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && (in.Path.Match != tc.wantPath || in.RawQuery != tc.wantQuery || in.Method != tc.method || in.Host != "app.test") {
				t.Errorf("got %+v, want path %q query %q", in, tc.wantPath, tc.wantQuery)
			}
		})
	}
}

// TestDecideIsAValue runs the engine without any front door: every outcome
// is a value with its status, code and headers, and nothing is written.
func TestDecideIsAValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	admin := e.token(t, "alice", "admin", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	tests := []struct {
		name, method, target string
		auth                 []string
		wantStatus           int
		wantCode             string
		wantHeaders          []string
		wantSubject          string
	}{
		{name: "allowed", method: "GET", target: "/admin/x", auth: []string{"Bearer " + admin}, wantStatus: 200, wantSubject: "alice"},
		{name: "allowed and limited", method: "GET", target: "/limited", auth: []string{"Bearer " + admin}, wantStatus: 200, wantSubject: "alice",
			wantHeaders: []string{"RateLimit-Policy", "RateLimit", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}},
		{name: "no token", method: "GET", target: "/admin", wantStatus: 401, wantCode: "unauthorized",
			wantHeaders: []string{"Content-Type", "Cache-Control", "WWW-Authenticate"}},
		{name: "bad token", method: "GET", target: "/admin", auth: []string{"Bearer x.y.z"}, wantStatus: 401, wantCode: "invalid_token",
			wantHeaders: []string{"Content-Type", "Cache-Control", "WWW-Authenticate"}},
		{name: "scope", method: "GET", target: "/admin", auth: []string{"Bearer " + reader}, wantStatus: 403, wantCode: "insufficient_scope",
			wantHeaders: []string{"Content-Type", "Cache-Control", "WWW-Authenticate"}},
		{name: "two credentials", method: "GET", target: "/admin", auth: []string{"Bearer " + admin + ",Bearer " + admin}, wantStatus: 400, wantCode: "invalid_request",
			wantHeaders: []string{"Content-Type", "Cache-Control"}},
		{name: "query token", method: "GET", target: "/admin?access_token=x", auth: []string{"Bearer " + admin}, wantStatus: 400, wantCode: "invalid_request",
			wantHeaders: []string{"Content-Type", "Cache-Control"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseTarget(tc.method, "app.test", tc.target)
			if err != nil {
				t.Fatal(err)
			}
			in.Client, in.Authorization = netip.MustParseAddr("192.0.2.1"), tc.auth
			d := e.h.Decide(context.Background(), &in)
			if d.Status != tc.wantStatus || d.Code != tc.wantCode {
				t.Fatalf("got %d %q, want %d %q", d.Status, d.Code, tc.wantStatus, tc.wantCode)
			}
			var names []string
			for _, f := range d.Headers() {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, tc.wantHeaders) {
				t.Errorf("headers %q, want %q", names, tc.wantHeaders)
			}
			if d.Allowed() != (d.Body() == nil) {
				t.Errorf("body %q for status %d", d.Body(), d.Status)
			}
			if got := ""; d.Principal != nil {
				if got = d.Principal.Subject; got != tc.wantSubject {
					t.Errorf("subject %q, want %q", got, tc.wantSubject)
				}
			}
		})
	}
}

// TestInvalidLogsFirewallRefusals: the path firewall logs its refusals in
// every front door, as proxy mode always did; a malformed forward-auth
// request (a misconfigured ingress) is not a security event.
func TestInvalidLogsFirewallRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	var got []string
	e.h.secLog = func(r *http.Request, msg string, args ...any) { got = append(got, msg) }
	in := Input{RequestID: "rid"}
	d := e.h.Invalid(&in, policy.ErrAmbiguousPath)
	if d.Status != 400 || d.Code != codeInvalidRequest || len(got) != 1 {
		t.Errorf("got %d %q, %d log lines", d.Status, d.Code, len(got))
	}
	_ = e.h.Invalid(&in, errOriginal)
	if len(got) != 1 {
		t.Errorf("a malformed forward-auth request logged a security event: %q", got)
	}
}

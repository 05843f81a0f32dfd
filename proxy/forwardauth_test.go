package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

func TestForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "trusted_proxies: [127.0.0.1]\n")
	untrusted := newEnv(t, "")
	admin := e.token(t, "alice", "admin orders:read", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	auth := func(tok string) string { return "Authorization: Bearer " + tok }
	tests := []struct {
		name        string
		env         *env
		target      string
		headers     []string
		wantStatus  int
		wantSubject string
	}{
		{"traefik allowed", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /admin/x?y=1", "X-Forwarded-Host: app.test", auth(admin)}, 200, "alice"},
		{"traefik forbidden", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /admin", auth(reader)}, 403, ""},
		{"traefik no token", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /admin"}, 401, ""},
		{"traefik public", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public/x"}, 200, ""},
		{"nginx original URL", e, "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: https://app.test/orders/1", auth(reader)}, 200, "bob"},
		{"nginx original URI", e, "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URI: /orders/1", auth(reader)}, 200, "bob"},
		{"envoy path suffix", untrusted, "/auth/verify/orders/1?x=1", []string{auth(reader)}, 200, "bob"},
		{"envoy path suffix forbidden", untrusted, "/auth/verify/admin", []string{auth(reader)}, 403, ""},
		{"path trick in header", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public/../admin"}, 400, ""},
		{"encoded trick in header", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public/%2e%2e/admin"}, 400, ""},
		{"path trick in suffix", untrusted, "/auth/verify/public/../admin", nil, 400, ""},
		{"double slash in suffix", untrusted, "/auth/verify//admin", nil, 400, ""},
		{"no original request", e, "/auth/verify", nil, 400, ""},
		{"uri without method", e, "/auth/verify", []string{"X-Forwarded-Uri: /public"}, 400, ""},
		{"method without uri", e, "/auth/verify", []string{"X-Forwarded-Method: GET"}, 400, ""},
		{"duplicated uri", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public", "X-Forwarded-Uri: /admin"}, 400, ""},
		{"traefik and nginx disagree", e, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public", "X-Original-URI: /admin"}, 400, ""},
		{"headers and suffix", e, "/auth/verify/public", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /admin"}, 400, ""},
		{"bad method", e, "/auth/verify", []string{"X-Forwarded-Method: G E T", "X-Forwarded-Uri: /public"}, 400, ""},
		{"relative original URL", e, "/auth/verify", []string{"X-Original-Method: GET", "X-Original-URL: admin"}, 400, ""},
		{"untrusted peer's headers ignored", untrusted, "/auth/verify", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public"}, 400, ""},
		{"untrusted headers cannot override suffix", untrusted, "/auth/verify/admin", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /public"}, 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.env.raw(t, "GET", tc.target, tc.headers...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
			if got := resp.Header.Get("X-Auth-Subject"); got != tc.wantSubject {
				t.Errorf("X-Auth-Subject = %q, want %q", got, tc.wantSubject)
			}
			if resp.StatusCode == 200 && tc.wantSubject != "" && resp.Header.Get("X-Auth-Scopes") == "" {
				t.Errorf("200 without X-Auth-Scopes: %v", resp.Header)
			}
			if resp.StatusCode >= 400 && !strings.Contains(body, `"error"`) {
				t.Errorf("error body %q", body)
			}
			if n := len(tc.env.up.got()); n != 0 {
				t.Errorf("forward-auth reached the upstream %d times", n)
			}
		})
	}
}

// FuzzForwardAuthHeaders: whatever a trusted front proxy sends, either the
// request is refused or the target it yields passed the path firewall and
// names a plain method; never a panic, never a 2xx for garbage.
func FuzzForwardAuthHeaders(f *testing.F) {
	f.Add("GET", "/admin/x?y=1", "", "", "")
	f.Add("GET", "", "https://app.test/orders/1", "", "")
	f.Add("POST", "", "", "/orders/1", "")
	f.Add("", "", "", "", "/orders/1")
	f.Add("GET", "/public/../admin", "", "", "")
	f.Add("GET", "/a", "", "/b", "")
	f.Add("GET", "", "//evil.test/admin", "", "")
	f.Add("GET", "", "https://app.test/public#/../admin", "", "")
	f.Add("GET", "", "https://u@App.Test.:443/x", "", "")
	f.Add("get", "/public", "", "", "")
	f.Add("GET", "/public?x=%23", "", "", "")
	e := newEnv(f, "trusted_proxies: [127.0.0.1]\n")
	f.Fuzz(func(t *testing.T, method, fwdURI, origURL, origURI, suffix string) {
		target := "/auth/verify"
		if suffix != "" {
			target += suffix
		}
		req, err := http.NewRequest("GET", "http://app.test/", nil)
		if err != nil {
			return
		}
		req.RequestURI = target
		req.RemoteAddr = "127.0.0.1:1234"
		set := func(k, v string) {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		set(hXForwardedMethod, method)
		set(hXForwardedURI, fwdURI)
		set(hXOriginalURL, origURL)
		set(hXOriginalURI, origURI)
		tg, err := e.h.originalRequest(req, true)
		if err != nil {
			return
		}
		if policy.ParseMethod(tg.Method) != nil {
			t.Fatalf("accepted method %q", tg.Method)
		}
		if p, err := policy.CleanPath(tg.Path.Raw); err != nil || p.Match != tg.Path.Match {
			t.Fatalf("accepted path %+v that the firewall refuses: %v", tg.Path, err)
		}
		// The same validation as every front door: the accepted target is
		// one ParseTarget accepts as it stands.
		if again, err := policy.ParseTarget(tg.Method, tg.Host, tg.Path.Raw, tg.RawQuery); err != nil || again.Host != tg.Host || again.Path != tg.Path {
			t.Fatalf("accepted target %+v that ParseTarget reads as %+v, %v", tg, again, err)
		}
		for _, u := range []string{fwdURI, origURL, origURI} {
			if strings.Contains(u, "#") || strings.Contains(u, "%23") {
				t.Fatalf("accepted an original URL with a fragment: %q", u)
			}
		}
	})
}

package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/ratelimit"
	"github.com/portcullis/portcullis/revocation"
)

// idpKey signs the trusted identity provider's tokens.
var idpKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

const idpIssuer = "https://idp.test"

const claimsConfig = `
environment: development
upstream: {url: "${UPSTREAM}", timeout: 5s}
issuer:
  url: https://auth.test
  keys: [{id: es, algorithm: ES256, private_key_file: key.pem}]
trusted_issuers:
  - {issuer: "https://idp.test", jwks_url: "${JWKS}", algorithms: [ES256], audience: [orders-api]}
audience: [orders-api]
routes:
  - {path: /public, auth: none}
  - {path: /orders, methods: [GET], scopes: [orders:read]}
  - {path: /admin, claims: {realm_access.roles: [admin]}}
  - {path: /platform, scopes: [orders:read], claims: {groups: [platform-admins]}}
  - {path: /verified, claims: {email_verified: true}}
  - {path: /level, claims: {level: [5]}}
  - {path: /ns, claims: {"https://x.example/roles": [auditor]}}
  - {path: /}
identity_headers:
  claims: {X-Auth-Email: email, X-Auth-Groups: groups, X-Auth-Roles: realm_access.roles, X-User-Level: level}
`

// newClaimsEnv is a Portcullis front trusting a JWKS-serving IdP, with a
// recording upstream behind it.
func newClaimsEnv(t *testing.T) *env {
	t.Helper()
	up := newUpstream(t)
	raw := idpKey.PublicKey.X.FillBytes(make([]byte, 32))
	y := idpKey.PublicKey.Y.FillBytes(make([]byte, 32))
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": "idp-1", "alg": "ES256", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(raw), "y": base64.RawURLEncoding.EncodeToString(y),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(idp.Close)
	dir := t.TempDir()
	kder, _ := x509.MarshalPKCS8PrivateKey(testKey)
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Parse([]byte(claimsConfig), dir, func(k string) string {
		return map[string]string{"UPSTREAM": up.URL, "JWKS": idp.URL}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	iss, err := issuer.New(issuer.Options{Config: cfg, Metrics: m, Revocations: revocation.New(nil), HTTPClient: idp.Client()})
	if err != nil {
		t.Fatal(err)
	}
	tbl, _, err := policy.Compile(cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Config: cfg, Issuer: iss, Table: tbl, Limiter: ratelimit.New(ratelimit.Options{Metrics: m}), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h.SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(RequestPath(r), ForwardAuthPrefix) {
			h.ForwardAuth(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})))
	t.Cleanup(front.Close)
	t.Cleanup(h.Close)
	return &env{front: front, up: up, iss: iss, h: h, metrics: m}
}

// idpToken signs claims (JSON members over a base set) as the IdP.
func idpToken(t testing.TB, header string, members map[string]any) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{"iss": idpIssuer, "sub": "user-1", "aud": []string{"orders-api"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "j-" + now.Format(time.RFC3339Nano)}
	for k, v := range members {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	if header == "" {
		header = `{"alg":"ES256","typ":"JWT","kid":"idp-1"}`
	}
	return forge(t, jwt.SigningMethodES256, idpKey, header, string(b))
}

// rawPayloadToken signs a literal payload as the IdP.
func rawPayloadToken(t testing.TB, payload string) string {
	return forge(t, jwt.SigningMethodES256, idpKey, `{"alg":"ES256","typ":"JWT","kid":"idp-1"}`, payload)
}

func TestIdPTokensThroughTrustedIssuers(t *testing.T) {
	t.Parallel()
	e := newClaimsEnv(t)
	now := time.Now().Unix()
	hydra := idpToken(t, "", map[string]any{"client_id": "hydra-client", "scp": []string{"orders:read", "offline"}, "ext": map[string]any{}})
	okta := idpToken(t, "", map[string]any{"ver": 1, "cid": "0oa1", "scp": []string{"orders:read"}, "groups": []string{"Everyone", "platform-admins"}})
	entra := idpToken(t, "", map[string]any{"ver": "2.0", "azp": "app", "scp": "orders:read User.Read", "roles": []string{"Task.Write"}})
	keycloak := idpToken(t, "", map[string]any{"typ": "Bearer", "azp": "kc", "scope": "profile email", "email": "ada@example.com", "email_verified": true,
		"realm_access": map[string]any{"roles": []string{"offline_access", "admin"}}})
	keycloakUser := idpToken(t, "", map[string]any{"scope": "profile", "email_verified": false, "realm_access": map[string]any{"roles": []string{"user"}}})
	nbsp := rawPayloadToken(t, `{"iss":"`+idpIssuer+`","sub":"u","aud":"orders-api","exp":`+itoa(now+3600)+`,"scope":"orders:read\u00a0portcullis:admin"}`)
	stringExp := rawPayloadToken(t, `{"iss":"`+idpIssuer+`","sub":"u","aud":"orders-api","exp":"`+itoa(now+3600)+`","scp":["orders:read"]}`)
	c1Sub := rawPayloadToken(t, `{"iss":"`+idpIssuer+`","sub":"u\u0085X-Auth-Subject: admin","aud":"orders-api","exp":`+itoa(now+3600)+`}`)
	numKid := forge(t, jwt.SigningMethodES256, idpKey, `{"alg":"ES256","kid":1}`, `{"iss":"`+idpIssuer+`","sub":"u","aud":"orders-api","exp":`+itoa(now+3600)+`}`)
	level5 := idpToken(t, "", map[string]any{"level": 5})
	levelStr := idpToken(t, "", map[string]any{"level": "5"})
	nsRoles := idpToken(t, "", map[string]any{"https://x.example/roles": []string{"auditor"}})

	tests := []struct {
		name        string
		target      string
		token       string
		wantStatus  int
		wantError   string            // JSON error code
		wantHeaders map[string]string // upstream headers ("" = absent)
	}{
		{name: "Hydra scp array grants orders:read", target: "/orders", token: hydra, wantStatus: 200,
			wantHeaders: map[string]string{"X-Auth-Scopes": "orders:read offline", "X-Auth-Client-Id": "hydra-client", "X-Auth-Email": ""}},
		{name: "Okta scp array grants orders:read", target: "/orders", token: okta, wantStatus: 200,
			wantHeaders: map[string]string{"X-Auth-Scopes": "orders:read", "X-Auth-Groups": "Everyone,platform-admins"}},
		{name: "Okta groups claim and scope", target: "/platform/x", token: okta, wantStatus: 200},
		{name: "Hydra without groups is denied", target: "/platform/x", token: hydra, wantStatus: 403, wantError: "access_denied"},
		{name: "Entra scp string grants orders:read", target: "/orders", token: entra, wantStatus: 200,
			wantHeaders: map[string]string{"X-Auth-Scopes": "orders:read User.Read"}},
		{name: "Keycloak scope string lacks orders:read", target: "/orders", token: keycloak, wantStatus: 403, wantError: "insufficient_scope"},
		{name: "Keycloak realm_access.roles admin", target: "/admin/users", token: keycloak, wantStatus: 200,
			wantHeaders: map[string]string{"X-Auth-Roles": "offline_access,admin", "X-Auth-Email": "ada@example.com", "X-Auth-Scopes": "profile email"}},
		{name: "Keycloak user without admin role", target: "/admin/users", token: keycloakUser, wantStatus: 403, wantError: "access_denied"},
		{name: "boolean claim true", target: "/verified", token: keycloak, wantStatus: 200},
		{name: "boolean claim false", target: "/verified", token: keycloakUser, wantStatus: 403, wantError: "access_denied"},
		{name: "number claim 5", target: "/level", token: level5, wantStatus: 200, wantHeaders: map[string]string{"X-User-Level": "5"}},
		{name: "string \"5\" is not the number 5", target: "/level", token: levelStr, wantStatus: 403, wantError: "access_denied"},
		{name: "namespaced claim name with dots", target: "/ns", token: nsRoles, wantStatus: 200},
		{name: "U+00A0 in scope is invalid", target: "/orders", token: nbsp, wantStatus: 401, wantError: "invalid_token"},
		{name: "U+00A0 scope cannot reach the catch-all either", target: "/anything", token: nbsp, wantStatus: 401, wantError: "invalid_token"},
		{name: "string exp is invalid", target: "/orders", token: stringExp, wantStatus: 401, wantError: "invalid_token"},
		{name: "C1 in sub is invalid", target: "/anything", token: c1Sub, wantStatus: 401, wantError: "invalid_token"},
		{name: "numeric kid is invalid", target: "/anything", token: numKid, wantStatus: 401, wantError: "invalid_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			resp, body := e.raw(t, "GET", tc.target, "Authorization: Bearer "+tc.token,
				"X-Auth-Email: spoofed@evil", "X_Auth_Groups: spoofed", "X-User-Level: 99", "X.User.Level: 99")
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			got := e.up.got()
			if tc.wantStatus != 200 {
				if len(got) != 0 {
					t.Fatalf("upstream received a denied request: %+v", got)
				}
				var eb map[string]string
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb["error"] != tc.wantError {
					t.Errorf("body %s, want error %q", body, tc.wantError)
				}
				if tc.wantError == "access_denied" && resp.Header.Get("WWW-Authenticate") != "" {
					t.Errorf("access_denied carries WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests", len(got))
			}
			h := got[0].header
			for name, want := range tc.wantHeaders {
				if v := h.Values(name); (want == "" && len(v) != 0) || (want != "" && (len(v) != 1 || v[0] != want)) {
					t.Errorf("upstream %s = %q, want %q", name, v, want)
				}
			}
			for name, vs := range h {
				for _, v := range vs {
					if strings.Contains(v, "spoofed") || v == "99" {
						t.Errorf("upstream received spoofed %s: %q", name, v)
					}
				}
			}
		})
	}
}

func TestClaimHeadersOnForwardAuthAndScrubbedOnPublicRoutes(t *testing.T) {
	t.Parallel()
	e := newClaimsEnv(t)
	tok := idpToken(t, "", map[string]any{"email": "ada@example.com", "groups": []string{"a", "b"}, "level": 1.5,
		"realm_access": map[string]any{"roles": []any{"admin", map[string]any{"x": 1}}}})
	resp, body := e.raw(t, "GET", "/auth/verify/orders", "Authorization: Bearer "+tok)
	if resp.StatusCode != 403 {
		t.Fatalf("forward-auth without scope = %d %s, want 403", resp.StatusCode, body)
	}
	resp, body = e.raw(t, "GET", "/auth/verify/anything", "Authorization: Bearer "+tok, "X-Auth-Email: spoofed")
	if resp.StatusCode != 200 {
		t.Fatalf("forward-auth = %d %s", resp.StatusCode, body)
	}
	for name, want := range map[string]string{"X-Auth-Email": "ada@example.com", "X-Auth-Groups": "a,b", "X-User-Level": "1.5", "X-Auth-Subject": "user-1"} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("forward-auth %s = %q, want %q", name, got, want)
		}
	}
	if v := resp.Header.Values("X-Auth-Roles"); len(v) != 0 {
		t.Errorf("an array holding an object became header X-Auth-Roles %q, want none", v)
	}
	e.up.reset()
	resp, _ = e.raw(t, "GET", "/public/x", "X-User-Level: 99", "x_user_level: 99", "Connection: X-User-Level")
	if resp.StatusCode != 200 {
		t.Fatalf("public route = %d", resp.StatusCode)
	}
	got := e.up.got()
	if len(got) != 1 {
		t.Fatalf("upstream saw %d requests", len(got))
	}
	for name := range got[0].header {
		if headerFoldEq(name, "x-user-level") {
			t.Errorf("public route forwarded %s", name)
		}
	}
}

func headerFoldEq(a, b string) bool {
	return strings.EqualFold(strings.NewReplacer("_", "-", ".", "-").Replace(a), b)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestOwnTokensReadStrictly: tokens in our own name, signed with our key,
// that break a claim rule never reach the upstream.
func TestOwnTokensReadStrictly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	exp := itoa(time.Now().Add(time.Hour).Unix())
	own := func(header, payload string) string { return forge(t, jwt.SigningMethodES256, testKey, header, payload) }
	hdr := `{"alg":"ES256","typ":"at+jwt","kid":"es"}`
	base := `"iss":"` + testIssuer + `","aud":"orders-api","exp":` + exp
	for name, tok := range map[string]string{
		"U+00A0 joins admin to a granted scope": own(hdr, `{`+base+`,"sub":"m","scope":"orders:read\u00a0admin"}`),
		"U+0085 in sub":                         own(hdr, `{`+base+`,"sub":"m\u0085","scope":"admin"}`),
		"string exp":                            own(hdr, `{"iss":"`+testIssuer+`","aud":"orders-api","exp":"`+exp+`","sub":"m","scope":"admin"}`),
		"string iat":                            own(hdr, `{`+base+`,"iat":"0","sub":"m","scope":"admin"}`),
		"numeric kid":                           own(`{"alg":"ES256","typ":"at+jwt","kid":0}`, `{`+base+`,"sub":"m","scope":"admin"}`),
		"null kid":                              own(`{"alg":"ES256","typ":"at+jwt","kid":null}`, `{`+base+`,"sub":"m","scope":"admin"}`),
	} {
		t.Run(name, func(t *testing.T) {
			e.up.reset()
			resp, body := e.raw(t, "GET", "/admin", "Authorization: Bearer "+tok)
			if resp.StatusCode != 401 || !strings.Contains(body, "invalid_token") {
				t.Errorf("status %d %s, want 401 invalid_token", resp.StatusCode, body)
			}
			if got := e.up.got(); len(got) != 0 {
				t.Errorf("upstream received %d requests", len(got))
			}
		})
	}
	// The same shapes, well-formed, pass: the refusals above are the rules,
	// not the test's tokens.
	e.up.reset()
	ok := own(`{"alg":"ES256","typ":"at+jwt"}`, `{`+base+`,"sub":"m","scope":"  admin   orders:read "}`)
	resp, body := e.raw(t, "GET", "/admin", "Authorization: Bearer "+ok)
	if resp.StatusCode != 200 {
		t.Fatalf("kid-less token with the one ES256 key: %d %s", resp.StatusCode, body)
	}
	if got := e.up.got(); len(got) != 1 || got[0].header.Get("X-Auth-Scopes") != "admin orders:read" {
		t.Errorf("upstream saw %+v, want X-Auth-Scopes \"admin orders:read\"", got)
	}
}

package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/portcullis/portcullis/config"
)

type tokenReq struct {
	method      string
	contentType string
	body        string
	basicUser   string
	basicPass   string
	query       string
}

func doToken(t *testing.T, h http.Handler, r tokenReq) *httptest.ResponseRecorder {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.contentType == "" {
		r.contentType = "application/x-www-form-urlencoded"
	}
	req := httptest.NewRequest(r.method, "/token"+r.query, strings.NewReader(r.body))
	req.Header.Set("Content-Type", r.contentType)
	if r.basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(r.basicUser), url.QueryEscape(r.basicPass))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t, testConfig(t), Options{})
	h := iss.TokenHandler()
	good := "grant_type=client_credentials"
	tests := []struct {
		name       string
		req        tokenReq
		wantStatus int
		wantError  string
		wantHeader [2]string
	}{
		{"GET", tokenReq{method: "GET"}, 405, "invalid_request", [2]string{"Allow", "POST"}},
		{"json body", tokenReq{contentType: "application/json", body: "{}"}, 415, "invalid_request", [2]string{}},
		{"too large", tokenReq{body: good + "&x=" + strings.Repeat("a", 1<<20)}, 413, "invalid_request", [2]string{}},
		{"no grant", tokenReq{body: "client_id=billing&client_secret=" + testSecret}, 400, "invalid_request", [2]string{}},
		{"other grant", tokenReq{body: "grant_type=password&client_id=billing&client_secret=" + testSecret}, 400, "unsupported_grant_type", [2]string{}},
		{"repeated parameter", tokenReq{body: good + "&scope=a&scope=b", basicUser: "billing", basicPass: testSecret}, 400, "invalid_request", [2]string{}},
		{"both methods", tokenReq{body: good + "&client_id=billing&client_secret=" + testSecret, basicUser: "billing", basicPass: testSecret}, 400, "invalid_request", [2]string{}},
		{"credentials in URL", tokenReq{body: good, query: "?client_id=billing&client_secret=" + testSecret}, 400, "invalid_request", [2]string{}},
		{"no credentials", tokenReq{body: good}, 401, "invalid_client", [2]string{}},
		{"wrong secret basic", tokenReq{body: good, basicUser: "billing", basicPass: "wrong"}, 401, "invalid_client", [2]string{"WWW-Authenticate", `Basic realm="portcullis", charset="UTF-8"`}},
		{"unknown client basic", tokenReq{body: good, basicUser: "nobody", basicPass: testSecret}, 401, "invalid_client", [2]string{"WWW-Authenticate", `Basic realm="portcullis", charset="UTF-8"`}},
		{"wrong secret post", tokenReq{body: good + "&client_id=billing&client_secret=wrong"}, 401, "invalid_client", [2]string{"WWW-Authenticate", ""}},
		{"secret over 72 bytes", tokenReq{body: good, basicUser: "billing", basicPass: testSecret + strings.Repeat("x", 40)}, 401, "invalid_client", [2]string{}},
		{"scope not granted", tokenReq{body: good + "&scope=admin", basicUser: "billing", basicPass: testSecret}, 400, "invalid_scope", [2]string{}},
		{"audience not allowed", tokenReq{body: good + "&audience=payments", basicUser: "billing", basicPass: testSecret}, 400, "invalid_target", [2]string{}},
		{"resource not allowed", tokenReq{body: good + "&resource=payments", basicUser: "billing", basicPass: testSecret}, 400, "invalid_target", [2]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := doToken(t, h, tc.req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tc.wantStatus, rec.Body)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != tc.wantError {
				t.Errorf("body %s, want error %q", rec.Body, tc.wantError)
			}
			if tc.wantHeader[0] != "" && rec.Header().Get(tc.wantHeader[0]) != tc.wantHeader[1] {
				t.Errorf("%s = %q, want %q", tc.wantHeader[0], rec.Header().Get(tc.wantHeader[0]), tc.wantHeader[1])
			}
		})
	}
}

func TestTokenBothClientAuthMethods(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t, testConfig(t), Options{})
	h := iss.TokenHandler()
	for name, req := range map[string]tokenReq{
		"client_secret_basic": {body: "grant_type=client_credentials&scope=orders:read&audience=audit-api", basicUser: "billing", basicPass: testSecret},
		"client_secret_post":  {body: "grant_type=client_credentials&scope=orders:read&resource=audit-api&client_id=billing&client_secret=" + url.QueryEscape(testSecret)},
	} {
		t.Run(name, func(t *testing.T) {
			rec := doToken(t, h, req)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			for k, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			var resp struct {
				AccessToken  string `json:"access_token"`
				TokenType    string `json:"token_type"`
				ExpiresIn    int    `json:"expires_in"`
				Scope        string `json:"scope"`
				RefreshToken string `json:"refresh_token"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.TokenType != "Bearer" || resp.ExpiresIn != 3600 || resp.Scope != "orders:read" || resp.RefreshToken != "" {
				t.Errorf("response %+v", resp)
			}
			// The minted token carries RFC 9068's header and claims.
			parts := strings.Split(resp.AccessToken, ".")
			hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
			pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var hdr map[string]any
			var claims map[string]any
			_ = json.Unmarshal(hb, &hdr)
			_ = json.Unmarshal(pb, &claims)
			if hdr["typ"] != "at+jwt" || hdr["kid"] == "" || hdr["alg"] != "ES256" {
				t.Errorf("header %v", hdr)
			}
			for _, c := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"} {
				if _, ok := claims[c]; !ok {
					t.Errorf("claim %s missing from %v", c, claims)
				}
			}
			if claims["sub"] != "billing" || claims["client_id"] != "billing" || claims["iss"] != testIssuer {
				t.Errorf("claims %v", claims)
			}
			if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "audit-api" {
				t.Errorf("aud = %v, want [audit-api]", claims["aud"])
			}
		})
	}
}

// TestTokenVerifiesAgainstJWKS mints a token with each algorithm and key
// format and verifies it with a key taken from the published JWKS only.
func TestTokenVerifiesAgainstJWKS(t *testing.T) {
	t.Parallel()
	for _, kf := range keyFixtures {
		t.Run(kf.alg+"/"+kf.form, func(t *testing.T) {
			t.Parallel()
			path := writePEM(t, t.TempDir(), "key.pem", kf.key, kf.form)
			iss := newTestIssuer(t, testConfig(t, config.Key{ID: "k1", Algorithm: kf.alg, PrivateKeyFile: path}), Options{})
			srv := serveIssuer(t, iss)
			cc := clientcredentials.Config{ClientID: "billing", ClientSecret: testSecret, TokenURL: srv.URL + "/token"}
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Get(srv.URL + "/.well-known/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
				t.Errorf("JWKS Cache-Control = %q, want a max-age", cc)
			}
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			_ = json.Unmarshal(body, &set)
			if len(set.Keys) != 1 || set.Keys[0]["kid"] != "k1" || set.Keys[0]["alg"] != kf.alg || set.Keys[0]["use"] != "sig" {
				t.Fatalf("JWKS %s", body)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
				if _, ok := set.Keys[0][private]; ok {
					t.Fatalf("JWKS publishes private member %q", private)
				}
			}
			keys, err := parseJWKS(body, []string{kf.alg})
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.Parse(tok.AccessToken, func(*jwt.Token) (any, error) { return keys["k1"].public, nil },
				jwt.WithValidMethods([]string{kf.alg}), jwt.WithIssuer(testIssuer), jwt.WithAudience("orders-api"))
			if err != nil || !parsed.Valid {
				t.Fatalf("token does not verify against the JWKS: %v", err)
			}
			if _, err := iss.Verify(tok.AccessToken); err != nil {
				t.Fatalf("own Verify: %v", err)
			}
		})
	}
}

func TestJWKSNeverPublishesHMAC(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t, testConfig(t, config.Key{ID: "h", Algorithm: "HS256", Secret: "0123456789abcdef0123456789abcdef"}), Options{})
	rec := httptest.NewRecorder()
	iss.JWKSHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	if strings.TrimSpace(rec.Body.String()) != `{"keys":[]}` {
		t.Errorf("JWKS = %s, want no keys", rec.Body)
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t, testConfig(t), Options{})
	rec := httptest.NewRecorder()
	iss.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-authorization-server", nil))
	var md map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"issuer": testIssuer, "token_endpoint": testIssuer + "/token", "jwks_uri": testIssuer + "/.well-known/jwks.json",
		"revocation_endpoint": testIssuer + "/revoke", "introspection_endpoint": testIssuer + "/introspect",
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("%s = %v, want %s", k, md[k], v)
		}
	}
	if g, _ := md["grant_types_supported"].([]any); len(g) != 1 || g[0] != "client_credentials" {
		t.Errorf("grant_types_supported = %v", md["grant_types_supported"])
	}
}

func TestCredentialCache(t *testing.T) {
	t.Parallel()
	a, err := newClientAuth(testConfig(t).Issuer.Clients, sourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if c, _ := a.authenticate(ctx, "billing", "wrong"); c != nil {
		t.Fatal("wrong secret accepted")
	}
	if len(a.cache) != 0 {
		t.Fatal("a wrong secret was cached")
	}
	if c, _ := a.authenticate(ctx, "billing", testSecret); c == nil || c.id != "billing" {
		t.Fatal("right secret refused")
	}
	if len(a.cache) != 1 {
		t.Fatalf("cache has %d entries, want 1", len(a.cache))
	}
	for k := range a.cache {
		if strings.Contains(string(k[:]), testSecret) {
			t.Fatal("cache key holds the secret")
		}
	}
	// The cached entry is bound to the client id: the same secret with
	// another id is a separate bcrypt check.
	if c, _ := a.authenticate(ctx, "other", testSecret); c == nil || c.id != "other" {
		t.Fatal("other client refused")
	}
	if c, _ := a.authenticate(ctx, "billing", testSecret+"x"); c != nil {
		t.Fatal("near-miss secret accepted")
	}
}

// BenchmarkTokenCachedSecret measures /token for a client whose bcrypt-12
// secret was already verified once: the credential cache answers, so each
// request costs a MAC and an ES256 signature, not bcrypt.
func BenchmarkTokenCachedSecret(b *testing.B) {
	hash, err := bcryptHash(testSecret, 12)
	if err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(b)
	cfg.Issuer.Clients[0].SecretHash = config.Secret(hash)
	iss := newTestIssuer(b, cfg, Options{})
	h := iss.TokenHandler()
	body := "grant_type=client_credentials"
	do := func() int {
		req := httptest.NewRequest("POST", "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("billing", testSecret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := do(); code != 200 { // first request pays bcrypt once
		b.Fatalf("status %d", code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if code := do(); code != 200 {
			b.Fatalf("status %d", code)
		}
	}
}

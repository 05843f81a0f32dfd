package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/claim"
	"github.com/portcullis/portcullis/config"
)

// ownIssuer has two ES256 keys (es, es2) and one RS256 key (rs): a kid-less
// RS256 token names its key unambiguously, a kid-less ES256 one does not.
func ownIssuer(t testing.TB, mutate func(*config.Config)) *Issuer {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t,
		config.Key{ID: "es", Algorithm: "ES256", PrivateKeyFile: writePEM(t, dir, "es.pem", ecP256, "pkcs8")},
		config.Key{ID: "rs", Algorithm: "RS256", PrivateKeyFile: writePEM(t, dir, "rs.pem", rsa2048, "pkcs1")},
		config.Key{ID: "es2", Algorithm: "ES256", PrivateKeyFile: writePEM(t, dir, "es2.pem", ecP256b, "pkcs8")},
	)
	if mutate != nil {
		mutate(cfg)
	}
	clk := &clock{t: t0}
	return newTestIssuer(t, cfg, Options{Now: clk.now})
}

var ecP256b, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

// esTok signs a payload with the es key; header extras are spliced in.
func esTok(t testing.TB, payload string) string {
	return rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt","kid":"es"}`, payload)
}

// payloadWith replaces one member's JSON text in the default claims.
func payloadWith(member, rawJSON string) string {
	c := claimsJSON(map[string]any{member: nil})
	return strings.TrimSuffix(c, "}") + `,"` + member + `":` + rawJSON + `}`
}

func TestVerifyClaimRules(t *testing.T) {
	t.Parallel()
	iss := ownIssuer(t, nil)
	tests := []struct {
		name  string
		token string
		want  error // nil: valid
	}{
		// Control characters: C0, DEL and C1, raw or escaped, anywhere.
		{"C1 NEL in sub, raw UTF-8", esTok(t, payloadWith("sub", "\"bob\u0085admin\"")), ErrMalformed},
		{"C1 NEL in sub, escaped", esTok(t, payloadWith("sub", `"bob\u0085admin"`)), ErrMalformed},
		{"C1 U+009F in client_id, escaped", esTok(t, payloadWith("client_id", `"billing\u009f"`)), ErrMalformed},
		{"C1 U+0080 in scope", esTok(t, payloadWith("scope", `"orders:read\u0080admin"`)), ErrMalformed},
		{"DEL in jti", esTok(t, payloadWith("jti", `"id\u007f"`)), ErrMalformed},
		{"C0 in iss", esTok(t, payloadWith("iss", `"https://auth.test\u0000"`)), ErrMalformed},
		{"C1 in aud element", esTok(t, payloadWith("aud", `["orders-api","x\u0085"]`)), ErrMalformed},
		{"C1 in a nested claim", esTok(t, payloadWith("realm_access", `{"roles":["admin\u0085"]}`)), ErrMalformed},
		{"C1 in a member name", esTok(t, payloadWith("x\u0085y", `1`)), ErrMalformed},
		{"U+00A0 is not a control character", esTok(t, payloadWith("name", `"a\u00a0b"`)), nil},
		{"invalid UTF-8 in sub", esTok(t, payloadWith("sub", "\"bob\xff\"")), ErrMalformed},
		{"overlong UTF-8 in sub", esTok(t, payloadWith("sub", "\"\xc0\xafadmin\"")), ErrMalformed},
		{"lone high surrogate", esTok(t, payloadWith("sub", `"a\ud800b"`)), ErrMalformed},
		{"lone low surrogate", esTok(t, payloadWith("sub", `"a\udc00"`)), ErrMalformed},
		{"reversed surrogates", esTok(t, payloadWith("sub", `"\udc00\ud800"`)), ErrMalformed},
		{"surrogate pair is fine", esTok(t, payloadWith("name", `"\ud83d\ude00"`)), nil},
		{"escaped backslash before u is no escape", esTok(t, payloadWith("name", `"\\ud800"`)), nil},

		// Scopes: one parser, ASCII space only, RFC 6749 §3.3 characters.
		{"U+00A0 between scopes", esTok(t, payloadWith("scope", `"orders:read\u00a0portcullis:admin"`)), ErrMalformed},
		{"U+00A0 raw between scopes", esTok(t, payloadWith("scope", "\"orders:read\u00a0portcullis:admin\"")), ErrMalformed},
		{"U+3000 between scopes", esTok(t, payloadWith("scope", `"orders:read\u3000admin"`)), ErrMalformed},
		{"U+2003 between scopes", esTok(t, payloadWith("scope", `"orders:read\u2003admin"`)), ErrMalformed},
		{"tab between scopes", esTok(t, payloadWith("scope", `"orders:read\tadmin"`)), ErrMalformed},
		{"quote in a scope", esTok(t, payloadWith("scope", `"a\"b"`)), ErrMalformed},
		{"backslash in a scope", esTok(t, payloadWith("scope", `"a\\b"`)), ErrMalformed},
		{"non-ASCII letter in a scope", esTok(t, payloadWith("scope", `"ädmin"`)), ErrMalformed},
		{"scope is a number", esTok(t, payloadWith("scope", `5`)), ErrMalformed},
		{"own token scope as an array", esTok(t, payloadWith("scope", `["orders:read"]`)), ErrMalformed},
		{"repeated and edge spaces are ignored", esTok(t, payloadWith("scope", `"  orders:read   x "`)), nil},
		{"null scope is no scope", esTok(t, payloadWith("scope", `null`)), nil},

		// NumericDate (RFC 7519 §2): JSON numbers only.
		{"exp as a string", esTok(t, payloadWith("exp", `"4102444800"`)), ErrMalformed},
		{"nbf as a string", esTok(t, payloadWith("nbf", `"0"`)), ErrMalformed},
		{"iat as a string", esTok(t, payloadWith("iat", `"1700000000"`)), ErrMalformed},
		{"exp as a boolean", esTok(t, payloadWith("exp", `true`)), ErrMalformed},
		{"exp as null", esTok(t, payloadWith("exp", `null`)), ErrMalformed},
		{"nbf as null", esTok(t, payloadWith("nbf", `null`)), ErrMalformed},
		{"exp as an object", esTok(t, payloadWith("exp", `{"v":4102444800}`)), ErrMalformed},
		{"exp as an array", esTok(t, payloadWith("exp", `[4102444800]`)), ErrMalformed},
		{"exp beyond float64", esTok(t, payloadWith("exp", `1e400`)), ErrMalformed},
		{"exp beyond year 9999", esTok(t, payloadWith("exp", `1e300`)), ErrMalformed},
		{"negative iat", esTok(t, payloadWith("iat", `-1`)), ErrMalformed},
		{"fractional exp is a number", esTok(t, payloadWith("exp", `4102444800.5`)), nil},
		{"exponent exp is a number", esTok(t, payloadWith("exp", `4.1024448e9`)), nil},

		// Registered string claims have their types.
		{"sub as a number", esTok(t, payloadWith("sub", `42`)), ErrMalformed},
		{"sub as null", esTok(t, payloadWith("sub", `null`)), ErrMalformed},
		{"client_id as an array", esTok(t, payloadWith("client_id", `["billing"]`)), ErrMalformed},
		{"iss as an array", esTok(t, payloadWith("iss", `["https://auth.test"]`)), ErrMalformed},
		{"jti as an object", esTok(t, payloadWith("jti", `{}`)), ErrMalformed},
		{"aud as null", esTok(t, payloadWith("aud", `null`)), ErrMalformed},
		{"aud holding a number", esTok(t, payloadWith("aud", `["orders-api",5]`)), ErrMalformed},
		{"aud holding null", esTok(t, payloadWith("aud", `["orders-api",null]`)), ErrMalformed},
		{"aud as a string", esTok(t, payloadWith("aud", `"orders-api"`)), nil},
		{"payload is an array", esTok(t, `[1]`), ErrMalformed},

		// Header rules.
		{"numeric kid", rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt","kid":1}`, claimsJSON(nil)), ErrMalformed},
		{"null kid", rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"at+jwt","kid":null}`, claimsJSON(nil)), ErrMalformed},
		{"object kid", rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt","kid":{"id":"es"}}`, claimsJSON(nil)), ErrMalformed},
		{"array kid", rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt","kid":["es"]}`, claimsJSON(nil)), ErrMalformed},
		{"empty kid names no key", rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"at+jwt","kid":""}`, claimsJSON(nil)), ErrUnknownKey},
		{"numeric typ", rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":1,"kid":"es"}`, claimsJSON(nil)), ErrMalformed},
		{"numeric alg", rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":256,"typ":"at+jwt","kid":"es"}`, claimsJSON(nil)), ErrAlgorithm},
		{"no kid, one RS256 key", rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"at+jwt"}`, claimsJSON(nil)), nil},
		{"no kid, two ES256 keys", rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt"}`, claimsJSON(nil)), ErrUnknownKey},
		{"no kid, RS256 signature on the PS256 algorithm", rawToken(t, jwt.SigningMethodPS256, rsa2048, `{"alg":"PS256","typ":"at+jwt"}`, claimsJSON(nil)), ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := iss.Verify(tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestScopesAreNormalised(t *testing.T) {
	t.Parallel()
	iss := ownIssuer(t, nil)
	p, err := iss.Verify(esTok(t, payloadWith("scope", `"  orders:read  orders:write orders:read "`)))
	if err != nil {
		t.Fatal(err)
	}
	if p.ScopeString != "orders:read orders:write" || len(p.Scopes) != 2 {
		t.Errorf("scopes %q (%q), want \"orders:read orders:write\"", p.Scopes, p.ScopeString)
	}
}

// idp is a trusted issuer serving a JWKS, with the issuer verifying it.
type idp struct {
	iss *Issuer
	url string
}

func newIDP(t *testing.T, keys []*Key, mutate func(*config.TrustedIssuer), cfgMutate func(*config.Config)) *idp {
	t.Helper()
	var s jwkSet
	for _, k := range keys {
		j, _ := publicJWK(k)
		s.Keys = append(s.Keys, j)
	}
	body, _ := json.Marshal(s)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(srv.Close)
	cfg := testConfig(t)
	ti := config.TrustedIssuer{Issuer: "https://idp.test", JWKSURL: srv.URL, Algorithms: []string{"RS256", "ES256"}, Audience: []string{"orders-api"}, ScopeClaims: []string{"scope", "scp"}}
	if mutate != nil {
		mutate(&ti)
	}
	cfg.TrustedIssuers = []config.TrustedIssuer{ti}
	if cfgMutate != nil {
		cfgMutate(cfg)
	}
	clk := &clock{t: t0}
	iss := newTestIssuer(t, cfg, Options{Now: clk.now, HTTPClient: srv.Client()})
	if _, err := iss.remotes["https://idp.test"].fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &idp{iss: iss, url: "https://idp.test"}
}

// idpPayload is a trusted issuer's claims with the given members replaced
// by raw JSON (and without our own scope claim).
func idpPayload(members map[string]string) string {
	c := claimsJSON(map[string]any{"iss": "https://idp.test", "scope": nil})
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(c, "}"))
	for k, v := range members {
		b.WriteString(`,"` + k + `":` + v)
	}
	return b.String() + "}"
}

func TestTrustedIssuerScopeClaims(t *testing.T) {
	t.Parallel()
	rsKey := &Key{ID: "idp-rs", Alg: "RS256", public: &rsa2048.PublicKey}
	p := newIDP(t, []*Key{rsKey}, nil, nil)
	rs := func(payload string) string {
		return rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"JWT","kid":"idp-rs"}`, payload)
	}
	tests := []struct {
		name    string
		members map[string]string
		want    string // ScopeString; "!" means invalid
	}{
		{"Ory Hydra: scp array", map[string]string{"scp": `["orders:read","orders:write"]`}, "orders:read orders:write"},
		{"Okta: scp array", map[string]string{"scp": `["orders:read"]`}, "orders:read"},
		{"Entra ID: scp string", map[string]string{"scp": `"orders:read orders:write"`}, "orders:read orders:write"},
		{"Keycloak: scope string", map[string]string{"scope": `"profile orders:read"`}, "profile orders:read"},
		{"scope wins over scp", map[string]string{"scope": `"a"`, "scp": `["b"]`}, "a"},
		{"null scope falls through to scp", map[string]string{"scope": `null`, "scp": `["b"]`}, "b"},
		{"no scope claim at all", nil, ""},
		{"U+00A0 in scp string", map[string]string{"scp": `"orders:read\u00a0portcullis:admin"`}, "!"},
		{"space inside an scp element", map[string]string{"scp": `["orders:read portcullis:admin"]`}, "!"},
		{"U+00A0 inside an scp element", map[string]string{"scp": `["orders:read\u00a0portcullis:admin"]`}, "!"},
		{"empty scp element", map[string]string{"scp": `["a",""]`}, "!"},
		{"number in scp", map[string]string{"scp": `["a",1]`}, "!"},
		{"null in scp", map[string]string{"scp": `["a",null]`}, "!"},
		{"scp as an object", map[string]string{"scp": `{"a":true}`}, "!"},
		{"scope as a number, scp valid", map[string]string{"scope": `1`, "scp": `["a"]`}, "!"},
		{"scope as a boolean", map[string]string{"scope": `true`}, "!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := p.iss.Verify(rs(idpPayload(tc.members)))
			if tc.want == "!" {
				if err == nil {
					t.Fatalf("accepted, scopes %q", pr.Scopes)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.ScopeString != tc.want {
				t.Errorf("scopes %q, want %q", pr.ScopeString, tc.want)
			}
		})
	}
}

func TestTrustedIssuerCustomScopeClaims(t *testing.T) {
	t.Parallel()
	rsKey := &Key{ID: "idp-rs", Alg: "RS256", public: &rsa2048.PublicKey}
	p := newIDP(t, []*Key{rsKey}, func(ti *config.TrustedIssuer) { ti.ScopeClaims = []string{"permissions"} }, nil)
	tok := rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","kid":"idp-rs"}`, idpPayload(map[string]string{"scope": `"ignored"`, "permissions": `["orders:read"]`}))
	pr, err := p.iss.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if pr.ScopeString != "orders:read" {
		t.Errorf("scopes %q, want orders:read from permissions only", pr.ScopeString)
	}
}

func TestTrustedIssuerKidless(t *testing.T) {
	t.Parallel()
	rsKey := &Key{ID: "idp-rs", Alg: "RS256", public: &rsa2048.PublicKey}
	es1 := &Key{ID: "idp-es1", Alg: "ES256", public: &ecP256.PublicKey}
	es2 := &Key{ID: "idp-es2", Alg: "ES256", public: &ecP256.PublicKey}
	p := newIDP(t, []*Key{rsKey, es1, es2}, nil, nil)
	payload := idpPayload(nil)
	if _, err := p.iss.Verify(rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"JWT"}`, payload)); err != nil {
		t.Errorf("kid-less RS256 token, one RS256 key: %v, want valid", err)
	}
	if _, err := p.iss.Verify(rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"JWT"}`, payload)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("kid-less ES256 token, two ES256 keys: %v, want ErrUnknownKey", err)
	}
	if _, err := p.iss.Verify(rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"JWT","kid":7}`, payload)); !errors.Is(err, ErrMalformed) {
		t.Errorf("numeric kid: %v, want ErrMalformed", err)
	}
	if _, err := p.iss.Verify(rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"JWT"}`, idpPayload(map[string]string{"exp": `"4102444800"`}))); !errors.Is(err, ErrMalformed) {
		t.Errorf("trusted issuer's string exp: %v, want ErrMalformed", err)
	}
}

func TestReferencedClaimsAndHeaders(t *testing.T) {
	t.Parallel()
	rsKey := &Key{ID: "idp-rs", Alg: "RS256", public: &rsa2048.PublicKey}
	p := newIDP(t, []*Key{rsKey}, nil, func(cfg *config.Config) {
		cfg.Routes = []config.Route{{Path: "/", Claims: map[string]config.ClaimValues{
			"realm_access.roles": {claim.StringValue("admin")}, "https://x.example/roles": {claim.StringValue("r")},
		}}}
		cfg.IdentityHeaders.Claims = map[string]string{
			"X-Auth-Email": "email", "X-Auth-Groups": "groups", "X-Auth-Verified": "email_verified",
			"X-Auth-Level": "level", "X-Auth-Obj": "obj", "X-Auth-Null": "nothing", "X-Auth-Mixed": "mixed",
			"x-auth-roles": "realm_access.roles", "X-Auth-Absent": "absent",
		}
	})
	tok := rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","kid":"idp-rs"}`, idpPayload(map[string]string{
		"email": `"a@b.example"`, "groups": `["g1","g2"]`, "email_verified": `true`, "level": `1.50`,
		"obj": `{"a":1}`, "nothing": `null`, "mixed": `["a",{"b":1}]`,
		"realm_access": `{"roles":["admin","user"]}`, "https://x.example/roles": `"r"`, "unreferenced": `"big"`,
	}))
	pr, err := p.iss.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for i, name := range p.iss.ClaimHeaderNames() {
		if v := pr.ClaimHeaderValues()[i]; v != "" {
			got[name] = v
		}
	}
	want := map[string]string{
		"X-Auth-Email": "a@b.example", "X-Auth-Groups": "g1,g2", "X-Auth-Verified": "true",
		"X-Auth-Level": "1.50", "X-Auth-Roles": "admin,user",
	}
	if len(got) != len(want) {
		t.Errorf("claim headers %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if c, ok := pr.Claim("realm_access.roles"); !ok || !c.Matches([]claim.Value{claim.StringValue("admin")}) {
		t.Errorf("realm_access.roles = %+v, %v", c, ok)
	}
	if c, ok := pr.Claim("https://x.example/roles"); !ok || !c.Matches([]claim.Value{claim.StringValue("r")}) {
		t.Errorf("https://x.example/roles = %+v, %v", c, ok)
	}
	if _, ok := pr.Claim("unreferenced"); ok {
		t.Error("a claim nothing refers to was kept")
	}
}

func TestRevokeOnlyOwnTokensOfTheClient(t *testing.T) {
	t.Parallel()
	rsKey := &Key{ID: "idp-rs", Alg: "RS256", public: &rsa2048.PublicKey}
	p := newIDP(t, []*Key{rsKey}, nil, nil)
	iss := p.iss
	// A trusted issuer's token whose client_id equals a local client's id.
	foreign := rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","kid":"idp-rs"}`,
		claimsJSON(map[string]any{"iss": "https://idp.test", "client_id": "billing", "sub": "billing", "jti": "foreign-1"}))
	if _, err := iss.Verify(foreign); err != nil {
		t.Fatal(err)
	}
	rec := postForm(t, iss.RevokeHandler(), "billing", "token="+foreign)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "unauthorized_client") {
		t.Errorf("revoking a trusted issuer's token = %d %s, want 400 unauthorized_client", rec.Code, rec.Body)
	}
	if _, err := iss.Verify(foreign); err != nil {
		t.Errorf("trusted issuer's token after a refused revoke: %v, want untouched", err)
	}
	if rec := postForm(t, iss.RevokeHandler(), "billing", "token="+esTok(t, claimsJSON(nil))); rec.Code != 200 {
		t.Errorf("revoking a token no key verifies = %d, want 200", rec.Code)
	}
}

func TestRevokeWithoutStoreStillChecksOwnership(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	iss, err := New(Options{Config: cfg, Now: func() time.Time { return time.Now() }})
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, iss, "billing", "orders:read")
	if rec := postForm(t, iss.RevokeHandler(), "other", "token="+tok); rec.Code != 400 {
		t.Errorf("another client's token with no revocation store = %d, want 400", rec.Code)
	}
}

func TestTokenEndpointScopeUsesTheOneParser(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t, testConfig(t), Options{})
	for _, scope := range []string{"orders:read%C2%A0orders:write", "orders:read%09orders:write", "orders:read%E3%80%80orders:write"} {
		rec := postForm(t, iss.TokenHandler(), "billing", "grant_type=client_credentials&scope="+scope)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "invalid_scope") {
			t.Errorf("scope %s: %d %s, want 400 invalid_scope", scope, rec.Code, rec.Body)
		}
	}
	rec := postForm(t, iss.TokenHandler(), "billing", "grant_type=client_credentials&scope=+orders:read++orders:write+")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"scope":"orders:read orders:write"`) {
		t.Errorf("spaced scopes: %d %s, want 200 with the normalised scope", rec.Code, rec.Body)
	}
}

package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/config"
)

// ecJWK is the public JWK of an EC key, as a client would publish it.
func ecJWK(t testing.TB, kid string, k *ecdsa.PrivateKey) config.JWK {
	t.Helper()
	j, ok := publicJWK(&Key{ID: kid, Alg: "ES256", public: &k.PublicKey})
	if !ok {
		t.Fatal("no JWK")
	}
	return config.JWK{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Crv: j.Crv, X: j.X, Y: j.Y}
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign makes a JWT with the given header additions and claims.
func sign(t testing.TB, m jwt.SigningMethod, key crypto.Signer, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertionClaims is a valid private_key_jwt claim set for client id at now.
func assertionClaims(id string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": id, "sub": id, "aud": testIssuer + "/token", "jti": newJTI(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}
}

// postToken sends a client_credentials request with the given extra form
// values; basic, if set, is used as HTTP Basic credentials.
func postToken(t testing.TB, srvURL string, form url.Values, basic ...string) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	req, err := http.NewRequest("POST", srvURL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func assertionForm(assertion string) url.Values {
	return url.Values{"client_assertion_type": {AssertionType}, "client_assertion": {assertion}}
}

// pkjwtIssuer serves an issuer with one inline-jwks client "reporting".
func pkjwtIssuer(t *testing.T, clientKey *ecdsa.PrivateKey) (*httptest.Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	cfg := testConfig(t)
	cfg.Issuer.Clients = append(cfg.Issuer.Clients, config.Client{
		ID: "reporting", Scopes: []string{"orders:read"},
		JWKS: &config.JWKSet{Keys: []config.JWK{ecJWK(t, "r1", clientKey)}},
	})
	iss := newTestIssuer(t, cfg, Options{Now: clk.now})
	return serveIssuer(t, iss), clk
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	key, other := newECKey(t), newECKey(t)
	rsaKey := rsa2048
	type tc struct {
		name   string
		form   func(now time.Time) url.Values
		basic  []string
		status int
		code   string
	}
	valid := func(mut func(jwt.MapClaims)) func(time.Time) url.Values {
		return func(now time.Time) url.Values {
			c := assertionClaims("reporting", now)
			if mut != nil {
				mut(c)
			}
			return assertionForm(sign(t, jwt.SigningMethodES256, key, "r1", c))
		}
	}
	cases := []tc{
		{name: "valid, token endpoint audience", form: valid(nil), status: 200},
		{name: "valid, issuer audience", form: valid(func(c jwt.MapClaims) { c["aud"] = testIssuer }), status: 200},
		{name: "valid, audience array", form: valid(func(c jwt.MapClaims) { c["aud"] = []string{"x", testIssuer + "/token"} }), status: 200},
		{name: "valid, matching client_id", form: func(now time.Time) url.Values {
			f := valid(nil)(now)
			f.Set("client_id", "reporting")
			return f
		}, status: 200},
		{name: "client_id of another client", form: func(now time.Time) url.Values {
			f := valid(nil)(now)
			f.Set("client_id", "billing")
			return f
		}, status: 401, code: "invalid_client"},
		{name: "mis-addressed audience", form: valid(func(c jwt.MapClaims) { c["aud"] = "https://other.example/token" }), status: 401, code: "invalid_client"},
		{name: "no audience", form: valid(func(c jwt.MapClaims) { delete(c, "aud") }), status: 401, code: "invalid_client"},
		{name: "expired", form: valid(func(c jwt.MapClaims) {
			c["iat"] = time.Unix(c["iat"].(int64), 0).Add(-10 * time.Minute).Unix()
			c["exp"] = time.Unix(c["iat"].(int64), 0).Add(5 * time.Minute).Unix()
		}), status: 401, code: "invalid_client"},
		{name: "exp too far ahead", form: valid(func(c jwt.MapClaims) { c["exp"] = time.Unix(c["iat"].(int64), 0).Add(10 * time.Minute).Unix() }), status: 401, code: "invalid_client"},
		{name: "no exp", form: valid(func(c jwt.MapClaims) { delete(c, "exp") }), status: 401, code: "invalid_client"},
		{name: "exp as string", form: valid(func(c jwt.MapClaims) { c["exp"] = "9999999999" }), status: 401, code: "invalid_client"},
		{name: "iat in the future", form: valid(func(c jwt.MapClaims) { c["iat"] = time.Unix(c["iat"].(int64), 0).Add(3 * time.Minute).Unix() }), status: 401, code: "invalid_client"},
		{name: "no jti", form: valid(func(c jwt.MapClaims) { delete(c, "jti") }), status: 401, code: "invalid_client"},
		{name: "huge jti", form: valid(func(c jwt.MapClaims) { c["jti"] = strings.Repeat("j", 300) }), status: 401, code: "invalid_client"},
		{name: "iss is not sub", form: valid(func(c jwt.MapClaims) { c["iss"] = "billing" }), status: 401, code: "invalid_client"},
		{name: "sub is another client", form: valid(func(c jwt.MapClaims) { c["sub"] = "billing"; c["iss"] = "billing" }), status: 401, code: "invalid_client"},
		{name: "unknown client", form: valid(func(c jwt.MapClaims) { c["sub"] = "nobody"; c["iss"] = "nobody" }), status: 401, code: "invalid_client"},
		{name: "wrong key, right kid", form: func(now time.Time) url.Values {
			return assertionForm(sign(t, jwt.SigningMethodES256, other, "r1", assertionClaims("reporting", now)))
		}, status: 401, code: "invalid_client"},
		{name: "unknown kid", form: func(now time.Time) url.Values {
			return assertionForm(sign(t, jwt.SigningMethodES256, key, "r9", assertionClaims("reporting", now)))
		}, status: 401, code: "invalid_client"},
		{name: "no kid, the client's only ES256 key", form: func(now time.Time) url.Values {
			return assertionForm(sign(t, jwt.SigningMethodES256, key, "", assertionClaims("reporting", now)))
		}, status: 200},
		{name: "RS256 with the kid of an EC key", form: func(now time.Time) url.Values {
			return assertionForm(sign(t, jwt.SigningMethodRS256, rsaKey, "r1", assertionClaims("reporting", now)))
		}, status: 401, code: "invalid_client"},
		{name: "HS256 keyed with the public key", form: func(now time.Time) url.Values {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, assertionClaims("reporting", now))
			tok.Header["kid"] = "r1"
			pub, _ := json.Marshal(ecJWK(t, "r1", key))
			s, _ := tok.SignedString(pub)
			return assertionForm(s)
		}, status: 401, code: "invalid_client"},
		{name: "alg none", form: func(now time.Time) url.Values {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, assertionClaims("reporting", now))
			tok.Header["kid"] = "r1"
			s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			return assertionForm(s)
		}, status: 401, code: "invalid_client"},
		{name: "jwk header", form: func(now time.Time) url.Values {
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, assertionClaims("reporting", now))
			tok.Header["kid"] = "r1"
			tok.Header["jwk"] = map[string]string{"kty": "EC"}
			s, _ := tok.SignedString(key)
			return assertionForm(s)
		}, status: 401, code: "invalid_client"},
		{name: "garbage assertion", form: func(time.Time) url.Values { return assertionForm("a.b.c") }, status: 401, code: "invalid_client"},
		{name: "assertion and client_secret", form: func(now time.Time) url.Values {
			f := valid(nil)(now)
			f.Set("client_secret", "x")
			return f
		}, status: 400, code: "invalid_request"},
		{name: "assertion and Basic", form: valid(nil), basic: []string{"reporting", "x"}, status: 400, code: "invalid_request"},
		{name: "wrong assertion type", form: func(now time.Time) url.Values {
			f := valid(nil)(now)
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return f
		}, status: 400, code: "invalid_request"},
		{name: "type without assertion", form: func(time.Time) url.Values {
			return url.Values{"client_assertion_type": {AssertionType}}
		}, status: 400, code: "invalid_request"},
		{name: "a keys client cannot use a secret", form: func(time.Time) url.Values {
			return url.Values{"client_id": {"reporting"}, "client_secret": {""}}
		}, status: 401, code: "invalid_client"},
	}
	srv, clk := pkjwtIssuer(t, key)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := postToken(t, srv.URL, c.form(clk.now()), c.basic...)
			if status != c.status {
				t.Fatalf("status %d (%v), want %d", status, body, c.status)
			}
			if c.code != "" && body["error"] != c.code {
				t.Errorf("error %v, want %s", body["error"], c.code)
			}
			if c.status == 200 && body["scope"] != "orders:read" {
				t.Errorf("scope %v, want orders:read", body["scope"])
			}
		})
	}
}

func TestPrivateKeyJWTReplay(t *testing.T) {
	t.Parallel()
	key := newECKey(t)
	srv, clk := pkjwtIssuer(t, key)
	a := sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))
	if status, body := postToken(t, srv.URL, assertionForm(a)); status != 200 {
		t.Fatalf("first use: %d %v", status, body)
	}
	for i := range 3 {
		if status, _ := postToken(t, srv.URL, assertionForm(a)); status != 401 {
			t.Fatalf("replay %d: status %d, want 401", i, status)
		}
	}
	// A fresh jti from the same client is fine.
	b := sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))
	if status, _ := postToken(t, srv.URL, assertionForm(b)); status != 200 {
		t.Fatalf("new jti: status %d", status)
	}
}

// TestAssertionInURL: a client assertion is a credential, so one in the
// query string is refused like a secret there (RFC 6749 §2.3.1).
func TestAssertionInURL(t *testing.T) {
	t.Parallel()
	key := newECKey(t)
	srv, clk := pkjwtIssuer(t, key)
	a := sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))
	q := url.Values{"client_assertion": {a}, "client_assertion_type": {AssertionType}}
	resp, err := http.Post(srv.URL+"/token?"+q.Encode(), "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("assertion in the URL: status %d, want 400", resp.StatusCode)
	}
}

// TestAssertionFailuresLookAlike: an unknown client, a bad signature and a
// replay answer the same status, body and headers.
func TestAssertionFailuresLookAlike(t *testing.T) {
	t.Parallel()
	key := newECKey(t)
	srv, clk := pkjwtIssuer(t, key)
	do := func(a string) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", srv.URL+"/token", strings.NewReader("grant_type=client_credentials&"+assertionForm(a).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 1024)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		resp.Header.Del("Date")
		return resp.StatusCode, b.String(), resp.Header
	}
	unknown := assertionClaims("nobody", clk.now())
	s1, b1, h1 := do(sign(t, jwt.SigningMethodES256, key, "r1", unknown))
	s2, b2, h2 := do(sign(t, jwt.SigningMethodES256, newECKey(t), "r1", assertionClaims("reporting", clk.now())))
	if s1 != 401 || s1 != s2 || b1 != b2 {
		t.Fatalf("unknown client: %d %s; bad signature: %d %s", s1, b1, s2, b2)
	}
	for k := range h1 {
		if h1.Get(k) != h2.Get(k) && k != "Content-Length" {
			t.Errorf("header %s: %q vs %q", k, h1.Get(k), h2.Get(k))
		}
	}
}

func TestDecoyCost(t *testing.T) {
	t.Parallel()
	hash := func(cost int) config.Secret {
		h, err := bcryptHash("s", cost)
		if err != nil {
			t.Fatal(err)
		}
		return config.Secret(h)
	}
	h5, h6 := hash(5), hash(6)
	cases := []struct {
		name    string
		clients []config.Client
		want    int
	}{
		{"one client", []config.Client{{ID: "a", SecretHash: h5}}, 5},
		{"most common cost", []config.Client{{ID: "a", SecretHash: h5}, {ID: "b", SecretHash: h5}, {ID: "c", SecretHash: h6}}, 5},
		{"tie takes the higher", []config.Client{{ID: "a", SecretHash: h5}, {ID: "c", SecretHash: h6}}, 6},
		{"no secret clients", []config.Client{{ID: "k", JWKS: &config.JWKSet{Keys: []config.JWK{ecJWK(t, "k", newECKey(t))}}}}, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, err := newClientAuth(c.clients, sourceOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := bcrypt.Cost(a.fakeHash)
			if err != nil || got != c.want {
				t.Fatalf("decoy cost %d (%v), want %d", got, err, c.want)
			}
		})
	}
}

// TestDecoyHashKept: a second client set of the same cost (a reload)
// reuses the decoy hash instead of spending another bcrypt on it.
func TestDecoyHashKept(t *testing.T) {
	t.Parallel()
	h, err := bcryptHash("s", 7)
	if err != nil {
		t.Fatal(err)
	}
	clients := []config.Client{{ID: "a", SecretHash: config.Secret(h)}}
	a1, err1 := newClientAuth(clients, sourceOptions{})
	a2, err2 := newClientAuth(clients, sourceOptions{})
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if &a1.fakeHash[0] != &a2.fakeHash[0] {
		t.Fatal("the decoy hash was made again for the same cost")
	}
	if bcrypt.CompareHashAndPassword(a1.fakeHash, []byte("s")) == nil {
		t.Fatal("the decoy hash matches a secret")
	}
}

// TestUnknownClientIDs: control characters make an id unknown, and secrets
// past bcrypt's 72 bytes never match, even when their first 72 bytes do.
func TestUnknownClientIDs(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("s", 72)
	h, err := bcryptHash(long, 4)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newClientAuth([]config.Client{{ID: "a", SecretHash: config.Secret(h)}, {ID: "b\x00", SecretHash: config.Secret(h)}}, sourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if c, _ := a.authenticate(ctx, "a", long); c == nil {
		t.Fatal("the 72-byte secret was refused")
	}
	if c, _ := a.authenticate(ctx, "a", long+"x"); c != nil {
		t.Error("a 73-byte secret whose first 72 bytes match was accepted")
	}
	if c, _ := a.authenticate(ctx, "b\x00", long); c != nil {
		t.Error("a client id with a control character was accepted")
	}
}

// FuzzClientAssertion feeds arbitrary assertions to /token's assertion
// path: it must never panic, and only a correctly signed assertion of the
// configured client may pass.
func FuzzClientAssertion(f *testing.F) {
	key := newECKey(f)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	cfg := testConfig(f)
	cfg.Issuer.Clients = append(cfg.Issuer.Clients, config.Client{
		ID: "reporting", Scopes: []string{"orders:read"},
		JWKS: &config.JWKSet{Keys: []config.JWK{ecJWK(f, "r1", key)}},
	})
	iss := newTestIssuer(f, cfg, Options{Now: clk.now})
	h := iss.TokenHandler()
	valid := sign(f, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))
	for _, s := range []string{valid, "a.b.c", "", "..", strings.Repeat("A", 9000),
		"eyJhbGciOiJub25lIn0.eyJpc3MiOiJyZXBvcnRpbmciLCJzdWIiOiJyZXBvcnRpbmcifQ.",
		"eyJhbGciOiJFUzI1NiIsImtpZCI6InIxIn0.eyJpc3MiOiJyZXBvcnRpbmciLCJpc3MiOiJ4In0.AA"} {
		f.Add(s, "")
		f.Add(s, "reporting")
	}
	f.Fuzz(func(t *testing.T, assertion, clientID string) {
		form := assertionForm(assertion)
		form.Set("grant_type", "client_credentials")
		if clientID != "" {
			form.Set("client_id", clientID)
		}
		req := httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == 200 {
			if _, err := jwt.Parse(assertion, func(*jwt.Token) (any, error) { return &key.PublicKey, nil }, jwt.WithValidMethods([]string{"ES256"})); err != nil && !errors.Is(err, jwt.ErrTokenExpired) {
				t.Fatalf("accepted an assertion not signed by the client's key: %q", assertion)
			}
		}
	})
}

// TestMetadataListsPrivateKeyJWT: RFC 8414 metadata names private_key_jwt
// and its signing algorithms only when some client authenticates that way.
func TestMetadataListsPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	withKeys := testConfig(t)
	withKeys.Issuer.Clients = append(withKeys.Issuer.Clients, config.Client{ID: "r", JWKSURL: "https://r.test/jwks"})
	for _, c := range []struct {
		name string
		cfg  *config.Config
		want bool
	}{{"secret clients only", testConfig(t), false}, {"a jwks_url client", withKeys, true}} {
		rec := httptest.NewRecorder()
		newTestIssuer(t, c.cfg, Options{}).MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-authorization-server", nil))
		var md struct {
			Methods []string `json:"token_endpoint_auth_methods_supported"`
			Algs    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
			t.Fatal(err)
		}
		got := slices.Contains(md.Methods, "private_key_jwt")
		if got != c.want || (len(md.Algs) > 0) != c.want {
			t.Errorf("%s: methods %v, algorithms %v; want private_key_jwt listed: %v", c.name, md.Methods, md.Algs, c.want)
		}
		if c.want && (slices.Contains(md.Algs, "HS256") || !slices.Contains(md.Algs, "ES256")) {
			t.Errorf("%s: algorithms %v, want asymmetric ones only", c.name, md.Algs)
		}
	}
}

// TestAssertionAtIntrospect: /introspect and /revoke authenticate clients
// the same way /token does, assertions included.
func TestAssertionAtIntrospect(t *testing.T) {
	t.Parallel()
	key := newECKey(t)
	srv, clk := pkjwtIssuer(t, key)
	status, body := postToken(t, srv.URL, assertionForm(sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))))
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	form := assertionForm(sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now())))
	form.Set("token", body["access_token"].(string))
	resp, err := http.PostForm(srv.URL+"/introspect", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&got)
	if resp.StatusCode != 200 || got["active"] != true {
		t.Fatalf("introspect with an assertion: %d %v", resp.StatusCode, got)
	}
}

package issuer

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/claim"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/revocation"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// rawToken builds a JWS from literal header and payload JSON, so tests can
// express what a well-behaved library would refuse to produce.
func rawToken(t testing.TB, method jwt.SigningMethod, key any, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	if method == nil {
		return signing + "."
	}
	sig, err := method.Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func claimsJSON(over map[string]any) string {
	c := map[string]any{
		"iss": testIssuer, "sub": "billing", "aud": []string{"orders-api"}, "client_id": "billing",
		"exp": t0.Add(time.Hour).Unix(), "iat": t0.Unix(), "nbf": t0.Unix(), "jti": "id-1", "scope": "orders:read",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func TestVerifySecurityCases(t *testing.T) {
	t.Parallel()
	rsPath := writePEM(t, t.TempDir(), "rs.pem", rsa2048, "pkcs1")
	esPath := writePEM(t, t.TempDir(), "es.pem", ecP256, "pkcs8")
	clk := &clock{t: t0}
	iss := newTestIssuer(t, testConfig(t,
		config.Key{ID: "es", Algorithm: "ES256", PrivateKeyFile: esPath},
		config.Key{ID: "rs", Algorithm: "RS256", PrivateKeyFile: rsPath},
	), Options{Now: clk.now})
	rsPubPEM := pemPublic(t, &rsa2048.PublicKey)
	esPubPEM := pemPublic(t, &ecP256.PublicKey)
	es := jwt.SigningMethodES256
	hdr := func(kid string, extra string) string {
		return `{"alg":"ES256","typ":"at+jwt","kid":"` + kid + `"` + extra + `}`
	}
	valid := rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(nil))
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", rawToken(t, nil, nil, `{"alg":"none","typ":"at+jwt","kid":"es"}`, claimsJSON(nil)), ErrAlgorithm},
		{"alg None", rawToken(t, nil, nil, `{"alg":"None","typ":"at+jwt","kid":"es"}`, claimsJSON(nil)), ErrAlgorithm},
		{"HS256 with RS256 public key", rawToken(t, jwt.SigningMethodHS256, rsPubPEM, `{"alg":"HS256","typ":"at+jwt","kid":"rs"}`, claimsJSON(nil)), ErrAlgorithm},
		{"HS256 with ES256 public key", rawToken(t, jwt.SigningMethodHS256, esPubPEM, `{"alg":"HS256","typ":"at+jwt","kid":"es"}`, claimsJSON(nil)), ErrAlgorithm},
		{"RS256 token on the ES256 kid", rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"at+jwt","kid":"es"}`, claimsJSON(nil)), ErrAlgorithm},
		{"unknown kid", rawToken(t, es, ecP256, hdr("nope", ""), claimsJSON(nil)), ErrUnknownKey},
		{"jku header", rawToken(t, es, ecP256, hdr("es", `,"jku":"https://evil/jwks"`), claimsJSON(nil)), ErrForbiddenHeader},
		{"x5u header", rawToken(t, es, ecP256, hdr("es", `,"x5u":"https://evil/c"`), claimsJSON(nil)), ErrForbiddenHeader},
		{"jwk header", rawToken(t, es, ecP256, hdr("es", `,"jwk":{"kty":"EC"}`), claimsJSON(nil)), ErrForbiddenHeader},
		{"x5c header", rawToken(t, es, ecP256, hdr("es", `,"x5c":["AA"]`), claimsJSON(nil)), ErrForbiddenHeader},
		{"crit header", rawToken(t, es, ecP256, hdr("es", `,"crit":["exp"]`), claimsJSON(nil)), ErrForbiddenHeader},
		{"expired", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"exp": t0.Add(-time.Minute).Unix()})), ErrExpired},
		{"not yet valid", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"nbf": t0.Add(time.Minute).Unix()})), ErrNotYetValid},
		{"issued in the future", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"iat": t0.Add(time.Minute).Unix()})), ErrNotYetValid},
		{"no exp", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"exp": nil})), ErrMissingClaim},
		{"wrong issuer", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"iss": "https://evil"})), ErrIssuer},
		{"wrong audience", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"aud": "payments"})), ErrAudience},
		{"no typ", rawToken(t, es, ecP256, `{"alg":"ES256","kid":"es"}`, claimsJSON(nil)), ErrType},
		{"typ JWT", rawToken(t, es, ecP256, `{"alg":"ES256","typ":"JWT","kid":"es"}`, claimsJSON(nil)), ErrType},
		{"tampered payload", tamper(valid), ErrSignature},
		{"duplicate claim", rawToken(t, es, ecP256, hdr("es", ""), strings.Replace(claimsJSON(nil), `"sub":"billing"`, `"sub":"billing","sub":"admin"`, 1)), ErrMalformed},
		{"duplicate header key", rawToken(t, es, ecP256, `{"alg":"ES256","alg":"HS256","typ":"at+jwt","kid":"es"}`, claimsJSON(nil)), ErrMalformed},
		{"control character in claim", rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"sub": "bob\r\nX-Auth-Subject: admin"})), ErrMalformed},
		{"too large", valid + strings.Repeat("A", MaxTokenBytes), ErrTooLarge},
		{"two segments", "abc.def", ErrMalformed},
		{"four segments", valid + ".x", ErrMalformed},
		{"garbage", "a.b.c", ErrMalformed},
		{"expired but also tampered is still refused", tamper(rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"exp": t0.Add(-time.Minute).Unix()}))), ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := iss.Verify(tc.token)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify error %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		p, err := iss.Verify(valid)
		if err != nil {
			t.Fatal(err)
		}
		if p.Subject != "billing" || p.ClientID != "billing" || !p.HasScope("orders:read") || p.TokenID != "id-1" {
			t.Errorf("principal %+v", p)
		}
	})
	t.Run("within clock skew", func(t *testing.T) {
		tok := rawToken(t, es, ecP256, hdr("es", ""), claimsJSON(map[string]any{"exp": t0.Add(-10 * time.Second).Unix(), "jti": "skew"}))
		if _, err := iss.Verify(tok); err != nil {
			t.Errorf("token 10s past exp with 30s skew: %v", err)
		}
	})
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"orders:read"`, `"orders:write"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func pemPublic(t testing.TB, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestVerifyCacheHonoursExpiryAndRevocation(t *testing.T) {
	t.Parallel()
	clk := &clock{t: t0}
	rev := revocation.New(clk.now)
	iss := newTestIssuer(t, testConfig(t), Options{Now: clk.now, Revocations: rev})
	tok, err := iss.Sign(Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: testIssuer, Subject: "billing", Audience: jwt.ClaimStrings{"orders-api"}, ID: "jti-cache",
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(t0),
	}})
	if err != nil {
		t.Fatal(err)
	}
	// A token enters the cache on its second verification.
	if _, err := iss.Verify(tok); err != nil {
		t.Fatal(err)
	}
	p2, err := iss.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p3, _ := iss.Verify(tok); p3 != p2 {
		t.Error("third Verify did not come from the cache")
	}
	if err := rev.RevokeToken(context.Background(), "jti-cache", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Verify(tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("cached token after revocation: %v, want ErrRevoked", err)
	}
	tok2, _ := iss.Sign(Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: testIssuer, Subject: "billing", Audience: jwt.ClaimStrings{"orders-api"}, ID: "jti-exp",
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(t0),
	}})
	for range 2 {
		if _, err := iss.Verify(tok2); err != nil {
			t.Fatal(err)
		}
	}
	clk.t = t0.Add(2 * time.Minute)
	if _, err := iss.Verify(tok2); !errors.Is(err, ErrExpired) {
		t.Errorf("cached token after expiry: %v, want ErrExpired", err)
	}
}

func TestTokenCacheStaysBounded(t *testing.T) {
	t.Parallel()
	c := newTokenCache()
	p := &Principal{cacheUntil: t0.Add(time.Hour), ScopeString: strings.Repeat("s", 7<<10)}
	for i := 0; i < 3*CacheMaxBytes/principalSize(p); i++ {
		c.put(cacheKey(fmt.Sprint(i)), p, t0)
		c.put(cacheKey(fmt.Sprint(i)), p, t0) // admitted on the second
	}
	if _, bytes := c.size(); bytes > CacheMaxBytes {
		t.Errorf("cache accounts %d bytes, bound is %d", bytes, CacheMaxBytes)
	}
}

// TestTokenCacheBoundedInBytes: principals holding large claims fill the
// cache's byte budget, not its entry count; one larger than a shard's share
// is not cached at all.
func TestTokenCacheBoundedInBytes(t *testing.T) {
	t.Parallel()
	c := newTokenCache()
	big := &Principal{cacheUntil: t0.Add(time.Hour), size: 100 << 10}
	for i := 0; i < 16384; i++ {
		c.put(cacheKey(fmt.Sprint(i)), big, t0)
		c.put(cacheKey(fmt.Sprint(i)), big, t0)
	}
	total, n := 0, 0
	for i := range c.shards {
		total += c.shards[i].bytes
		n += len(c.shards[i].entries)
		sum := 0
		for _, e := range c.shards[i].entries {
			sum += e.size
		}
		if sum != c.shards[i].bytes {
			t.Fatalf("shard %d counts %d bytes, entries hold %d", i, c.shards[i].bytes, sum)
		}
	}
	if total > CacheMaxBytes {
		t.Errorf("cache holds %d bytes in %d entries, bound is %d", total, n, CacheMaxBytes)
	}
	huge := &Principal{cacheUntil: t0.Add(time.Hour), size: shardBudget + 1}
	c.put(cacheKey("huge"), huge, t0)
	c.put(cacheKey("huge"), huge, t0)
	if c.get(cacheKey("huge"), t0) != nil {
		t.Error("a principal larger than a shard's share was cached")
	}
	// The footprint counts kept claims.
	small := (&Principal{}).footprint()
	withClaims := (&Principal{claims: []namedClaim{{name: "groups", claim: claim.Claim{Values: make([]claim.Value, 1000)}}}}).footprint()
	if withClaims < small+1000*valueOverhead {
		t.Errorf("footprint with 1000 claim values %d, without %d", withClaims, small)
	}
}

// TestTokenCacheAdmitsOnSecondUse: a token verified once is not cached,
// so tokens used once (a flood of fresh ones) leave the cache as it was;
// its second verification caches it.
func TestTokenCacheAdmitsOnSecondUse(t *testing.T) {
	t.Parallel()
	c := newTokenCache()
	p := &Principal{cacheUntil: t0.Add(time.Hour)}
	hot := cacheKey("hot")
	c.put(hot, p, t0)
	c.put(hot, p, t0)
	for i := 0; i < 100_000; i++ {
		c.put(cacheKey(fmt.Sprint("once-", i)), p, t0)
	}
	if entries, _ := c.size(); entries != 1 {
		t.Errorf("%d entries after 100,000 tokens used once and one used twice, want 1", entries)
	}
	if c.get(hot, t0) != p {
		t.Error("the token used twice is not cached")
	}
}

// TestTrustedIssuerRotation serves a JWKS that rotates: a token signed by a
// new key is accepted after one refetch; an outage keeps the last good keys.
func TestTrustedIssuerRotation(t *testing.T) {
	t.Parallel()
	var current atomic.Pointer[[]byte]
	var fetches atomic.Int32
	var down atomic.Bool
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = w.Write(*current.Load())
	}))
	defer jwks.Close()
	set := func(keys ...*Key) {
		var s jwkSet
		for _, k := range keys {
			j, _ := publicJWK(k)
			s.Keys = append(s.Keys, j)
		}
		b, _ := json.Marshal(s)
		current.Store(&b)
	}
	k1 := &Key{ID: "idp-1", Alg: "RS256", public: &rsa2048.PublicKey}
	k2 := &Key{ID: "idp-2", Alg: "ES256", public: &ecP256.PublicKey}
	set(k1)

	clk := &clock{t: t0}
	cfg := testConfig(t)
	cfg.TrustedIssuers = []config.TrustedIssuer{{Issuer: "https://idp.test", JWKSURL: jwks.URL, Algorithms: []string{"RS256", "ES256"}, Audience: []string{"orders-api"}}}
	iss := newTestIssuer(t, cfg, Options{Now: clk.now, HTTPClient: jwks.Client()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := iss.remotes["https://idp.test"].fetch(ctx); err != nil {
		t.Fatal(err)
	}
	idpClaims := claimsJSON(map[string]any{"iss": "https://idp.test"})
	tok1 := rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"JWT","kid":"idp-1"}`, idpClaims)
	if _, err := iss.Verify(tok1); err != nil {
		t.Fatalf("IdP token: %v", err)
	}
	// Rotation: a new kid triggers one refetch.
	set(k1, k2)
	clk.t = t0.Add(2 * time.Minute)
	tok2 := rawToken(t, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"JWT","kid":"idp-2"}`, claimsJSON(map[string]any{"iss": "https://idp.test", "exp": t0.Add(time.Hour).Unix()}))
	if _, err := iss.Verify(tok2); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	// Unknown kids refetch at most once a minute.
	before := fetches.Load()
	for i := 0; i < 5; i++ {
		_, _ = iss.Verify(rawToken(t, jwt.SigningMethodES256, ecP256, fmt.Sprintf(`{"alg":"ES256","kid":"rand-%d"}`, i), claimsJSON(map[string]any{"iss": "https://idp.test"})))
	}
	if got := fetches.Load() - before; got > 1 {
		t.Errorf("%d refetches for unknown kids within a minute, want at most 1", got)
	}
	// Outage: the last good keys stay.
	down.Store(true)
	if _, err := iss.remotes["https://idp.test"].fetch(ctx); err == nil {
		t.Fatal("fetch from a failing JWKS succeeded")
	}
	if _, err := iss.Verify(tok1); err != nil {
		t.Errorf("after JWKS outage: %v, want last good keys kept", err)
	}
	// The IdP's key cannot sign tokens in our own name.
	own := rawToken(t, jwt.SigningMethodRS256, rsa2048, `{"alg":"RS256","typ":"at+jwt","kid":"idp-1"}`, claimsJSON(nil))
	if _, err := iss.Verify(own); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("own-issuer token with an IdP kid: %v, want ErrUnknownKey", err)
	}
}

func TestRefreshInterval(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"": jwksDefaultRefresh, "max-age=0": jwksMinRefresh, "public, max-age=600": 10 * time.Minute, "max-age=999999": jwksMaxRefresh,
	} {
		if got := refreshInterval(in); got != want {
			t.Errorf("refreshInterval(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzVerify: no input panics, and nothing but a correctly signed token
// verifies.
func FuzzVerify(f *testing.F) {
	path := writePEM(f, f.TempDir(), "es.pem", ecP256, "pkcs8")
	iss := newTestIssuer(f, testConfig(f, config.Key{ID: "es", Algorithm: "ES256", PrivateKeyFile: path}), Options{Now: func() time.Time { return t0 }})
	valid := rawToken(f, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt","kid":"es"}`, claimsJSON(nil))
	f.Add(valid)
	f.Add(tamper(valid))
	f.Add(rawToken(f, nil, nil, `{"alg":"none","kid":"es"}`, claimsJSON(nil)))
	f.Add("a.b.c")
	f.Add("")
	// Signed tokens breaking one claim or header rule each, so mutations
	// explore around every check.
	es := func(header, payload string) string {
		return rawToken(f, jwt.SigningMethodES256, ecP256, header, payload)
	}
	hdr := `{"alg":"ES256","typ":"at+jwt","kid":"es"}`
	f.Add(es(hdr, payloadWith("sub", `"bob\u0085admin"`)))
	f.Add(es(hdr, payloadWith("sub", "\"bob\u0085admin\"")))
	f.Add(es(hdr, payloadWith("scope", `"orders:read\u00a0portcullis:admin"`)))
	f.Add(es(hdr, payloadWith("exp", `"4102444800"`)))
	f.Add(es(hdr, payloadWith("nbf", `null`)))
	f.Add(es(hdr, payloadWith("sub", `"\ud800"`)))
	f.Add(es(hdr, payloadWith("sub", "\"\xc0\xaf\"")))
	f.Add(es(`{"alg":"ES256","typ":"at+jwt","kid":1}`, claimsJSON(nil)))
	f.Add(es(`{"alg":"ES256","typ":"at+jwt","kid":null}`, claimsJSON(nil)))
	f.Add(es(`{"alg":"ES256","typ":"at+jwt"}`, claimsJSON(nil)))
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := iss.Verify(tok)
		if err == nil {
			for _, s := range append([]string{p.Subject, p.ClientID, p.Issuer, p.TokenID, p.ScopeString}, p.Scopes...) {
				if claim.HasControl(s) {
					t.Fatalf("verified principal carries a control character: %+v", p)
				}
			}
			for _, sc := range p.Scopes {
				if !claim.ValidScope(sc) {
					t.Fatalf("verified principal has scope %q", sc)
				}
			}
		}
		if err == nil && tok != valid {
			// Only re-encodings of the valid token's signature could pass;
			// they must still carry its claims.
			if p.Subject != "billing" || p.TokenID != "id-1" {
				t.Fatalf("forged token verified: %q -> %+v", tok, p)
			}
		}
	})
}

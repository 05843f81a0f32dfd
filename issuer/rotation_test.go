package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
)

func rotationClaims(now time.Time) Claims {
	return Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: testIssuer, Subject: "billing", Audience: jwt.ClaimStrings{"orders-api"}, ID: "jti-rot",
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now),
	}}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p, _, err := jwt.NewParser().ParseUnverified(tok, &Claims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := p.Header["kid"].(string)
	return kid
}

// TestPublishOnlyKeys: a publish_only key is in the JWKS and verifies, but
// the first key without publish_only signs, whatever the order.
func TestPublishOnlyKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	next, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cur := writePEM(t, dir, "cur.pem", ecP256, "pkcs8")
	nxt := writePEM(t, dir, "next.pem", next, "pkcs8")
	announced := newTestIssuer(t, testConfig(t,
		config.Key{ID: "next", Algorithm: "ES256", PrivateKeyFile: nxt, PublishOnly: true},
		config.Key{ID: "cur", Algorithm: "ES256", PrivateKeyFile: cur},
	), Options{})
	promoted := newTestIssuer(t, testConfig(t,
		config.Key{ID: "next", Algorithm: "ES256", PrivateKeyFile: nxt},
		config.Key{ID: "cur", Algorithm: "ES256", PrivateKeyFile: cur},
	), Options{})
	now := time.Now()
	oldTok, err := announced.Sign(rotationClaims(now))
	if err != nil {
		t.Fatal(err)
	}
	if kid := kidOf(t, oldTok); kid != "cur" {
		t.Errorf("with next publish_only, tokens are signed by %q, want cur", kid)
	}
	newTok, err := promoted.Sign(rotationClaims(now))
	if err != nil {
		t.Fatal(err)
	}
	if kid := kidOf(t, newTok); kid != "next" {
		t.Errorf("after promotion, tokens are signed by %q, want next", kid)
	}
	for name, c := range map[string]struct {
		iss *Issuer
		tok string
	}{
		"announced key verifies the promoted key's tokens": {announced, newTok},
		"promoted config verifies the old key's tokens":    {promoted, oldTok},
	} {
		if _, err := c.iss.Verify(c.tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	resp, err := http.Get(serveIssuer(t, announced).URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var set jwkSet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	if !slices.Equal(kids, []string{"cur", "next"}) {
		t.Errorf("JWKS kids = %v, want the publish_only key published too", kids)
	}
}

func TestEphemeralKeyReused(t *testing.T) {
	t.Parallel()
	first := newTestIssuer(t, testConfig(t), Options{})
	k := first.Ephemeral()
	if k == nil {
		t.Fatal("no ephemeral key without configured keys")
	}
	second := newTestIssuer(t, testConfig(t), Options{Ephemeral: k})
	tok, err := first.Sign(rotationClaims(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Verify(tok); err != nil {
		t.Errorf("a token of the first issuer does not verify with the reused ephemeral key: %v", err)
	}
	withKey := newTestIssuer(t, testConfig(t, config.Key{ID: "h", Algorithm: "HS256", Secret: "0123456789abcdef0123456789abcdef"}), Options{Ephemeral: k})
	if withKey.Ephemeral() != nil {
		t.Error("an issuer with configured keys reports an ephemeral key")
	}
}

func TestRotationWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a := writePEM(t, dir, "a.pem", ecP256, "pkcs8")
	aSEC1 := writePEM(t, dir, "a-sec1.pem", ecP256, "sec1")
	b := writePEM(t, dir, "b.pem", other, "pkcs8")
	key := func(id, file string, publishOnly bool) config.Key {
		return config.Key{ID: id, Algorithm: "ES256", PrivateKeyFile: file, PublishOnly: publishOnly}
	}
	hs := func(id, secret string) config.Key {
		return config.Key{ID: id, Algorithm: "HS256", Secret: config.Secret(secret)}
	}
	for _, tc := range []struct {
		name       string
		prev, next []config.Key
		want       []string
	}{
		{"same", []config.Key{key("a", a, false)}, []config.Key{key("a", a, false)}, nil},
		{"same key, other PEM form", []config.Key{key("a", a, false)}, []config.Key{key("a", aSEC1, false)}, nil},
		{"announce", []config.Key{key("a", a, false)}, []config.Key{key("a", a, false), key("b", b, true)}, nil},
		{"promote", []config.Key{key("a", a, false), key("b", b, true)}, []config.Key{key("b", b, false), key("a", a, false)}, nil},
		{"unannounced", []config.Key{key("a", a, false)}, []config.Key{key("b", b, false), key("a", a, false)}, []string{`signing key "b"`}},
		{"removed", []config.Key{key("b", b, false), key("a", a, false)}, []config.Key{key("b", b, false)}, []string{`key "a" of the previous`}},
		{"new material", []config.Key{key("a", a, false)}, []config.Key{key("a", b, false)}, []string{`key "a" has different key material`}},
		{"hs256 secret changed", []config.Key{hs("h", "one")}, []config.Key{hs("h", "two")}, []string{`key "h" has different key material`}},
		{"unreadable files compare by id", []config.Key{key("a", dir+"/gone.pem", false)}, []config.Key{key("a", a, false)}, nil},
		{"no keys now", []config.Key{key("a", a, false)}, nil, []string{`key "a" of the previous`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := RotationWarnings(tc.prev, tc.next)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

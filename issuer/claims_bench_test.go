package issuer

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/claim"
	"github.com/portcullis/portcullis/config"
)

// BenchmarkVerifyCachedWithClaims is a reused token whose route requires a
// claim and whose identity headers carry two: the lookup and match must
// stay allocation-free like cached verification itself.
func BenchmarkVerifyCachedWithClaims(b *testing.B) {
	path := writePEM(b, b.TempDir(), "es.pem", ecP256, "pkcs8")
	cfg := testConfig(b, config.Key{ID: "es", Algorithm: "ES256", PrivateKeyFile: path})
	cfg.Routes = []config.Route{{Path: "/", Claims: map[string]config.ClaimValues{"realm_access.roles": {claim.StringValue("admin")}}}}
	cfg.IdentityHeaders.Claims = map[string]string{"X-Auth-Email": "email", "X-Auth-Roles": "realm_access.roles"}
	iss := newTestIssuer(b, cfg, Options{})
	tok := rawToken(b, jwt.SigningMethodES256, ecP256, `{"alg":"ES256","typ":"at+jwt","kid":"es"}`,
		claimsBench())
	want := []claim.Value{claim.StringValue("admin")}
	b.ReportAllocs()
	for b.Loop() {
		p, err := iss.Verify(tok)
		if err != nil {
			b.Fatal(err)
		}
		if c, ok := p.Claim("realm_access.roles"); !ok || !c.Matches(want) || len(p.ClaimHeaderValues()) != 2 {
			b.Fatal("claim lost")
		}
	}
}

func claimsBench() string {
	c := claimsJSON(map[string]any{"exp": 4102444800, "iat": 1700000000, "nbf": 1700000000})
	return c[:len(c)-1] + `,"email":"a@b.example","realm_access":{"roles":["user","admin"]}}`
}

package issuer

import (
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
)

func benchIssuer(b *testing.B) *Issuer {
	path := writePEM(b, b.TempDir(), "es.pem", ecP256, "pkcs8")
	return newTestIssuer(b, testConfig(b, config.Key{ID: "es", Algorithm: "ES256", PrivateKeyFile: path}), Options{})
}

func benchToken(b *testing.B, iss *Issuer, i int) string {
	now := time.Now()
	tok, err := iss.Sign(Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: testIssuer, Subject: "billing", Audience: jwt.ClaimStrings{"orders-api"}, ID: fmt.Sprint(i),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}, ClientID: "billing", Scope: "orders:read"})
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// BenchmarkVerifyCached is a reused token: a SHA-256 and a map lookup.
func BenchmarkVerifyCached(b *testing.B) {
	iss := benchIssuer(b)
	tok := benchToken(b, iss, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncached is a new token every time: the full ES256 path.
func BenchmarkVerifyUncached(b *testing.B) {
	iss := benchIssuer(b)
	toks := make([]string, 2048)
	for i := range toks {
		toks[i] = benchToken(b, iss, i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := iss.verifyUncached(toks[i%len(toks)], time.Now()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/revocation"
)

const (
	testIssuer = "https://auth.test"
	testSecret = "correct-horse-battery-staple-0123456789"
)

// testHash is computed once at the minimum cost to keep tests fast.
var testHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testSecret), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// writePEM stores a private key in the named PEM form and returns its path.
func writePEM(t testing.TB, dir, name string, key crypto.Signer, form string) string {
	t.Helper()
	var block *pem.Block
	switch form {
	case "pkcs8":
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case "sec1":
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	case "pkcs1":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type keyFixture struct {
	alg, form string
	key       crypto.Signer
}

var (
	ecP256, _   = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecP384, _   = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, _  = rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _    = ed25519.GenerateKey(rand.Reader)
	keyFixtures = []keyFixture{
		{"ES256", "pkcs8", ecP256}, {"ES256", "sec1", ecP256}, {"ES384", "sec1", ecP384},
		{"RS256", "pkcs1", rsa2048}, {"PS256", "pkcs8", rsa2048}, {"EdDSA", "pkcs8", ed},
	}
)

// testConfig returns a development config with one client and the given keys.
func testConfig(t testing.TB, keys ...config.Key) *config.Config {
	t.Helper()
	return &config.Config{
		Environment: config.Development,
		Issuer: config.Issuer{
			URL: testIssuer, TokenTTL: config.Duration(time.Hour), Keys: keys,
			Clients: []config.Client{
				{ID: "billing", SecretHash: config.Secret(testHash), Scopes: []string{"orders:read", "orders:write"}, Audience: []string{"orders-api", "audit-api"}},
				{ID: "other", SecretHash: config.Secret(testHash), Scopes: []string{"x"}},
			},
		},
		Audience:  []string{"orders-api"},
		ClockSkew: config.Duration(30 * time.Second),
		Admin:     config.Admin{Scope: "portcullis:admin"},
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestIssuer(t testing.TB, cfg *config.Config, o Options) *Issuer {
	t.Helper()
	o.Config = cfg
	if o.Revocations == nil {
		o.Revocations = revocation.New(o.Now)
	}
	iss, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// serveIssuer exposes the issuer's endpoints like the server does.
func serveIssuer(t testing.TB, iss *Issuer) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/token", iss.TokenHandler())
	mux.Handle("/revoke", iss.RevokeHandler())
	mux.Handle("/introspect", iss.IntrospectHandler())
	mux.Handle("/.well-known/jwks.json", iss.JWKSHandler())
	mux.Handle("/.well-known/oauth-authorization-server", iss.MetadataHandler())
	mux.Handle("/admin/revoke-tokens", iss.AdminRevokeHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func bcryptHash(secret string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
	return string(h), err
}

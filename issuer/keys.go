// Package issuer is the only package that knows the JWT format: it loads
// signing keys, mints RFC 9068 access tokens on POST /token, publishes JWKS and
// RFC 8414 metadata, verifies tokens (own and trusted issuers'), and serves
// revocation and introspection.
package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
)

// minRSABits follows NIST SP 800-131A: RSA keys under 2048 bits are refused.
const minRSABits = 2048

// Key is one key with its algorithm pinned: a token naming this key's kid is
// verified with this algorithm only, whatever its alg header says.
// A Key is immutable and safe for concurrent use.
type Key struct {
	ID     string
	Alg    string
	method jwt.SigningMethod
	signer any // crypto.Signer or []byte; nil for verify-only keys
	public any // crypto.PublicKey or []byte
}

func methodFor(alg string) (jwt.SigningMethod, error) {
	m := jwt.GetSigningMethod(alg)
	if m == nil || alg == "none" {
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	return m, nil
}

// loadKeys turns the configured keys into Keys; errors carry the key path.
func loadKeys(keys []config.Key) ([]*Key, error) {
	var errs []error
	out := make([]*Key, 0, len(keys))
	for i, k := range keys {
		key, err := loadKey(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("issuer.keys[%d] (%s): %w", i, k.ID, err))
			continue
		}
		out = append(out, key)
	}
	return out, errors.Join(errs...)
}

func loadKey(k config.Key) (*Key, error) {
	m, err := methodFor(k.Algorithm)
	if err != nil {
		return nil, err
	}
	if k.Algorithm == "HS256" {
		s := []byte(k.Secret.Reveal())
		return &Key{ID: k.ID, Alg: k.Algorithm, method: m, signer: s, public: s}, nil
	}
	data, err := os.ReadFile(k.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading private_key_file: %w", err)
	}
	priv, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("private_key_file %s: %w", k.PrivateKeyFile, err)
	}
	pub, err := checkKeyType(k.Algorithm, priv)
	if err != nil {
		return nil, fmt.Errorf("private_key_file %s: %w", k.PrivateKeyFile, err)
	}
	return &Key{ID: k.ID, Alg: k.Algorithm, method: m, signer: priv, public: pub}, nil
}

// parsePrivateKey accepts PKCS#8, SEC1 (EC) and PKCS#1 (RSA) PEM.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("encrypted keys are not supported; decrypt it with openssl pkey")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return s, nil
}

// checkKeyType makes sure the key fits its pinned algorithm and returns the
// public half.
func checkKeyType(alg string, priv crypto.Signer) (crypto.PublicKey, error) {
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384()}[alg]
		if want == nil || k.Curve != want {
			return nil, fmt.Errorf("an EC key on %s does not fit algorithm %s", k.Curve.Params().Name, alg)
		}
		return &k.PublicKey, nil
	case *rsa.PrivateKey:
		if alg != "RS256" && alg != "PS256" {
			return nil, fmt.Errorf("an RSA key does not fit algorithm %s", alg)
		}
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
		return &k.PublicKey, nil
	case ed25519.PrivateKey:
		if alg != "EdDSA" {
			return nil, fmt.Errorf("an Ed25519 key does not fit algorithm %s", alg)
		}
		return k.Public(), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", priv)
}

// ephemeralKey makes the development key used when none is configured.
func ephemeralKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ephemeral key: %w", err)
	}
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	return &Key{ID: "dev-" + hex.EncodeToString(id), Alg: "ES256", method: jwt.SigningMethodES256, signer: priv, public: &priv.PublicKey}, nil
}

// verifying is the key a jwt.Keyfunc hands back for t, k being the key its
// kid chose (nil: none). The key's pinned algorithm decides, never the
// token's alg alone: this is what stops HS256-signed-with-the-public-key
// confusion, for access tokens and client assertions alike.
func (k *Key) verifying(t *jwt.Token) (any, error) {
	if k == nil {
		return nil, ErrUnknownKey
	}
	if t.Method.Alg() != k.Alg {
		return nil, ErrAlgorithm
	}
	return k.public, nil
}

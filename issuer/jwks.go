package issuer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// jwk is one RFC 7517 JSON Web Key (public parts only).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

var b64 = base64.RawURLEncoding

// Bounds on remote key sets. Real sets hold a handful of keys; a set of
// thousands only makes every unknown-kid lookup and refresh cost more.
// RSA moduli past maxRSABits would make each signature check slow (a
// verification-cost attack), and exponents are small odd numbers in
// practice.
const (
	maxJWKSKeys = 100
	maxRSABits  = 8192
)

// publicJWK renders an asymmetric key; HS keys have no public form and are
// never published.
func publicJWK(k *Key) (jwk, bool) {
	j := jwk{Kid: k.ID, Alg: k.Alg, Use: "sig"}
	switch p := k.public.(type) {
	case *ecdsa.PublicKey:
		raw, err := p.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return jwk{}, false
		}
		size := (len(raw) - 1) / 2
		j.Kty, j.Crv = "EC", p.Curve.Params().Name
		j.X, j.Y = b64.EncodeToString(raw[1:1+size]), b64.EncodeToString(raw[1+size:])
	case *rsa.PublicKey:
		j.Kty = "RSA"
		j.N, j.E = b64.EncodeToString(p.N.Bytes()), b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64.EncodeToString(p)
	default:
		return jwk{}, false
	}
	return j, true
}

// parseJWKS reads a trusted issuer's key set. Each key's algorithm is pinned:
// its own alg if it has one (and it is allowed), else the one allowed
// algorithm its type fits. Keys that fit none are skipped, not fatal, so one
// odd key (an encryption key, say) does not lose the whole set.
func parseJWKS(data []byte, allowed []string) (map[string]*Key, error) {
	set, err := decodeJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("decoding JWKS: %w", err)
	}
	keys := make(map[string]*Key, len(set))
	for _, j := range set {
		if j.Kid == "" || (j.Use != "" && j.Use != "sig") {
			continue
		}
		k, err := keyFromJWK(j, allowed)
		if err != nil {
			continue
		}
		keys[j.Kid] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable signing key with a kid")
	}
	return keys, nil
}

// decodeJWKS reads the "keys" array one key at a time and stops past
// maxJWKSKeys: decoding a 1 MiB document of empty objects in one go would
// allocate tens of MiB before its length could be checked.
func decodeJWKS(data []byte) ([]jwk, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var keys []jwk
	seen := false
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if name != "keys" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, err
			}
			continue
		}
		if seen {
			return nil, errors.New(`"keys" appears twice`)
		}
		seen = true
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return nil, errors.New(`"keys" is not an array`)
		}
		for dec.More() {
			if len(keys) == maxJWKSKeys {
				return nil, fmt.Errorf("more than %d keys", maxJWKSKeys)
			}
			var j jwk
			if err := dec.Decode(&j); err != nil {
				return nil, err
			}
			keys = append(keys, j)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if !seen {
		return nil, errors.New(`no "keys" array`)
	}
	return keys, nil
}

func keyFromJWK(j jwk, allowed []string) (*Key, error) {
	pick := func(candidates ...string) (string, error) {
		for _, c := range candidates {
			if (j.Alg == "" || j.Alg == c) && slices.Contains(allowed, c) {
				return c, nil
			}
		}
		return "", fmt.Errorf("key %q: algorithm %q not allowed", j.Kid, j.Alg)
	}
	var alg string
	var pub any
	var err error
	switch j.Kty {
	case "RSA":
		if alg, err = pick("RS256", "PS256"); err != nil {
			return nil, err
		}
		n, e := decodeBig(j.N), decodeBig(j.E)
		if n == nil || e == nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 ||
			n.BitLen() < minRSABits || n.BitLen() > maxRSABits {
			return nil, fmt.Errorf("key %q: bad RSA parameters", j.Kid)
		}
		pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[j.Crv]
		if curve == nil {
			return nil, fmt.Errorf("key %q: unsupported curve %q", j.Kid, j.Crv)
		}
		if alg, err = pick(map[string]string{"P-256": "ES256", "P-384": "ES384"}[j.Crv]); err != nil {
			return nil, err
		}
		x, errX := b64.DecodeString(j.X)
		y, errY := b64.DecodeString(j.Y)
		size := (curve.Params().BitSize + 7) / 8
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("key %q: bad EC point", j.Kid)
		}
		point := append(append([]byte{4}, x...), y...)
		ek, perr := ecdsa.ParseUncompressedPublicKey(curve, point)
		if perr != nil {
			return nil, fmt.Errorf("key %q: %w", j.Kid, perr)
		}
		pub = ek
	case "OKP":
		if alg, err = pick("EdDSA"); err != nil {
			return nil, err
		}
		x, derr := b64.DecodeString(j.X)
		if j.Crv != "Ed25519" || derr != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q: bad Ed25519 key", j.Kid)
		}
		pub = ed25519.PublicKey(x)
	default:
		return nil, fmt.Errorf("key %q: unsupported kty %q", j.Kid, j.Kty)
	}
	return &Key{ID: j.Kid, Alg: alg, method: jwt.GetSigningMethod(alg), public: pub}, nil
}

func decodeBig(s string) *big.Int {
	b, err := b64.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil
	}
	return new(big.Int).SetBytes(b)
}

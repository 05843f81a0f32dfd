package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// AssertionAlgorithms are the algorithms a client assertion may be signed
// with: asymmetric only, so that the key in the config can never sign.
var AssertionAlgorithms = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// checkClientAuth checks that client i has exactly one way to authenticate
// and that it is well formed.
func checkClientAuth(c *checker, cfg *Config, i int, cl Client, prod bool) {
	p := fmt.Sprintf("issuer.clients[%d]", i)
	if hasControl(cl.ID) {
		c.fail(p+".id", "%q contains a control character", cl.ID)
	}
	var methods []string
	if cl.SecretHash != "" {
		methods = append(methods, "secret_hash")
	}
	if cl.JWKS != nil {
		methods = append(methods, "jwks")
	}
	if cl.JWKSURL != "" {
		methods = append(methods, "jwks_url")
	}
	if cl.Federated != nil {
		methods = append(methods, "federated")
	}
	switch len(methods) {
	case 0:
		c.fail(p, "no credential: set one of secret_hash (from `portcullis -hash-secret`), jwks, jwks_url or federated")
	case 1:
	default:
		c.fail(p, "set exactly one of secret_hash, jwks, jwks_url, federated; got %s", strings.Join(methods, " and "))
	}
	if cl.SecretHash != "" {
		if _, err := bcrypt.Cost([]byte(cl.SecretHash)); err != nil {
			c.fail(p+".secret_hash", "not a bcrypt hash; create one with `portcullis -hash-secret`")
		} else if prod && slices.Contains(ExampleSecretHashes, cl.SecretHash.Reveal()) {
			c.fail(p+".secret_hash", "this is the example client's published secret; hash your own with `portcullis -hash-secret`")
		}
	}
	if cl.JWKS != nil {
		checkInlineJWKS(c, p+".jwks", cl.JWKS)
	}
	if cl.JWKSURL != "" {
		checkURL(c, p+".jwks_url", cl.JWKSURL, true)
	}
	if f := cl.Federated; f != nil {
		checkFederated(c, cfg, i, p+".federated", f)
	}
}

func checkFederated(c *checker, cfg *Config, i int, p string, f *Federated) {
	switch {
	case f.Issuer == "":
		c.fail(p+".issuer", "required: the issuer of a trusted_issuers entry")
	case !slices.ContainsFunc(cfg.TrustedIssuers, func(t TrustedIssuer) bool { return t.Issuer == f.Issuer }):
		c.fail(p+".issuer", "%q is not a trusted_issuers entry; add it there (with its jwks_url and audience)", f.Issuer)
	}
	switch {
	case f.Subject == "":
		c.fail(p+".subject", "required: the sub claim of the tokens that authenticate this client")
	case hasControl(f.Subject):
		c.fail(p+".subject", "%q contains a control character", f.Subject)
	}
	for j, other := range cfg.Issuer.Clients[:i] {
		if o := other.Federated; o != nil && o.Issuer == f.Issuer && o.Subject == f.Subject {
			c.fail(p, "issuer %q and subject %q already authenticate issuer.clients[%d] (%s); a token must name one client", f.Issuer, f.Subject, j, other.ID)
		}
	}
}

// checkInlineJWKS checks the shape of each key; the issuer decodes the key
// material when it loads and reports bad values with the same paths.
func checkInlineJWKS(c *checker, p string, set *JWKSet) {
	if len(set.Keys) == 0 {
		c.fail(p+".keys", "required: at least one public key")
	}
	kids := map[string]bool{}
	for j, k := range set.Keys {
		kp := fmt.Sprintf("%s.keys[%d]", p, j)
		if k.D != "" {
			c.fail(kp+".d", "this is a private key; list only the public key (drop d and the other private members)")
		}
		switch {
		case k.Kid == "":
			c.fail(kp+".kid", "required: assertions name their key by kid")
		case kids[k.Kid]:
			c.fail(kp+".kid", "duplicate kid %q", k.Kid)
		}
		kids[k.Kid] = true
		if k.Use != "" && k.Use != "sig" {
			c.fail(kp+".use", "%q: only signing keys (sig) verify assertions", k.Use)
		}
		if k.Alg != "" && !slices.Contains(AssertionAlgorithms, k.Alg) {
			c.fail(kp+".alg", "%q is not one of %s (assertions are signed with asymmetric keys only)", k.Alg, strings.Join(AssertionAlgorithms, ", "))
		}
		switch k.Kty {
		case "EC":
			if k.Crv != "P-256" && k.Crv != "P-384" {
				c.fail(kp+".crv", "%q is not one of P-256, P-384", k.Crv)
			}
			if k.X == "" || k.Y == "" {
				c.fail(kp, "an EC key needs x and y")
			}
		case "RSA":
			if k.N == "" || k.E == "" {
				c.fail(kp, "an RSA key needs n and e")
			}
		case "OKP":
			if k.Crv != "Ed25519" {
				c.fail(kp+".crv", "%q is not Ed25519", k.Crv)
			}
			if k.X == "" {
				c.fail(kp, "an OKP key needs x")
			}
		default:
			c.fail(kp+".kty", "%q is not one of EC, RSA, OKP", k.Kty)
		}
	}
}

// checkJWKSFetch checks how a trusted issuer's keys are fetched.
func checkJWKSFetch(c *checker, p string, t TrustedIssuer) {
	if t.CAFile != "" {
		if st, err := os.Stat(t.CAFile); err != nil {
			c.fail(p+".ca_file", "cannot read %s: %v", t.CAFile, unwrapPathErr(err))
		} else if st.IsDir() {
			c.fail(p+".ca_file", "%s is a directory", t.CAFile)
		}
	}
	if t.BearerTokenFile != "" {
		// The token is a credential: never send it in clear text.
		if u, err := url.Parse(t.JWKSURL); err == nil && u.Scheme != "https" {
			c.fail(p+".bearer_token_file", "needs an https jwks_url; the bearer token must not travel in clear text (got %q)", t.JWKSURL)
		}
	}
}

// hasControl reports C0, DEL or C1 control characters.
func hasControl(s string) bool {
	for _, r := range s {
		if r < ' ' || (r >= 0x7f && r <= 0x9f) {
			return true
		}
	}
	return false
}

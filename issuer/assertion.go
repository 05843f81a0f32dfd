package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
)

// AssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

const (
	// maxAssertionLifetime bounds how far ahead a private_key_jwt
	// assertion's exp may be (plus clock_skew): a short life keeps the jti
	// record small and a stolen assertion useless soon.
	maxAssertionLifetime = 5 * time.Minute
	// maxJTIBytes bounds the jti that is hashed and recorded.
	maxJTIBytes = 256
	// maxLoggedID bounds a client id taken from a request into a log line.
	maxLoggedID = 256
)

// Reasons an assertion is refused; they are logged (never sent: every
// failure answers the same invalid_client).
var (
	errAssertionClient   = errors.New("assertion names no client that authenticates this way")
	errAssertionSubject  = errors.New("assertion iss and sub must both be the client id")
	errAssertionAudience = errors.New("assertion aud names neither the issuer nor its token endpoint")
	errAssertionLifetime = errors.New("assertion exp is more than 5 minutes ahead")
	errAssertionJTI      = errors.New("assertion lacks a jti (or it is over 256 bytes)")
	errAssertionReplay   = errors.New("assertion jti was used before")
)

// assertionReason names why an assertion was refused, from a small closed
// set, for the security log (an error's text could echo request content).
func assertionReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{errAssertionClient, "unknown_client"}, {errAssertionSubject, "subject"},
		{errAssertionAudience, "audience"}, {errAssertionLifetime, "lifetime"},
		{errAssertionJTI, "jti"}, {errAssertionReplay, "replay"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return Reason(err)
}

// assertionVerifier holds what checking assertions needs beyond the issuer:
// the parser pinned to asymmetric algorithms, the accepted audiences, and a
// decoy key so an unknown client costs a signature check too.
type assertionVerifier struct {
	parser    *jwt.Parser
	audiences []string
	decoy     *ecdsa.PublicKey
	replay    *ReplayCache
}

func newAssertionVerifier(issuerURL string, skew time.Duration, now func() time.Time, replay *ReplayCache) (*assertionVerifier, error) {
	decoy, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("preparing client assertions: %w", err)
	}
	base := strings.TrimSuffix(issuerURL, "/")
	return &assertionVerifier{
		// RFC 7523 §3: exp is required; iat and nbf, when present, are
		// checked with the clock skew. Only asymmetric algorithms: a
		// symmetric one would need the verifying key to be a secret.
		parser: jwt.NewParser(
			jwt.WithValidMethods(config.AssertionAlgorithms),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(skew),
			jwt.WithTimeFunc(now),
		),
		audiences: slices.Compact([]string{issuerURL, base, base + "/token"}),
		decoy:     &decoy.PublicKey,
		replay:    replay,
	}, nil
}

// assertionCredentials reads a client assertion from the form; ok is false
// when the request carries none. RFC 7521 §4.2: one authentication method
// per request, so an assertion with a secret (form or Basic) is a bad request.
func assertionCredentials(r *http.Request, form url.Values) (assertion string, ok bool, e *oauthError) {
	if !form.Has("client_assertion") && !form.Has("client_assertion_type") {
		return "", false, nil
	}
	if form.Has("client_secret") || len(r.Header.Values("Authorization")) > 0 {
		return "", true, badRequest("invalid_request", "use one client authentication method, not two")
	}
	if t := form.Get("client_assertion_type"); t != AssertionType {
		return "", true, badRequest("invalid_request", "client_assertion_type must be "+AssertionType)
	}
	a := form.Get("client_assertion")
	if a == "" {
		return "", true, badRequest("invalid_request", "client_assertion is required with client_assertion_type")
	}
	return a, true, nil
}

// assertionIdentity is the unverified iss and sub of an assertion: enough to
// find the client, whose keys then decide.
type assertionIdentity struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
}

func peekIdentity(token string) (assertionIdentity, error) {
	var id assertionIdentity
	if len(token) > MaxTokenBytes || strings.Count(token, ".") != 2 {
		return id, ErrMalformed
	}
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	b, err := b64.DecodeString(payload)
	if err != nil {
		return id, ErrMalformed
	}
	if err := checkStrictJSON(b); err != nil {
		return id, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return id, nil
}

// findAssertionClient finds the client an assertion speaks for: a
// private_key_jwt client when iss = sub = its id (RFC 7523 §3), else the
// federated client registered for this issuer and subject. nil: none.
func (a *clientAuth) findAssertionClient(id assertionIdentity) *client {
	if id.Iss == id.Sub {
		if c := a.clients[id.Sub]; c != nil && c.usesKeys() {
			return c
		}
	}
	return a.federated[federatedID{id.Iss, id.Sub}]
}

// authenticateAssertion checks a client assertion. It returns the client,
// or nil and the reason (for the log) when authentication failed.
func (iss *Issuer) authenticateAssertion(r *http.Request, c *client, id assertionIdentity, token string) (*client, error) {
	if c == nil {
		iss.assertions.decoyCheck(token)
		return nil, errAssertionClient
	}
	if c.federated != nil {
		// The token of a trusted issuer, verified exactly as that
		// issuer's bearer tokens are (keys, exp, aud), and reusable until
		// it expires: Kubernetes projected tokens are presented many times.
		p, err := iss.Verify(token)
		if err != nil {
			return nil, err
		}
		// The verified payload is the one peeked at, so its iss and sub
		// are id's; sub must be the claim itself, never a fallback.
		if p.Issuer != c.federated.Issuer || id.Iss != c.federated.Issuer || id.Sub != c.federated.Subject {
			return nil, errAssertionClient
		}
		return c, nil
	}
	return c, iss.verifyPrivateKeyJWT(r, c, token)
}

// verifyPrivateKeyJWT checks an assertion signed by the client's own key
// (RFC 7523 §3).
func (iss *Issuer) verifyPrivateKeyJWT(r *http.Request, c *client, token string) error {
	h, err := inspect(token)
	if err != nil {
		return err
	}
	// tokenClaims: the same strict claim types as every verified token
	// (RFC 7519 §2 NumericDates, string iss/sub/jti).
	var claims tokenClaims
	_, err = iss.assertions.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		return c.assertionKey(h.kid, h.alg).verifying(t)
	})
	if err != nil {
		return mapJWTError(err)
	}
	// §3 items 1 and 2: iss and sub are both the client id.
	if claims.iss != c.id || claims.sub != c.id {
		return errAssertionSubject
	}
	// §3 item 3: the audience identifies this authorization server.
	if !intersects(claims.aud, iss.assertions.audiences) {
		return errAssertionAudience
	}
	now := iss.now()
	exp := claims.exp.Time
	if exp.After(now.Add(maxAssertionLifetime + iss.skew)) {
		return errAssertionLifetime
	}
	// §3 item 7: the jti is accepted once, remembered until the
	// assertion could no longer be accepted anyway.
	if claims.jti == "" || len(claims.jti) > maxJTIBytes {
		return errAssertionJTI
	}
	first, err := iss.assertions.replay.firstUse(r.Context(), c.id, claims.jti, now, exp.Add(iss.skew))
	if err != nil {
		return err
	}
	if !first {
		return errAssertionReplay
	}
	return nil
}

// decoyCheck spends a signature check on an assertion for no client, so
// that "unknown client" and "bad signature" take about the same time.
func (v *assertionVerifier) decoyCheck(token string) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		i = len(token)
	}
	// A 64-byte signature in range, so ECDSA does its full work.
	digest := sha256.Sum256([]byte(token))
	_ = jwt.SigningMethodES256.Verify(token[:i], append(digest[:], digest[:]...), v.decoy)
}

// assertionKey returns the client's key for kid; with no kid, the client's
// only key of the assertion's algorithm.
func (c *client) assertionKey(kid, alg string) *Key {
	keys := c.keys
	if c.source != nil {
		if kid != "" {
			return c.source.key(kid)
		}
		keys = *c.source.keys.Load()
	} else if kid != "" {
		return keys[kid]
	}
	var found *Key
	for _, k := range keys {
		if k.Alg == alg {
			if found != nil {
				return nil
			}
			found = k
		}
	}
	return found
}

// inlineJWKS decodes a client's inline key set; every key must decode (a
// key silently dropped from the config would be a surprise).
func inlineJWKS(set *config.JWKSet) (map[string]*Key, error) {
	keys := make(map[string]*Key, len(set.Keys))
	var errs []error
	for j, k := range set.Keys {
		key, err := keyFromJWK(jwk{Kty: k.Kty, Kid: k.Kid, Alg: k.Alg, Use: k.Use, Crv: k.Crv, X: k.X, Y: k.Y, N: k.N, E: k.E}, config.AssertionAlgorithms)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", j, err))
			continue
		}
		keys[k.Kid] = key
	}
	return keys, errors.Join(errs...)
}

package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds a bearer token; larger ones are refused before any
// decoding, so an oversized header cannot cost parse work.
const MaxTokenBytes = 8 << 10

// Principal is the verified identity behind a token. It is immutable and
// shared between requests that reuse the same token.
type Principal struct {
	Subject     string
	ClientID    string
	Issuer      string
	TokenID     string
	Scopes      []string
	ScopeString string
	Audience    []string
	IssuedAt    time.Time
	Expiry      time.Time

	cacheUntil time.Time
}

// HasScope reports whether the token carries scope s.
func (p *Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// Claims is the RFC 9068 claim set of an access token.
type Claims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// header is the part of the JOSE header we look at. Key-source headers are
// captured only to refuse them: a token must never tell us where its key is.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	Jku  json.RawMessage `json:"jku"`
	X5u  json.RawMessage `json:"x5u"`
	Jwk  json.RawMessage `json:"jwk"`
	X5c  json.RawMessage `json:"x5c"`
}

// Verify checks a bearer token and returns its principal. Any error rejects
// the token; errors wrap one of the Err* sentinels.
func (iss *Issuer) Verify(token string) (*Principal, error) {
	c, err := iss.Check(token)
	if err != nil || c.Principal != nil {
		return c.Principal, err
	}
	return c.Finish()
}

// Check is the first half of Verify: size and shape checks and the cache.
// A token verified before comes back with Principal set (revocation
// checked). Otherwise Principal is nil and Finish does the signature work,
// so a caller can decide first whether this client may spend it (the
// proxy charges the client IP for cache misses).
func (iss *Issuer) Check(token string) (Pending, error) {
	if len(token) > MaxTokenBytes {
		return Pending{}, ErrTooLarge
	}
	if strings.Count(token, ".") != 2 {
		return Pending{}, fmt.Errorf("%w: not three segments", ErrMalformed)
	}
	now := iss.now()
	pd := Pending{iss: iss, token: token, key: cacheKey(token), now: now}
	if p := iss.cache.get(pd.key, now); p != nil {
		if iss.isRevoked(p) {
			return Pending{}, ErrRevoked
		}
		pd.Principal = p
	}
	return pd, nil
}

// Pending is a token that passed Check: either cached (Principal set) or
// waiting for Finish.
type Pending struct {
	// Principal is set when the token was verified before.
	Principal *Principal

	iss   *Issuer
	token string
	key   [32]byte
	now   time.Time
}

// Finish verifies the signature and claims of a token Check did not find
// in the cache, and caches the result.
func (pd Pending) Finish() (*Principal, error) {
	if pd.Principal != nil {
		return pd.Principal, nil
	}
	p, err := pd.iss.verifyUncached(pd.token, pd.now)
	if err != nil {
		return nil, err
	}
	pd.iss.cache.put(pd.key, p, pd.now)
	if pd.iss.isRevoked(p) {
		return nil, ErrRevoked
	}
	return p, nil
}

func (iss *Issuer) isRevoked(p *Principal) bool {
	return iss.revoked != nil && iss.revoked.IsRevoked(p.TokenID, p.Subject, p.IssuedAt)
}

func (iss *Issuer) verifyUncached(token string, now time.Time) (*Principal, error) {
	h, err := inspect(token)
	if err != nil {
		return nil, err
	}
	if !iss.algs[h.Alg] {
		return nil, ErrAlgorithm // no configured key uses this algorithm at all
	}
	var claims Claims
	var trusted *remoteIssuer
	own := false
	_, err = iss.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		var k *Key
		switch {
		case claims.Issuer == iss.url:
			own = true
			k = iss.keysByID[h.Kid]
		default:
			trusted = iss.remotes[claims.Issuer]
			if trusted == nil {
				return nil, ErrIssuer
			}
			k = trusted.key(h.Kid)
		}
		if k == nil {
			return nil, ErrUnknownKey
		}
		// The key's pinned algorithm decides, never the token's alg alone:
		// this is what stops HS256-signed-with-the-public-key confusion.
		if t.Method.Alg() != k.Alg {
			return nil, ErrAlgorithm
		}
		return k.public, nil
	})
	if err != nil {
		return nil, mapJWTError(err)
	}
	audience := iss.audience
	if trusted != nil {
		audience = trusted.audience
	}
	// RFC 9068 §4: the resource server MUST check typ. Trusted issuers may
	// opt out, since many IdPs still mint typ JWT.
	if own || (trusted != nil && trusted.requireType) {
		if !strings.EqualFold(h.Typ, "at+jwt") && !strings.EqualFold(h.Typ, "application/at+jwt") {
			return nil, ErrType
		}
	}
	if !intersects(claims.Audience, audience) {
		return nil, ErrAudience
	}
	if claims.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	p := &Principal{
		Subject:     claims.Subject,
		ClientID:    claims.ClientID,
		Issuer:      claims.Issuer,
		TokenID:     claims.ID,
		ScopeString: claims.Scope,
		Scopes:      strings.Fields(claims.Scope),
		Audience:    claims.Audience,
		Expiry:      claims.ExpiresAt.Time,
	}
	if claims.IssuedAt != nil {
		p.IssuedAt = claims.IssuedAt.Time
	}
	if p.Subject == "" {
		p.Subject = p.ClientID
	}
	p.cacheUntil = p.Expiry.Add(iss.skew)
	return p, nil
}

// inspect decodes and checks the header and payload before signature work:
// forbidden headers, alg none, duplicate keys and control characters.
func inspect(token string) (*header, error) {
	hseg, rest, _ := strings.Cut(token, ".")
	pseg, _, _ := strings.Cut(rest, ".")
	hb, err := b64.DecodeString(hseg)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	pb, err := b64.DecodeString(pseg)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	if err := checkStrictJSON(hb); err != nil {
		return nil, err
	}
	if err := checkStrictJSON(pb); err != nil {
		return nil, err
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	// RFC 7515 §4.1.11: a crit extension we do not understand must be
	// rejected; we understand none.
	if h.Jku != nil || h.X5u != nil || h.Jwk != nil || h.X5c != nil || h.Crit != nil {
		return nil, ErrForbiddenHeader
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") {
		return nil, ErrAlgorithm
	}
	return &h, nil
}

func mapJWTError(err error) error {
	for _, s := range []error{ErrForbiddenHeader, ErrAlgorithm, ErrUnknownKey, ErrIssuer} {
		if errors.Is(err, s) {
			return s
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrAlgorithm // a method outside WithValidMethods
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ErrMissingClaim
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// InAudience reports whether the token was issued for audience a.
func (p *Principal) InAudience(a string) bool { return slices.Contains(p.Audience, a) }

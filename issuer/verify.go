package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/claim"
)

// MaxTokenBytes bounds a bearer token; larger ones are refused before any
// decoding, so an oversized header cannot cost parse work.
const MaxTokenBytes = 8 << 10

// Principal is the verified identity behind a token. It is immutable and
// shared between requests that reuse the same token.
type Principal struct {
	Subject  string
	ClientID string
	Issuer   string
	TokenID  string
	// Scopes are the token's scopes, parsed by claim.ParseScope (or one per
	// element of an array claim), without repeats.
	Scopes []string
	// ScopeString is Scopes joined with single spaces: the normalised form
	// identity headers and introspection carry.
	ScopeString string
	Audience    []string
	IssuedAt    time.Time
	Expiry      time.Time

	// claims are the claims routes and identity headers refer to (only
	// those); claimHeaders their rendered header values, aligned with
	// Issuer.ClaimHeaderNames ("" for no header).
	claims       []namedClaim
	claimHeaders []string
	cacheUntil   time.Time
	size         int // estimated bytes held, for the cache's byte bound
}

// HasScope reports whether the token carries scope s.
func (p *Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// Claim returns a claim that a route or an identity header names, as the
// token held it; ok is false when the token lacks it. Claims nothing refers
// to are not kept. It allocates nothing.
func (p *Principal) Claim(name string) (claim.Claim, bool) {
	for i := range p.claims {
		if p.claims[i].name == name {
			return p.claims[i].claim, true
		}
	}
	return claim.Claim{}, false
}

// ClaimHeaderValues returns the values of the configured claim headers,
// aligned with Issuer.ClaimHeaderNames; "" means no header. The slice is
// shared: callers must not modify it.
func (p *Principal) ClaimHeaderValues() []string { return p.claimHeaders }

// Claims is the RFC 9068 claim set of an access token, as Sign mints it.
type Claims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// header is the part of the JOSE header we look at, kept raw so a member of
// the wrong type is refused rather than read as absent. Key-source headers
// are captured only to refuse them: a token must never tell us where its
// key is.
type header struct {
	Alg  json.RawMessage `json:"alg"`
	Kid  json.RawMessage `json:"kid"`
	Typ  json.RawMessage `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	Jku  json.RawMessage `json:"jku"`
	X5u  json.RawMessage `json:"x5u"`
	Jwk  json.RawMessage `json:"jwk"`
	X5c  json.RawMessage `json:"x5c"`

	alg, kid, typ string
	hasKid        bool
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
// proxy charges the client IP for tokens not verified before: see
// Pending.VerifiedBefore).
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
	} else {
		pd.verifiedBefore = iss.cache.seenBefore(&pd.key)
	}
	return pd, nil
}

// VerifiedBefore reports whether a token Check did not find in the cache
// was verified once already (the cache takes a token on its second
// verification): its signature check costs no more than a cache hit would
// have saved, so it is not charged as a new token. A forged token never is.
func (pd Pending) VerifiedBefore() bool { return pd.Principal != nil || pd.verifiedBefore }

// Pending is a token that passed Check: either cached (Principal set) or
// waiting for Finish.
type Pending struct {
	// Principal is set when the token was verified before.
	Principal *Principal

	iss            *Issuer
	token          string
	key            [32]byte
	now            time.Time
	verifiedBefore bool
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
	if !iss.algs[h.alg] {
		return nil, ErrAlgorithm // no configured key uses this algorithm at all
	}
	var tc tokenClaims
	var trusted *remoteIssuer
	own := false
	_, err = iss.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		var k *Key
		switch {
		case tc.iss == iss.url:
			own = true
			k = iss.ownKey(h)
		default:
			trusted = iss.remotes[tc.iss]
			if trusted == nil {
				return nil, ErrIssuer
			}
			k = trusted.keyFor(h)
		}
		return k.verifying(t)
	})
	if err != nil {
		return nil, mapJWTError(err)
	}
	audience := iss.audience
	scopeClaims := ownScopeClaims
	if trusted != nil {
		audience = trusted.audience
		scopeClaims = iss.scopeClaims[trusted.issuer]
	}
	// RFC 9068 §4: the resource server MUST check typ. Trusted issuers may
	// opt out, since many IdPs still mint typ JWT.
	if own || (trusted != nil && trusted.requireType) {
		if !strings.EqualFold(h.typ, "at+jwt") && !strings.EqualFold(h.typ, "application/at+jwt") {
			return nil, ErrType
		}
	}
	if !intersects(tc.aud, audience) {
		return nil, ErrAudience
	}
	if tc.exp == nil {
		return nil, fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	scopes, err := tc.scopes(scopeClaims, trusted != nil)
	if err != nil {
		return nil, err
	}
	kept, headerVals, err := tc.keep(iss.claimNames, iss.claimHeaders)
	if err != nil {
		return nil, err
	}
	p := &Principal{
		Subject:      tc.sub,
		ClientID:     tc.clientID,
		Issuer:       tc.iss,
		TokenID:      tc.jti,
		Scopes:       scopes,
		ScopeString:  strings.Join(scopes, " "),
		Audience:     tc.aud,
		Expiry:       tc.exp.Time,
		claims:       kept,
		claimHeaders: headerVals,
	}
	if tc.iat != nil {
		p.IssuedAt = tc.iat.Time
	}
	if p.Subject == "" {
		p.Subject = p.ClientID
	}
	p.cacheUntil = p.Expiry.Add(iss.skew)
	p.size = p.footprint()
	return p, nil
}

// Footprint estimates: a string header or slice element costs 16 bytes, a
// claim value 40, and the Principal itself with its slices a few hundred.
const (
	principalOverhead = 320
	stringOverhead    = 16
	valueOverhead     = 40
)

// footprint estimates the bytes a cached principal holds.
func (p *Principal) footprint() int {
	n := principalOverhead + len(p.Subject) + len(p.ClientID) + len(p.Issuer) + len(p.TokenID) + len(p.ScopeString)
	for _, s := range p.Scopes {
		n += stringOverhead + len(s)
	}
	for _, a := range p.Audience {
		n += stringOverhead + len(a)
	}
	for _, c := range p.claims {
		n += 2*stringOverhead + len(c.name)
		for _, v := range c.claim.Values {
			n += valueOverhead + len(v.Text)
		}
	}
	for _, h := range p.claimHeaders {
		n += stringOverhead + len(h)
	}
	return n
}

// ownKey picks our key for the token: by kid, or, for a token without one,
// the only key pinned to its algorithm (none when two share it, since then
// the token does not say which).
func (iss *Issuer) ownKey(h *header) *Key {
	if h.hasKid {
		return iss.keysByID[h.kid]
	}
	return soleKey(iss.keys, h.alg)
}

// keyFor picks a trusted issuer's key by kid (refetching the set for an
// unknown one), or, without a kid, the only key of the token's algorithm in
// its current set.
func (r *remoteIssuer) keyFor(h *header) *Key {
	if h.hasKid {
		return r.key(h.kid)
	}
	keys := *r.keys.Load()
	var found *Key
	for _, k := range keys {
		if k.Alg == h.alg {
			if found != nil {
				return nil
			}
			found = k
		}
	}
	return found
}

// soleKey returns the one key pinned to alg, or nil when there are none or
// several.
func soleKey(keys []*Key, alg string) *Key {
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

// inspect decodes and checks the header and payload before signature work:
// forbidden headers, alg none, header members of the wrong type, duplicate
// keys, control characters and invalid UTF-8.
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
	var ok bool
	if h.alg, ok = headerString(h.Alg); !ok {
		return nil, fmt.Errorf("%w: alg is not a string", ErrAlgorithm)
	}
	// RFC 7515 §4.1.4: kid is a string. A null or numeric kid is not "no
	// kid": it must not fall through to the kid-less key choice.
	if h.Kid != nil {
		if h.kid, ok = headerString(h.Kid); !ok {
			return nil, fmt.Errorf("%w: kid is not a string", ErrMalformed)
		}
		h.hasKid = true
	}
	if h.Typ != nil {
		if h.typ, ok = headerString(h.Typ); !ok {
			return nil, fmt.Errorf("%w: typ is not a string", ErrMalformed)
		}
	}
	if h.alg == "" || strings.EqualFold(h.alg, "none") {
		return nil, ErrAlgorithm
	}
	return &h, nil
}

// headerString decodes a header member that must be a JSON string.
func headerString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
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

package issuer

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/claim"
)

// maxNumericDate is 9999-12-31T23:59:59Z: a NumericDate past it is no
// plausible time, and far past it would overflow time arithmetic.
const maxNumericDate = 253402300799

// ownScopeClaims is where our own tokens carry scopes (RFC 9068 §2.2.3);
// defaultScopeClaims where a trusted issuer's do unless configured (the
// config's default too: scope, then scp as Hydra, Okta and Entra ID send it).
var (
	ownScopeClaims     = []string{"scope"}
	defaultScopeClaims = []string{"scope", "scp"}
)

// tokenClaims is the payload of a token being verified. It decodes itself
// strictly, once, for every issuer: the registered claims must have their
// RFC 7519 types (exp, nbf and iat JSON numbers, never strings that look
// like numbers, which encoding/json would otherwise accept through
// json.Number), and the raw members are kept for scopes and the claims
// routes and headers name. It implements jwt.Claims so golang-jwt's time
// checks run on exactly these values.
type tokenClaims struct {
	raw           map[string]json.RawMessage
	iss, sub, jti string
	clientID      string
	aud           jwt.ClaimStrings
	exp, nbf, iat *jwt.NumericDate
}

// UnmarshalJSON checks the registered claims' types.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.raw); err != nil || c.raw == nil {
		return fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	dates := [...]struct {
		name string
		dst  **jwt.NumericDate
	}{{"exp", &c.exp}, {"nbf", &c.nbf}, {"iat", &c.iat}}
	for _, d := range dates {
		if raw, ok := c.raw[d.name]; ok {
			v, err := numericDate(d.name, raw)
			if err != nil {
				return err
			}
			*d.dst = v
		}
	}
	strs := [...]struct {
		name string
		dst  *string
	}{{"iss", &c.iss}, {"sub", &c.sub}, {"jti", &c.jti}, {"client_id", &c.clientID}}
	for _, f := range strs {
		if raw, ok := c.raw[f.name]; ok {
			if raw[0] != '"' || json.Unmarshal(raw, f.dst) != nil {
				return fmt.Errorf("%w: %s is not a string", ErrMalformed, f.name)
			}
		}
	}
	if raw, ok := c.raw["aud"]; ok {
		// RFC 7519 §4.1.3: a string or an array of strings; null or
		// anything else is refused, not read as "no audience".
		var one string
		switch many, isList := stringArray(raw); {
		case raw[0] == '"' && json.Unmarshal(raw, &one) == nil:
			c.aud = jwt.ClaimStrings{one}
		case isList:
			c.aud = many
		default:
			return fmt.Errorf("%w: aud is neither a string nor an array of strings", ErrMalformed)
		}
	}
	return nil
}

// numericDate reads an RFC 7519 §2 NumericDate: a JSON number of seconds
// since the epoch. Strings (even "1700000000"), booleans, objects and null
// are refused, as are values outside year 0–9999, so every issuer's
// tokens go through this one check.
func numericDate(name string, raw json.RawMessage) (*jwt.NumericDate, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return nil, fmt.Errorf("%w: %s is not a JSON number (RFC 7519 §2 NumericDate)", ErrMalformed, name)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > maxNumericDate {
		return nil, fmt.Errorf("%w: %s is not a plausible NumericDate", ErrMalformed, name)
	}
	sec, frac := math.Modf(f)
	return jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9))), nil
}

// GetExpirationTime implements jwt.Claims.
func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, nil }

// GetIssuedAt implements jwt.Claims.
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error) { return c.iat, nil }

// GetNotBefore implements jwt.Claims.
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error) { return c.nbf, nil }

// GetIssuer implements jwt.Claims.
func (c *tokenClaims) GetIssuer() (string, error) { return c.iss, nil }

// GetSubject implements jwt.Claims.
func (c *tokenClaims) GetSubject() (string, error) { return c.sub, nil }

// GetAudience implements jwt.Claims.
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error) { return c.aud, nil }

// scopes reads the scopes from the first of names present and not null:
// a space-separated string (RFC 6749 §3.3, split on 0x20 only) or an array
// of strings, one scope each (Ory Hydra's and Entra ID's scp). Any other
// type, or a piece outside the scope-token characters, makes the token
// invalid: a scope we cannot read exactly must not be read loosely.
// Our own tokens carry the RFC 9068 scope string only (allowArray false).
func (c *tokenClaims) scopes(names []string, allowArray bool) ([]string, error) {
	for _, name := range names {
		raw, ok := claim.Lookup(c.raw, name)
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		var list []string
		var err error
		switch elems, isList := stringArray(raw); {
		case raw[0] == '"' && json.Unmarshal(raw, &s) == nil:
			list, err = claim.ParseScope(s)
		case isList && allowArray:
			list, err = claim.ScopeList(elems)
		default:
			return nil, fmt.Errorf("%w: %s is neither a string nor an array of strings", ErrMalformed, name)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
		}
		return list, nil
	}
	return nil, nil
}

// stringArray decodes a JSON array whose every element is a string; null
// elements (which encoding/json would turn into "") make it not one.
func stringArray(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return nil, false
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &out[i]) != nil {
			return nil, false
		}
	}
	return out, true
}

// namedClaim is a claim a route or header refers to, as the token held it.
type namedClaim struct {
	name  string
	claim claim.Claim
}

// keep extracts the claims routes and headers use (and nothing else, so a
// cached principal stays small) and renders the claim headers once, so a
// cached token costs no formatting per request.
func (c *tokenClaims) keep(names []string, headers []claimHeader) ([]namedClaim, []string, error) {
	var kept []namedClaim
	for _, n := range names {
		raw, ok := claim.Lookup(c.raw, n)
		if !ok {
			continue
		}
		v, err := claim.Decode(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: claim %q: %v", ErrMalformed, claim.Bound(n), err)
		}
		kept = append(kept, namedClaim{name: n, claim: v})
	}
	var vals []string
	if len(headers) > 0 {
		vals = make([]string, len(headers))
		for i, h := range headers {
			for _, k := range kept {
				if k.name == h.claim {
					vals[i], _ = k.claim.HeaderValue()
					break
				}
			}
		}
	}
	return kept, vals, nil
}

// claimHeader is one identity header carrying a claim.
type claimHeader struct {
	header string // canonical header name
	claim  string
}

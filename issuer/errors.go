package issuer

import "errors"

// Verification failures. Each has its own reason label in
// auth_failures_total; any of them rejects the token.
var (
	ErrMalformed       = errors.New("token is malformed")
	ErrTooLarge        = errors.New("token is too large")
	ErrForbiddenHeader = errors.New("token header names a key source (jku, x5u, jwk, x5c) or an unknown crit extension")
	ErrAlgorithm       = errors.New("token algorithm is not the one pinned for its key")
	ErrUnknownKey      = errors.New("token kid names no known key")
	ErrSignature       = errors.New("token signature is invalid")
	ErrExpired         = errors.New("token is expired")
	ErrNotYetValid     = errors.New("token is not valid yet")
	ErrIssuer          = errors.New("token issuer is not trusted")
	ErrAudience        = errors.New("token audience is not accepted here")
	ErrType            = errors.New("token type is not at+jwt")
	ErrMissingClaim    = errors.New("token lacks a required claim")
	ErrRevoked         = errors.New("token has been revoked")
)

var reasons = []struct {
	err    error
	reason string
}{
	{ErrTooLarge, "too_large"},
	{ErrForbiddenHeader, "forbidden_header"},
	{ErrAlgorithm, "algorithm"},
	{ErrUnknownKey, "unknown_key"},
	{ErrSignature, "signature"},
	{ErrRevoked, "revoked"},
	{ErrIssuer, "issuer"},
	{ErrAudience, "audience"},
	{ErrType, "type"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrMissingClaim, "missing_claim"},
	{ErrMalformed, "malformed"},
}

// Reason maps a verification error to its metric label, a small closed set.
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid"
}

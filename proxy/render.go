package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes in JSON bodies and WWW-Authenticate (RFC 6750 §3.1).
const (
	codeInvalidRequest    = "invalid_request"
	codeInvalidToken      = "invalid_token"
	codeUnauthorized      = "unauthorized"
	codeInsufficientScope = "insufficient_scope"
	codeAccessDenied      = "access_denied"
	codeNotFound          = "not_found"
	codeRateLimited       = "rate_limited"
	codeBadGateway        = "bad_gateway"
	codeGatewayTimeout    = "gateway_timeout"
	codeUnavailable       = "temporarily_unavailable"
)

const realm = `Bearer realm="portcullis"`

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// errorJSON is the body of every error response Portcullis writes itself.
func errorJSON(code, desc string) []byte {
	b, _ := json.Marshal(errorBody{Error: code, Description: desc})
	return append(b, '\n')
}

// writeError answers with an error that is not a decision (an upstream
// failure), through the same renderer. It never echoes token contents or
// internal errors: descriptions are fixed strings chosen by the caller.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	d := refusal(status, code, desc)
	writeDecision(w, &d)
}

// unauthorized is the 401 decision. tokenSent adds error="invalid_token"
// (RFC 6750 §3: no error code when the request carried no credentials).
func unauthorized(tokenSent bool, desc string) Decision {
	if tokenSent {
		d := refusal(http.StatusUnauthorized, codeInvalidToken, desc)
		d.add(hWWWAuthenticate, realm+`, error="invalid_token", error_description="`+desc+`"`)
		return d
	}
	d := refusal(http.StatusUnauthorized, codeUnauthorized, "a bearer token is required")
	d.add(hWWWAuthenticate, realm)
	return d
}

// forbidden is the 403 insufficient_scope decision with the scope needed
// (RFC 6750 §3.1).
func forbidden(scope string) Decision {
	v := realm + `, error="insufficient_scope"`
	desc := "the token is not allowed here"
	if scope != "" {
		v += `, scope="` + scope + `"`
		desc = "requires scope " + scope
	}
	d := refusal(http.StatusForbidden, codeInsufficientScope, desc)
	d.add(hWWWAuthenticate, v)
	return d
}

// accessDenied is the 403 access_denied decision: the token is valid and has its
// scopes, but a route claim requirement is not met. No WWW-Authenticate:
// RFC 6750 §3.1 defines insufficient_scope for scopes a client could ask
// for, and a challenge would only invite a retry with another token of the
// same identity, which holds the same claims.
func accessDenied() Decision {
	return refusal(http.StatusForbidden, codeAccessDenied, "the token's claims do not meet this route's requirements")
}

// retryAfterSeconds rounds up: telling a client to retry before a token is
// back would only earn it another 429.
func retryAfterSeconds(d float64) string {
	s := int64(d)
	if float64(s) < d {
		s++
	}
	return strconv.FormatInt(max(s, 1), 10)
}

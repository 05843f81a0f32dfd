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

// writeError is the one renderer of Portcullis's own error responses. It
// never echoes token contents or internal errors: descriptions are fixed
// strings chosen by the caller.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(errorBody{Error: code, Description: desc})
	_, _ = w.Write(append(b, '\n'))
}

// unauthorized answers 401. tokenSent adds error="invalid_token" (RFC 6750
// §3: no error code when the request carried no credentials).
func unauthorized(w http.ResponseWriter, tokenSent bool, desc string) {
	if tokenSent {
		w.Header().Set(hWWWAuthenticate, realm+`, error="invalid_token", error_description="`+desc+`"`)
		writeError(w, http.StatusUnauthorized, codeInvalidToken, desc)
		return
	}
	w.Header().Set(hWWWAuthenticate, realm)
	writeError(w, http.StatusUnauthorized, codeUnauthorized, "a bearer token is required")
}

// forbidden answers 403 insufficient_scope with the scope needed (§3.1).
func forbidden(w http.ResponseWriter, scope string) {
	v := realm + `, error="insufficient_scope"`
	desc := "the token is not allowed here"
	if scope != "" {
		v += `, scope="` + scope + `"`
		desc = "requires scope " + scope
	}
	w.Header().Set(hWWWAuthenticate, v)
	writeError(w, http.StatusForbidden, codeInsufficientScope, desc)
}

// accessDenied answers 403 access_denied: the token is valid and has its
// scopes, but a route claim requirement is not met. No WWW-Authenticate:
// RFC 6750 §3.1 defines insufficient_scope for scopes a client could ask
// for, and a challenge would only invite a retry with another token of the
// same identity, which holds the same claims.
func accessDenied(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, codeAccessDenied, "the token's claims do not meet this route's requirements")
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

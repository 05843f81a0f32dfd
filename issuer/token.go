package issuer

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/claim"
)

// maxFormBytes bounds a /token, /revoke or /introspect body: these forms are
// a few hundred bytes, and the documented answer past 1 MiB is 413.
const maxFormBytes = 1 << 20

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
	basic  bool // add WWW-Authenticate: Basic (client tried HTTP Basic)
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func badRequest(code, desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, desc: desc}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="portcullis", charset="UTF-8"`)
	}
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	body := map[string]string{"error": e.code}
	if e.desc != "" {
		body["error_description"] = e.desc
	}
	writeJSON(w, e.status, body)
}

// readForm enforces POST, a form content type, the size limit, no
// credentials in the URL and no repeated parameters (RFC 6749 §3.2), except
// those in repeatable (RFC 8707 allows several resource parameters).
func readForm(w http.ResponseWriter, r *http.Request, repeatable ...string) (url.Values, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "use POST"}
	}
	q := r.URL.Query()
	if q.Has("client_secret") || q.Has("client_id") || q.Has("token") || q.Has("client_assertion") {
		return nil, badRequest("invalid_request", "credentials must not be sent in the URL")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, &oauthError{status: http.StatusUnsupportedMediaType, code: "invalid_request", desc: "body must be application/x-www-form-urlencoded"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &oauthError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", desc: "body is larger than 1 MiB"}
		}
		return nil, badRequest("invalid_request", "could not read body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("invalid_request", "body is not valid form encoding")
	}
	for k, v := range form {
		if len(v) > 1 && !slices.Contains(repeatable, k) {
			return nil, badRequest("invalid_request", "parameter "+k+" is repeated")
		}
	}
	return form, nil
}

// clientCredentials extracts client credentials from HTTP Basic (values
// form-urlencoded before base64, RFC 6749 §2.3.1) or the form, never both.
func clientCredentials(r *http.Request, form url.Values) (id, secret string, basic bool, e *oauthError) {
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return "", "", false, badRequest("invalid_request", "Authorization header is repeated")
	}
	formHas := form.Has("client_secret")
	if len(authz) == 1 {
		scheme, cred, _ := strings.Cut(authz[0], " ")
		if !strings.EqualFold(scheme, "Basic") {
			return "", "", false, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "use HTTP Basic or client_secret_post", basic: true}
		}
		if formHas {
			return "", "", true, badRequest("invalid_request", "use one client authentication method, not two")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", "", true, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed Basic credentials", basic: true}
		}
		u, p, ok := strings.Cut(string(raw), ":")
		uid, err1 := url.QueryUnescape(u)
		pw, err2 := url.QueryUnescape(p)
		if !ok || err1 != nil || err2 != nil {
			return "", "", true, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed Basic credentials", basic: true}
		}
		if fid := form.Get("client_id"); fid != "" && fid != uid {
			return "", "", true, badRequest("invalid_request", "client_id does not match the Basic credentials")
		}
		return uid, pw, true, nil
	}
	if !formHas || form.Get("client_id") == "" {
		return "", "", false, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication is required", basic: true}
	}
	return form.Get("client_id"), form.Get("client_secret"), false, nil
}

// authenticateClient runs the shared client-authentication steps of /token,
// /revoke and /introspect: credentials, admission (rate limit) before any
// bcrypt work, then the secret check.
func (iss *Issuer) authenticateClient(w http.ResponseWriter, r *http.Request, form url.Values) (*client, *oauthError, bool) {
	if assertion, ok, e := assertionCredentials(r, form); ok {
		return iss.authenticateByAssertion(w, r, form, assertion, e)
	}
	id, secret, basic, e := clientCredentials(r, form)
	if e != nil {
		iss.metrics.AuthFailures.WithLabelValues("invalid_client").Inc()
		return nil, e, true
	}
	if iss.admitToken != nil && !iss.admitToken(w, r, id) {
		return nil, nil, false
	}
	c, err := iss.clients.authenticate(r.Context(), id, secret)
	if err != nil {
		return nil, &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "too many client authentications in progress; retry"}, true
	}
	if c == nil {
		iss.metrics.AuthFailures.WithLabelValues("invalid_client").Inc()
		iss.secLog(r, "client authentication failed", "client_id", id, "remote", r.RemoteAddr, "path", r.URL.Path)
		return nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: basic}, true
	}
	return c, nil, true
}

// authenticateByAssertion is authenticateClient for RFC 7523 client
// assertions: admission before any signature work, then the assertion.
// Every failure is the same 401 invalid_client; the reason is only logged.
func (iss *Issuer) authenticateByAssertion(w http.ResponseWriter, r *http.Request, form url.Values, assertion string, e *oauthError) (*client, *oauthError, bool) {
	if e != nil {
		iss.metrics.AuthFailures.WithLabelValues("invalid_client").Inc()
		return nil, e, true
	}
	id, err := peekIdentity(assertion)
	c := iss.clients.findAssertionClient(id)
	name := id.Sub
	if c != nil {
		name = c.id
	}
	// A client_id parameter, if sent, must name the same client (RFC 7521
	// §4.2); a mismatch fails like any bad assertion.
	if fid := form.Get("client_id"); form.Has("client_id") && (c == nil || fid != c.id) {
		c, name = nil, fid
	}
	if iss.admitToken != nil && !iss.admitToken(w, r, name) {
		return nil, nil, false
	}
	if err == nil {
		c, err = iss.authenticateAssertion(r, c, id, assertion)
	} else {
		iss.assertions.decoyCheck(assertion)
	}
	if errors.Is(err, errReplayFull) {
		return nil, &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "too many client assertions in flight; retry"}, true
	}
	if err != nil {
		iss.metrics.AuthFailures.WithLabelValues("invalid_client").Inc()
		if len(name) > maxLoggedID {
			name = name[:maxLoggedID] // request-supplied: bounded in logs
		}
		iss.secLog(r, "client assertion refused", "client_id", name, "reason", assertionReason(err), "remote", r.RemoteAddr, "path", r.URL.Path)
		return nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed"}, true
	}
	return c, nil, true
}

// TokenHandler serves POST /token: the client credentials grant (RFC 6749
// §4.4) minting RFC 9068 access tokens.
func (iss *Issuer) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, e := readForm(w, r, "resource", "audience")
		if e != nil {
			writeOAuthError(w, e)
			return
		}
		switch gt := form.Get("grant_type"); gt {
		case "client_credentials":
		case "":
			writeOAuthError(w, badRequest("invalid_request", "grant_type is required"))
			return
		default:
			writeOAuthError(w, badRequest("unsupported_grant_type", "only client_credentials is supported"))
			return
		}
		c, e, ok := iss.authenticateClient(w, r, form)
		if !ok {
			return
		}
		if e != nil {
			writeOAuthError(w, e)
			return
		}
		scopes := c.scopes
		if form.Has("scope") {
			var err error
			// The one scope parser (RFC 6749 §3.3), as for tokens we verify.
			if scopes, err = claim.ParseScope(form.Get("scope")); err != nil {
				writeOAuthError(w, badRequest("invalid_scope", "scope must be scope-tokens separated by spaces (RFC 6749 §3.3)"))
				return
			}
			for _, s := range scopes {
				if !slices.Contains(c.scopes, s) {
					writeOAuthError(w, badRequest("invalid_scope", "scope "+s+" is not granted to this client"))
					return
				}
			}
		}
		allowedAud := c.audience
		if len(allowedAud) == 0 {
			allowedAud = iss.audience
		}
		aud := allowedAud
		if req := append(splitAll(form["audience"]), splitAll(form["resource"])...); len(req) > 0 {
			for _, a := range req {
				if !slices.Contains(allowedAud, a) {
					writeOAuthError(w, badRequest("invalid_target", "audience "+a+" is not allowed for this client"))
					return
				}
			}
			aud = slices.Compact(slices.Sorted(slices.Values(req)))
		}
		now := iss.now().Truncate(time.Second)
		claims := Claims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer: iss.url, Subject: c.id, Audience: aud,
				ExpiresAt: jwt.NewNumericDate(now.Add(iss.ttl)),
				NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
				ID: newJTI(),
			},
			ClientID: c.id,
			Scope:    strings.Join(scopes, " "),
		}
		tok, err := iss.Sign(claims)
		if err != nil {
			iss.log.Error("signing token failed", "client_id", c.id, "error", err)
			writeOAuthError(w, &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "could not sign the token"})
			return
		}
		iss.metrics.TokensIssued.WithLabelValues(c.id).Inc()
		writeJSON(w, http.StatusOK, tokenResponse{
			AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(iss.ttl / time.Second), Scope: claims.Scope,
		})
	})
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

func splitAll(vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

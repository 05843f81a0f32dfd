package issuer

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// RevokeHandler serves POST /revoke (RFC 7009). A client revokes only its own
// tokens; unknown or invalid tokens answer 200 (§2.2), and a revocation the
// shared store could not record answers 503, never a false 200.
func (iss *Issuer) RevokeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, e := readForm(w, r)
		if e != nil {
			writeOAuthError(w, e)
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
		tok := form.Get("token")
		if tok == "" {
			writeOAuthError(w, badRequest("invalid_request", "token is required"))
			return
		}
		p, err := iss.Verify(tok)
		if err != nil {
			w.WriteHeader(http.StatusOK) // RFC 7009 §2.2: invalid tokens are not an error
			return
		}
		// RFC 7009 §2.1: the server verifies that the token was issued to
		// the client making the request. Only tokens this issuer minted
		// qualify: a trusted issuer's token whose client_id happens to equal
		// this client's id was issued to some other party, and is left
		// untouched.
		if p.Issuer != iss.url || p.ClientID != c.id {
			writeOAuthError(w, badRequest("unauthorized_client", "the token was not issued by this server to this client"))
			return
		}
		if iss.revoked == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		if err := iss.revoked.RevokeToken(r.Context(), p.TokenID, p.Expiry); err != nil {
			iss.log.Error("recording revocation failed", "jti", p.TokenID, "error", err)
			writeOAuthError(w, &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the revocation could not be recorded; retry"})
			return
		}
		iss.metrics.TokensRevoked.Inc()
		iss.log.Info("token revoked", "jti", p.TokenID, "client_id", c.id)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	})
}

// IntrospectHandler serves POST /introspect (RFC 7662) to authenticated
// clients. Anything not currently valid is {"active":false}.
func (iss *Issuer) IntrospectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, e := readForm(w, r)
		if e != nil {
			writeOAuthError(w, e)
			return
		}
		_, e, ok := iss.authenticateClient(w, r, form)
		if !ok {
			return
		}
		if e != nil {
			writeOAuthError(w, e)
			return
		}
		tok := form.Get("token")
		if tok == "" {
			writeOAuthError(w, badRequest("invalid_request", "token is required"))
			return
		}
		p, err := iss.Verify(tok)
		if err != nil {
			writeJSON(w, http.StatusOK, map[string]bool{"active": false})
			return
		}
		resp := map[string]any{
			"active": true, "token_type": "Bearer", "sub": p.Subject, "iss": p.Issuer,
			"aud": p.Audience, "exp": p.Expiry.Unix(), "jti": p.TokenID,
		}
		if p.ScopeString != "" {
			resp["scope"] = p.ScopeString
		}
		if p.ClientID != "" {
			resp["client_id"] = p.ClientID
		}
		if !p.IssuedAt.IsZero() {
			resp["iat"] = p.IssuedAt.Unix()
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// AdminRevokeHandler serves POST /admin/revoke-tokens: a bearer token with
// the admin scope revokes every token of a subject issued until now.
func (iss *Issuer) AdminRevokeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeOAuthError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "use POST"})
			return
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || tok == "" || len(r.Header.Values("Authorization")) > 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
			writeOAuthError(w, &oauthError{status: http.StatusUnauthorized, code: "invalid_token", desc: "a bearer token with the admin scope is required"})
			return
		}
		p, err := iss.Verify(strings.TrimSpace(tok))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis", error="invalid_token"`)
			writeOAuthError(w, &oauthError{status: http.StatusUnauthorized, code: "invalid_token", desc: "the token is not valid"})
			return
		}
		if !p.HasScope(iss.admin) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis", error="insufficient_scope", scope="`+iss.admin+`"`)
			writeOAuthError(w, &oauthError{status: http.StatusForbidden, code: "insufficient_scope", desc: "requires scope " + iss.admin})
			return
		}
		var body struct {
			Subject string `json:"subject"`
			UserID  string `json:"user_id"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, maxFormBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeOAuthError(w, badRequest("invalid_request", "body must be JSON {\"subject\": \"…\"}"))
			return
		}
		sub := body.Subject
		if sub == "" {
			sub = body.UserID
		}
		if sub == "" || (body.Subject != "" && body.UserID != "" && body.Subject != body.UserID) {
			writeOAuthError(w, badRequest("invalid_request", "give subject (or its alias user_id)"))
			return
		}
		if iss.revoked == nil {
			writeOAuthError(w, &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "revocation is not configured"})
			return
		}
		now := iss.now()
		if err := iss.revoked.RevokeSubject(r.Context(), sub, now, now.Add(iss.maxLifetime)); err != nil {
			iss.log.Error("recording subject revocation failed", "sub", sub, "error", err)
			writeOAuthError(w, &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the revocation could not be recorded; retry"})
			return
		}
		iss.metrics.TokensRevoked.Inc()
		iss.log.Info("subject revoked", "sub", sub, "by", p.Subject)
		writeJSON(w, http.StatusOK, map[string]string{"revoked_subject": sub, "revoked_before": now.UTC().Format("2006-01-02T15:04:05Z07:00")})
	})
}

package proxy

import (
	"github.com/portcullis/portcullis/issuer"
)

// IdentityHeaders appends to dst the identity header fields an allowed
// request carries upstream for p: the configured names (canonical form)
// with the verified values; a field whose value is empty is left out. Every
// front door sets exactly these.
func (h *Handler) IdentityHeaders(dst []Header, p *issuer.Principal) []Header {
	if p == nil {
		return dst
	}
	vals := [5]string{p.Subject, p.ClientID, p.ScopeString, p.Issuer, p.TokenID}
	for i, name := range h.identNames {
		if vals[i] != "" {
			dst = append(dst, Header{name, vals[i]})
		}
	}
	// identity_headers.claims, rendered once when the token was verified,
	// in the order of h.claimNames.
	for i, v := range p.ClaimHeaderValues() {
		if v != "" {
			dst = append(dst, Header{h.claimNames[i], v})
		}
	}
	return dst
}

// IdentityHeaderNames returns every configured identity header name in
// canonical form, the identity_headers.claims ones included. The slice is
// shared: do not modify it.
func (h *Handler) IdentityHeaderNames() []string { return h.allIdentNames }

// Scrubbed reports whether a request header of this name never reaches the
// upstream as the client sent it: identity header names in any spelling a
// CGI-style server reads as the same variable (X_Auth_Subject,
// X.Auth.Subject), any other X-Auth-*, and the forward-auth and
// method-override headers some frameworks obey over the request line.
func (h *Handler) Scrubbed(name string) bool { return h.scrub.matches(name) }

// ForwardAuthorization reports whether the upstream receives the
// Authorization header (forward_authorization).
func (h *Handler) ForwardAuthorization() bool { return h.forwardAuthz }

// SecurityHeaderFields appends to dst the configured security headers that
// every response Portcullis answers itself carries (canonical names).
func (h *Handler) SecurityHeaderFields(dst []Header) []Header {
	for _, kv := range h.sec.set {
		dst = append(dst, Header{kv.name, kv.val[0]})
	}
	return dst
}

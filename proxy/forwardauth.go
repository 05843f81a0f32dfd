package proxy

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// ForwardAuthPrefix is where forward-auth decisions are served.
const ForwardAuthPrefix = "/auth/verify"

// Forward-auth request headers, by the proxies that send them.
const (
	hXForwardedMethod = "X-Forwarded-Method" // Traefik, Caddy
	hXForwardedURI    = "X-Forwarded-Uri"
	hXOriginalURL     = "X-Original-Url" // nginx, ingress-nginx
	hXOriginalURI     = "X-Original-Uri"
	hXOriginalMethod  = "X-Original-Method"
)

var errOriginal = errors.New("missing, repeated or malformed original-request headers")

// untrustedWarnEvery rate-limits the log line that tells an operator which
// address to add to trusted_proxies.
const untrustedWarnEvery = 10 * time.Second

// ForwardAuth answers GET /auth/verify and /auth/verify/<path>: the same
// firewall, verification, policy and limits as proxy mode, for the original
// request described by a trusted front proxy (Traefik, Caddy, nginx) or, for
// Envoy ext_authz, by the path after the prefix and the method itself.
// It answers 200 with identity headers, or the same errors as proxy mode.
// Original-request information that is missing, repeated or malformed is 400,
// never 2xx (Authelia's CVE-2021-32637).
func (h *Handler) ForwardAuth(w http.ResponseWriter, r *http.Request) {
	o := h.trust.origin(r)
	in, err := h.originalRequest(r, o.trusted)
	in.Client, in.Authorization, in.Header, in.req = o.client, r.Header[hAuthorization], r.Header, r
	if err != nil {
		d := h.Invalid(&in, err)
		writeDecision(w, &d)
		return
	}
	d := h.Decide(r.Context(), &in)
	if !d.Allowed() {
		writeDecision(w, &d)
		return
	}
	hdr := w.Header()
	setHeaders(hdr, d.Headers())
	if d.Principal != nil {
		h.setIdentity(hdr, d.Principal)
	}
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// originalRequest reads the request a forward-auth call describes and
// validates it as the proxy validates its own requests (parseTarget): the
// same method, host and path rules, so a request refused in proxy mode is
// refused here too.
func (h *Handler) originalRequest(r *http.Request, trusted bool) (Input, error) {
	hdr := r.Header
	fromHeaders := hdr[hXForwardedURI] != nil || hdr[hXOriginalURL] != nil || hdr[hXOriginalURI] != nil ||
		hdr[hXForwardedMethod] != nil || hdr[hXOriginalMethod] != nil
	_, ownPath, ownQuery, err := policy.SplitTarget(r.RequestURI)
	if err != nil {
		return Input{}, err
	}
	suffix, hasSuffix := strings.CutPrefix(ownPath, ForwardAuthPrefix)
	if fromHeaders && !trusted {
		h.warnUntrusted(r.RemoteAddr)
		fromHeaders = false
	}
	if !fromHeaders {
		// Envoy ext_authz (HTTP): the original path follows the prefix and
		// the method is the request's own.
		if !hasSuffix || suffix == "" {
			return Input{}, errOriginal
		}
		return parseTarget(r.Method, r.Host, suffix, ownQuery)
	}
	if suffix != "" {
		return Input{}, errOriginal // headers and a path suffix: two answers
	}
	method, err := single(hdr, hXForwardedMethod, hXOriginalMethod)
	if err != nil || method == "" {
		return Input{}, errOriginal
	}
	uri, err := single(hdr, hXForwardedURI, hXOriginalURL, hXOriginalURI)
	if err != nil || uri == "" {
		return Input{}, errOriginal
	}
	host := r.Host
	hosts := hdr[hXForwardedHost]
	switch len(hosts) {
	case 0:
	case 1:
		host = hosts[0]
	default:
		return Input{}, errOriginal
	}
	authority, rawPath, rawQuery, err := splitOriginal(uri)
	if err != nil {
		return Input{}, err
	}
	if authority != "" {
		// A full URL names its host. When X-Forwarded-Host names another,
		// the two headers describe two requests.
		if len(hosts) == 1 && !sameHost(authority, hosts[0]) {
			return Input{}, errOriginal
		}
		host = authority
	}
	return parseTarget(method, host, rawPath, rawQuery)
}

// sameHost compares two hosts as routes do (case, port, trailing dot).
func sameHost(a, b string) bool {
	ha, err1 := policy.ParseHost(a)
	hb, err2 := policy.ParseHost(b)
	return err1 == nil && err2 == nil && ha == hb
}

// single returns the one value among the named headers; several headers, or
// one header repeated, are an error: two proxies disagreeing is ambiguity.
func single(h http.Header, names ...string) (string, error) {
	var out string
	n := 0
	for _, name := range names {
		vs := h[name]
		n += len(vs)
		if len(vs) == 1 {
			out = vs[0]
		}
	}
	if n > 1 {
		return "", errOriginal
	}
	return out, nil
}

func (h *Handler) warnUntrusted(remote string) {
	now := time.Now().UnixNano()
	last := h.lastUntrustedWarn.Load()
	if now-last < int64(untrustedWarnEvery) || !h.lastUntrustedWarn.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("forward-auth headers from an untrusted peer were ignored; add its address to trusted_proxies if it is your ingress",
		"peer", peerAddr(remote).String())
}

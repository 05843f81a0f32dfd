package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
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

func (h *Handler) originalRequest(r *http.Request, trusted bool) (Input, error) {
	hdr := r.Header
	fromHeaders := hdr[hXForwardedURI] != nil || hdr[hXOriginalURL] != nil || hdr[hXOriginalURI] != nil ||
		hdr[hXForwardedMethod] != nil || hdr[hXOriginalMethod] != nil
	suffix, hasSuffix := strings.CutPrefix(RequestPath(r), ForwardAuthPrefix)
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
		return parseTarget(r.Method, r.Host, suffix, r.URL.RawQuery)
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
	if hosts := hdr[hXForwardedHost]; len(hosts) > 1 {
		return Input{}, errOriginal
	} else if len(hosts) == 1 {
		host = hosts[0]
	}
	if !strings.HasPrefix(uri, "/") {
		// X-Original-URL may be a full URL.
		u, perr := url.Parse(uri)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			return Input{}, errOriginal
		}
		host = u.Host
		uri = u.RequestURI()
		if u.RawQuery == "" && u.ForceQuery {
			uri += "?"
		}
	}
	return ParseTarget(method, host, uri)
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

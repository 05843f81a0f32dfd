package proxy

import (
	"errors"
	"net/http"
	"net/url"
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
	start := time.Now()
	o := h.trust.origin(r)
	t, err := h.originalRequest(r, o.trusted)
	if err != nil {
		h.finish(start, "invalid_request")
		writeError(w, http.StatusBadRequest, codeInvalidRequest, err.Error())
		return
	}
	t.client = o.client
	v, ok := h.check(w, r, &t, start)
	if !ok {
		return
	}
	h.finish(start, "allowed")
	if v.principal != nil {
		h.setIdentity(w.Header(), v.principal)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) originalRequest(r *http.Request, trusted bool) (target, error) {
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
			return target{}, errOriginal
		}
		p, err := policy.CleanPath(suffix)
		if err != nil {
			return target{}, err
		}
		return target{method: r.Method, host: r.Host, path: p, rawQuery: r.URL.RawQuery}, nil
	}
	if suffix != "" {
		return target{}, errOriginal // headers and a path suffix: two answers
	}
	method, err := single(hdr, hXForwardedMethod, hXOriginalMethod)
	if err != nil || method == "" || !validMethod(method) {
		return target{}, errOriginal
	}
	uri, err := single(hdr, hXForwardedURI, hXOriginalURL, hXOriginalURI)
	if err != nil || uri == "" {
		return target{}, errOriginal
	}
	host := r.Host
	if hosts := hdr[hXForwardedHost]; len(hosts) > 1 {
		return target{}, errOriginal
	} else if len(hosts) == 1 {
		host = hosts[0]
	}
	if !strings.HasPrefix(uri, "/") {
		// X-Original-URL may be a full URL.
		u, perr := url.Parse(uri)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			return target{}, errOriginal
		}
		host = u.Host
		uri = u.RequestURI()
		if u.RawQuery == "" && u.ForceQuery {
			uri += "?"
		}
	}
	rawPath, rawQuery, _ := strings.Cut(uri, "?")
	p, err := policy.CleanPath(rawPath)
	if err != nil {
		return target{}, err
	}
	return target{method: method, host: host, path: p, rawQuery: rawQuery}, nil
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

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return len(m) > 0 && len(m) <= 16
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

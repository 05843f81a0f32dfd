// Package proxy is the request pipeline: path firewall → route match →
// token verification → policy → rate limit → forward (or, for forward-auth,
// answer). It also owns the security headers and the one error renderer.
package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/ratelimit"
)

// Options are a Handler's dependencies.
type Options struct {
	Config  *config.Config
	Issuer  *issuer.Issuer
	Table   *policy.Table
	Limiter *ratelimit.Limiter
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// SecurityLog reports security events; nil logs nothing.
	SecurityLog func(r *http.Request, msg string, args ...any)
}

// Handler serves proxied requests (ServeHTTP) and forward-auth decisions
// (ForwardAuth). It is immutable after New and safe for concurrent use.
type Handler struct {
	iss     *issuer.Issuer
	table   *policy.Table
	limiter *ratelimit.Limiter
	metrics *metrics.Metrics
	log     *slog.Logger
	secLog  func(*http.Request, string, ...any)

	trust         *trust
	scrub         *headerScrubber
	sec           *securityHeaders
	identNames    [5]string // canonical: subject, client id, scopes, issuer, token id
	claimNames    []string  // canonical identity_headers.claims names, as the issuer orders them
	allIdentNames []string  // identNames then claimNames
	forwardAuthz  bool
	limits        limits

	rp        *httputil.ReverseProxy // nil: no upstream, proxy paths are 404
	transport *http.Transport

	lastUntrustedWarn atomic.Int64 // unix ns; see warnUntrusted
}

// New builds the handler from a validated configuration.
func New(o Options) (*Handler, error) {
	cfg := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SecurityLog == nil {
		o.SecurityLog = func(*http.Request, string, ...any) {}
	}
	h := &Handler{
		iss: o.Issuer, table: o.Table, limiter: o.Limiter, metrics: o.Metrics, log: o.Logger,
		secLog: o.SecurityLog, trust: &trust{}, sec: newSecurityHeaders(cfg.SecurityHeaders),
		forwardAuthz: cfg.ForwardAuthorization,
	}
	for _, p := range cfg.TrustedProxies {
		pfx, err := config.ParsePrefix(p)
		if err != nil {
			return nil, err
		}
		h.trust.prefixes = append(h.trust.prefixes, pfx)
	}
	ih := cfg.IdentityHeaders
	h.identNames = [5]string{ih.Subject, ih.ClientID, ih.Scopes, ih.Issuer, ih.TokenID}
	for i, n := range h.identNames {
		h.identNames[i] = http.CanonicalHeaderKey(n)
	}
	h.claimNames = o.Issuer.ClaimHeaderNames()
	h.allIdentNames = append(h.identNames[:len(h.identNames):len(h.identNames)], h.claimNames...)
	h.scrub = newHeaderScrubber(h.allIdentNames)
	h.limits = newLimits(cfg, o.Table)
	if cfg.Upstream != nil {
		u, err := url.Parse(cfg.Upstream.URL)
		if err != nil {
			return nil, err
		}
		h.transport = newTransport(cfg.Upstream.Timeout.D())
		h.rp = h.newReverseProxy(u, cfg.Upstream.Timeout.D())
	}
	return h, nil
}

// Close releases idle upstream connections.
func (h *Handler) Close() {
	if h.transport != nil {
		h.transport.CloseIdleConnections()
	}
}

// ServeHTTP runs the pipeline for a request to the protected application.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := h.trust.origin(r)
	h.scrub.scrub(r.Header) // on every outcome, before anything can read them
	in := Input{Method: r.Method, Host: r.Host, RawQuery: r.URL.RawQuery, Client: o.client,
		Authorization: r.Header[hAuthorization], Header: r.Header, req: r}
	if h.rp == nil {
		d := refusal(http.StatusNotFound, codeNotFound, "no route for this path")
		h.finish(time.Now(), d.result())
		writeDecision(w, &d)
		return
	}
	t, err := requestTarget(r)
	if err != nil {
		d := h.Invalid(&in, err)
		writeDecision(w, &d)
		return
	}
	in.Method, in.Host, in.Path, in.RawQuery = t.Method, t.Host, t.Path, t.RawQuery
	d := h.Decide(r.Context(), &in)
	if !d.Allowed() {
		writeDecision(w, &d)
		return
	}
	setHeaders(w.Header(), d.Headers())

	if !h.forwardAuthz {
		delete(r.Header, hAuthorization)
	}
	if d.Principal != nil {
		h.setIdentity(r.Header, d.Principal)
	}
	setClientCert(r.Header, r)
	r.Host = forwardHost(r.Host, in.Host)
	h.setForwarded(r, o)
	limitUpgrade(r)
	r.URL.Path = in.Path.Match
	r.URL.RawPath = ""
	if in.Path.Raw != in.Path.Match {
		r.URL.RawPath = in.Path.Raw
	}
	upstart := time.Now()
	h.rp.ServeHTTP(w, r)
	h.metrics.UpstreamDuration.Observe(time.Since(upstart).Seconds())
}

// RequestPath returns the escaped path exactly as the client sent it (no
// query), which is what routing must look at: r.URL.Path is already decoded,
// and r.URL.EscapedPath may re-encode it. A target that is neither
// origin-form nor absolute-form (such as "*") comes back as sent, for the
// firewall to refuse.
func RequestPath(r *http.Request) string {
	if _, p, _, err := policy.SplitTarget(r.RequestURI); err == nil {
		return p
	}
	return r.RequestURI
}

func (h *Handler) finish(start time.Time, result string) {
	h.metrics.AuthResult(result)
	h.metrics.AuthDuration.Observe(time.Since(start).Seconds())
}

// setIdentity sets the verified identity headers (their incoming copies were
// scrubbed already), claim headers included.
func (h *Handler) setIdentity(hdr http.Header, p *issuer.Principal) {
	var buf [16]Header
	setHeaders(hdr, h.IdentityHeaders(buf[:0], p))
}

// setForwarded records the X-Forwarded-* values the upstream should see:
// a trusted peer's chain is extended, anyone else's is replaced, and an
// untrusted peer's other forwarding headers are dropped (scrubForwarding).
// httputil.ReverseProxy removes the headers a Connection header nominates
// before it calls Rewrite, and Rewrite copies these values afterwards, so a
// client naming X-Forwarded-For in Connection cannot remove ours.
func (h *Handler) setForwarded(r *http.Request, o origin) {
	hdr, trusted := r.Header, o.trusted
	scrubForwarding(hdr, trusted)
	xff := o.peer.String()
	if prior := hdr[hXForwardedFor]; trusted && len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	v := [3]string{xff, proto, r.Host} // one backing array for the three values
	vals := v[:]
	hdr[hXForwardedFor] = vals[0:1:1]
	if !trusted || hdr.Get(hXForwardedProto) == "" {
		hdr[hXForwardedProto] = vals[1:2:2]
	}
	if !trusted || hdr.Get(hXForwardedHost) == "" {
		hdr[hXForwardedHost] = vals[2:3:3]
	}
	delete(hdr, hForwarded)
}

package proxy

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/ratelimit"
)

// limitSpec is one configured limit, compiled: its bucket scope, how to key
// a request, and its constant header values. Immutable.
type limitSpec struct {
	scope   string // bucket namespace: "route:N", "default", "token" or "newtoken"
	name    string // rate_limit_violations_total{route}
	limit   ratelimit.Limit
	keyType string // subject | client_id | client_ip | header
	header  string // for keyType header
	shadow  bool

	policyHeader string // RateLimit-Policy
	limitHeader  string // RateLimit-Limit
	window       string // the policy's window in seconds
}

// limits holds every compiled limit; nil entries mean "no limit".
type limits struct {
	enabled  bool
	def      *limitSpec
	byRoute  []*limitSpec // indexed by route index
	endpoint *limitSpec   // /token, /revoke, /introspect
	newToken *limitSpec   // signature checks of tokens never verified, per client IP
}

func compileLimit(scope, name string, l *config.Limit) *limitSpec {
	if l == nil {
		return nil
	}
	s := &limitSpec{
		scope: scope, name: name, shadow: l.Shadow,
		limit: ratelimit.Limit{Requests: l.Requests, Per: l.Per.D(), Burst: l.Burst},
	}
	s.keyType = l.Key
	if hn, ok := strings.CutPrefix(l.Key, "header:"); ok {
		s.keyType, s.header = "header", http.CanonicalHeaderKey(hn)
	}
	w := max(1, int64(l.Per.D().Seconds()))
	s.window = strconv.FormatInt(w, 10)
	s.limitHeader = strconv.Itoa(l.Requests)
	// draft-ietf-httpapi-ratelimit-headers: quota q per window w seconds.
	s.policyHeader = `"` + scope + `";q=` + s.limitHeader + ";w=" + s.window
	return s
}

func newLimits(cfg *config.Config, t *policy.Table) limits {
	l := limits{enabled: cfg.RateLimit.LimitsEnabled()}
	l.def = compileLimit("default", "default", cfg.RateLimit.Default)
	l.endpoint = compileLimit("token", "/token", cfg.RateLimit.TokenEndpoint)
	l.newToken = compileLimit("newtoken", "new_tokens", cfg.RateLimit.NewTokens)
	for _, r := range t.Routes() {
		l.byRoute = append(l.byRoute, compileLimit("route:"+strconv.Itoa(r.Index), r.Name, r.Limit))
	}
	return l
}

func (l *limits) forRoute(r *policy.Route) *limitSpec {
	if !l.enabled {
		return nil
	}
	if s := l.byRoute[r.Index]; s != nil {
		return s
	}
	return l.def
}

// key picks the bucket key. Requests without a token (or without the named
// header) are keyed by client IP, so anonymous callers share nothing with
// authenticated ones and cannot pick their own bucket.
func (s *limitSpec) key(h HeaderGetter, p *issuer.Principal, client netip.Addr) ratelimit.Key {
	switch s.keyType {
	case "subject":
		if p != nil && p.Subject != "" {
			return ratelimit.Key{Kind: "sub", Value: p.Subject}
		}
	case "client_id":
		if p != nil && p.ClientID != "" {
			return ratelimit.Key{Kind: "cid", Value: p.ClientID}
		}
	case "header":
		if h == nil {
			break
		}
		if v := h.Get(s.header); v != "" {
			return ratelimit.Key{Kind: "hdr", Value: v}
		}
	}
	return ratelimit.Key{Kind: "ip", Value: ipKey(client)}
}

// addHeaders adds the IETF RateLimit-Policy/RateLimit fields and the
// widely used RateLimit-Limit/-Remaining/-Reset to d.
func (s *limitSpec) addHeaders(d *Decision, res ratelimit.Result) {
	reset := retryAfterSeconds(res.ResetAfter.Seconds())
	if res.ResetAfter <= 0 {
		reset = "0"
	}
	remaining := strconv.Itoa(res.Remaining)
	limit := s.limitHeader
	policy := s.policyHeader
	if res.Limit.Requests != s.limit.Requests { // a fallback share applied
		limit = strconv.Itoa(res.Limit.Requests)
		policy = `"` + s.scope + `";q=` + limit + ";w=" + s.window
	}
	d.add(hRateLimitPolicy, policy)
	d.add(hRateLimit, `"`+s.scope+`";r=`+remaining+";t="+reset)
	d.add(hRateLimitLimit, limit)
	d.add(hRateLimitRemain, remaining)
	d.add(hRateLimitReset, reset)
}

// AdmitToken applies the token-endpoint limits before any bcrypt work: one
// bucket per client IP and one per client id, so neither a single address
// nor a distributed guess at one client's secret gets far. It renders the
// 429 itself and returns false when either is exhausted.
func (h *Handler) AdmitToken(w http.ResponseWriter, r *http.Request, clientID string) bool {
	s := h.limits.endpoint
	if !h.limits.enabled || s == nil {
		return true
	}
	client := h.trust.origin(r).client
	keys := [2]ratelimit.Key{{Kind: "ip", Value: ipKey(client)}, {Kind: "cid", Value: clientID}}
	if s.keyType == "client_id" {
		keys[0], keys[1] = keys[1], keys[0]
	}
	for _, key := range keys {
		res, err := h.limiter.Allow(r.Context(), s.scope, key, s.limit)
		if err != nil {
			d := unavailable()
			writeDecision(w, &d)
			return false
		}
		if !res.Allowed {
			h.secLog(r, "token endpoint rate limit exceeded", "remote", client.String(), "client_id", clientID, "shadow", s.shadow)
			if s.shadow {
				h.metrics.RateLimitViolations.WithLabelValues(s.name).Inc()
				continue
			}
			d := h.tooMany(s, res)
			writeDecision(w, &d)
			return false
		}
	}
	return true
}

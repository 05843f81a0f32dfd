package proxy

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/ratelimit"
)

var (
	errDuplicateAuthorization = errors.New("two Authorization headers")
	errEmptyBearer            = errors.New("empty bearer token")
)

// bearer extracts the token from Authorization (RFC 6750 §2.1; the scheme is
// case-insensitive). A header with another scheme counts as no token.
func bearer(values []string) (token string, sent bool, err error) {
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, errDuplicateAuthorization
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false, nil
	}
	token = strings.TrimSpace(rest)
	if token == "" {
		return "", true, errEmptyBearer
	}
	return token, true, nil
}

// check runs match → verify → policy → limit for t. On refusal it writes the
// response, counts it, and returns ok=false.
func (h *Handler) check(w http.ResponseWriter, r *http.Request, t *target, start time.Time) (verdict, bool) {
	route := h.table.Match(t.method, t.host, t.path.Match)
	if route == nil {
		h.finish(start, "not_found")
		writeError(w, http.StatusNotFound, codeNotFound, "no route for this path")
		return verdict{}, false
	}
	v := verdict{route: route}
	if route.Auth != policy.AuthNone {
		token, sent, err := bearer(r.Header[hAuthorization])
		if err == errDuplicateAuthorization || hasQueryToken(t.rawQuery) {
			h.finish(start, "invalid_request")
			writeError(w, http.StatusBadRequest, codeInvalidRequest, "send one bearer token, in the Authorization header only")
			return v, false
		}
		if sent {
			p, verr := h.verify(r, t, token, err)
			if verr != nil {
				// Only here: errors.As makes its target escape, which would
				// cost an allocation on every request.
				var pre *preVerifyLimited
				if errors.As(verr, &pre) {
					h.secLog(r, "signature checks rate limited", "remote", t.client.String(), "route", route.Name)
					h.finish(start, "rate_limited")
					h.tooMany(w, pre.spec, pre.res)
					return v, false
				}
				reason := issuer.Reason(verr)
				h.metrics.AuthFailures.WithLabelValues(reason).Inc()
				h.finish(start, "unauthorized")
				h.secLog(r, "token rejected", "reason", reason, "remote", t.client.String(), "route", route.Name)
				unauthorized(w, true, describe(verr))
				return v, false
			}
			v.principal = p
		}
	}
	var caller policy.Caller
	if v.principal != nil {
		caller = v.principal
	}
	switch outcome, scope := policy.Decide(route, caller); outcome {
	case policy.Unauthenticated:
		h.metrics.AuthFailures.WithLabelValues("missing_token").Inc()
		h.finish(start, "unauthorized")
		unauthorized(w, false, "")
		return v, false
	case policy.Forbidden:
		h.metrics.AuthFailures.WithLabelValues("insufficient_scope").Inc()
		h.finish(start, "forbidden")
		h.secLog(r, "insufficient scope", "sub", v.principal.Subject, "route", route.Name, "required", scope)
		forbidden(w, scope)
		return v, false
	case policy.Denied:
		h.metrics.AuthFailures.WithLabelValues("access_denied").Inc()
		h.finish(start, "forbidden")
		h.secLog(r, "claims requirement not met", "sub", v.principal.Subject, "route", route.Name)
		accessDenied(w)
		return v, false
	}
	if !h.rateLimit(w, r, t, &v, start) {
		return v, false
	}
	return v, true
}

// verify checks the token. A token not seen before costs a signature check,
// so its client IP first pays from rate_limit.new_tokens: a flood of fresh
// or forged tokens is stopped before any crypto (preVerifyLimited).
func (h *Handler) verify(r *http.Request, t *target, token string, parseErr error) (*issuer.Principal, error) {
	if parseErr != nil {
		return nil, issuer.ErrMalformed
	}
	pd, err := h.iss.Check(token)
	if err != nil || pd.Principal != nil {
		return pd.Principal, err
	}
	if spec := h.limits.newToken; h.limits.enabled && spec != nil {
		res, err := h.limiter.Allow(r.Context(), spec.scope, ratelimit.Key{Kind: "ip", Value: ipKey(t.client)}, spec.limit)
		if err == nil && !res.Allowed {
			if !spec.shadow {
				return nil, &preVerifyLimited{res: res, spec: spec}
			}
			h.metrics.RateLimitViolations.WithLabelValues(spec.name).Inc()
		}
	}
	return pd.Finish()
}

// preVerifyLimited refuses a signature check the client IP cannot afford.
type preVerifyLimited struct {
	res  ratelimit.Result
	spec *limitSpec
}

func (e *preVerifyLimited) Error() string { return "too many new tokens from this address" }

// describe maps a verification error to a fixed description: never the
// token's contents, never an internal error string.
func describe(err error) string {
	switch {
	case errors.Is(err, issuer.ErrExpired):
		return "the token is expired"
	case errors.Is(err, issuer.ErrNotYetValid):
		return "the token is not valid yet"
	case errors.Is(err, issuer.ErrRevoked):
		return "the token has been revoked"
	case errors.Is(err, issuer.ErrAudience):
		return "the token is not meant for this service"
	case errors.Is(err, issuer.ErrIssuer):
		return "the token issuer is not trusted"
	case errors.Is(err, issuer.ErrTooLarge):
		return "the token is too large"
	}
	return "the token is invalid"
}

// rateLimit applies the route's limit (or the default). It writes the
// RateLimit headers on every limited response and answers 429 (or 503 under
// on_redis_failure: deny) itself.
func (h *Handler) rateLimit(w http.ResponseWriter, r *http.Request, t *target, v *verdict, start time.Time) bool {
	spec := h.limits.forRoute(v.route)
	if spec == nil {
		return true
	}
	key := spec.key(r.Header, v.principal, t.client)
	res, err := h.limiter.Allow(r.Context(), spec.scope, key, spec.limit)
	if errors.Is(err, ratelimit.ErrUnavailable) {
		h.finish(start, "unavailable")
		w.Header().Set(hRetryAfter, "1")
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "rate limiting is unavailable; retry")
		return false
	}
	if res.Allowed {
		spec.writeHeaders(w.Header(), res)
		return true
	}
	h.secLog(r, "rate limit exceeded", "route", spec.name, "key_type", spec.keyType, "remote", t.client.String(), "shadow", spec.shadow)
	if spec.shadow {
		h.metrics.RateLimitViolations.WithLabelValues(spec.name).Inc()
		spec.writeHeaders(w.Header(), res)
		return true
	}
	h.finish(start, "rate_limited")
	h.tooMany(w, spec, res)
	return false
}

// tooMany is the one 429 answer: counted per limit, with the RateLimit
// headers and Retry-After in whole seconds, rounded up.
func (h *Handler) tooMany(w http.ResponseWriter, spec *limitSpec, res ratelimit.Result) {
	h.metrics.RateLimitViolations.WithLabelValues(spec.name).Inc()
	spec.writeHeaders(w.Header(), res)
	w.Header().Set(hRetryAfter, retryAfterSeconds(res.RetryAfter.Seconds()))
	writeError(w, http.StatusTooManyRequests, codeRateLimited, "too many requests; retry later")
}

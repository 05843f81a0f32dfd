package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/ratelimit"
)

var (
	errDuplicateAuthorization = errors.New("two Authorization headers")
	errEmptyBearer            = errors.New("empty bearer token")
)

// bearer extracts the token from Authorization (RFC 6750 §2.1; the scheme is
// case-insensitive). A header with another scheme counts as no token. Two
// credentials are an error whether they come as two fields or as one field
// holding a comma-separated list (how Envoy forwards repeated headers): the
// front proxy and the upstream could each pick a different one.
func bearer(values []string) (token string, sent bool, err error) {
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, errDuplicateAuthorization
	}
	v := values[0]
	scheme, rest, _ := strings.Cut(v, " ")
	isBearer := strings.EqualFold(scheme, "Bearer")
	if strings.IndexByte(v, ',') >= 0 && (isBearer || twoCredentials(v)) {
		// A bearer token never holds a comma (RFC 6750 §2.1 b64token).
		return "", true, errDuplicateAuthorization
	}
	if !isBearer {
		return "", false, nil
	}
	token = strings.TrimSpace(rest)
	if token == "" {
		return "", true, errEmptyBearer
	}
	return token, true, nil
}

// twoCredentials reports whether a comma-separated Authorization value
// holds a second credentials (RFC 9110 §11.4: auth-scheme [ 1*SP ( token68
// / #auth-param ) ]): after a comma outside a quoted string, an auth-param
// is a token followed by "=", anything else starts another credentials.
func twoCredentials(v string) bool {
	quoted, escaped, elemStart := false, false, -1
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			if elemStart >= 0 && !isAuthParam(v[elemStart:i]) {
				return true
			}
			elemStart = i + 1
		}
	}
	return elemStart >= 0 && !isAuthParam(v[elemStart:])
}

// isAuthParam reports whether a list element is empty (RFC 9110 §5.6.1) or
// an auth-param: token BWS "=" ….
func isAuthParam(elem string) bool {
	elem = strings.TrimLeft(elem, " \t")
	i := 0
	for i < len(elem) && isTokenChar(elem[i]) {
		i++
	}
	if elem == "" {
		return true
	}
	return i > 0 && strings.HasPrefix(strings.TrimLeft(elem[i:], " \t"), "=")
}

// isTokenChar reports RFC 9110 §5.6.2 tchar.
func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// decide runs match → verify → policy → limit for in.
func (h *Handler) decide(ctx context.Context, in *Input) Decision {
	route := h.table.Match(in.Method, in.Host, in.Path.Match)
	if route == nil {
		return refusal(http.StatusNotFound, codeNotFound, "no route for this path")
	}
	var principal *issuer.Principal
	if route.Auth != policy.AuthNone {
		token, sent, err := bearer(in.Authorization)
		if err == errDuplicateAuthorization || hasQueryToken(in.RawQuery) {
			return refusal(http.StatusBadRequest, codeInvalidRequest, "send one bearer token, in the Authorization header only")
		}
		if sent {
			p, verr := h.verify(ctx, in, token, err)
			if verr != nil {
				// Only here: errors.As makes its target escape, which would
				// cost an allocation on every request.
				var pre *preVerifyLimited
				if errors.As(verr, &pre) {
					h.event(in, "signature checks rate limited", "remote", in.Client.String(), "route", route.Name)
					return h.tooMany(pre.spec, pre.res)
				}
				reason := issuer.Reason(verr)
				h.metrics.AuthFailures.WithLabelValues(reason).Inc()
				h.event(in, "token rejected", "reason", reason, "remote", in.Client.String(), "route", route.Name)
				return unauthorized(true, describe(verr))
			}
			principal = p
		}
	}
	var caller policy.Caller
	if principal != nil {
		caller = principal
	}
	switch outcome, scope := policy.Decide(route, caller); outcome {
	case policy.Unauthenticated:
		h.metrics.AuthFailures.WithLabelValues("missing_token").Inc()
		return unauthorized(false, "")
	case policy.Forbidden:
		h.metrics.AuthFailures.WithLabelValues("insufficient_scope").Inc()
		h.event(in, "insufficient scope", "sub", principal.Subject, "route", route.Name, "required", scope)
		return forbidden(scope)
	case policy.Denied:
		// Claims belong to the identity, not to what a client may ask for:
		// 403 access_denied without an insufficient_scope challenge.
		h.metrics.AuthFailures.WithLabelValues("access_denied").Inc()
		h.event(in, "claims requirement not met", "sub", principal.Subject, "route", route.Name)
		return accessDenied()
	}
	d := Decision{Status: http.StatusOK, Route: route, Principal: principal}
	h.rateLimit(ctx, in, &d)
	return d
}

// verify checks the token. A token never verified costs a signature check,
// so its client IP first pays from rate_limit.new_tokens: a flood of fresh
// or forged tokens is stopped before any crypto (preVerifyLimited).
func (h *Handler) verify(ctx context.Context, in *Input, token string, parseErr error) (*issuer.Principal, error) {
	if parseErr != nil {
		return nil, issuer.ErrMalformed
	}
	pd, err := h.iss.Check(token)
	if err != nil || pd.Principal != nil {
		return pd.Principal, err
	}
	if spec := h.limits.newToken; h.limits.enabled && spec != nil && !pd.VerifiedBefore() {
		res, err := h.limiter.Allow(ctx, spec.scope, ratelimit.Key{Kind: "ip", Value: ipKey(in.Client)}, spec.limit)
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

// rateLimit applies the route's limit (or the default) to an allowed
// decision: it adds the RateLimit headers, or turns d into the 429 (or the
// 503 of on_redis_failure: deny).
func (h *Handler) rateLimit(ctx context.Context, in *Input, d *Decision) {
	spec := h.limits.forRoute(d.Route)
	if spec == nil {
		return
	}
	key := spec.key(in.Header, d.Principal, in.Client)
	res, err := h.limiter.Allow(ctx, spec.scope, key, spec.limit)
	if errors.Is(err, ratelimit.ErrUnavailable) {
		*d = unavailable()
		return
	}
	if res.Allowed {
		spec.addHeaders(d, res)
		return
	}
	h.event(in, "rate limit exceeded", "route", spec.name, "key_type", spec.keyType, "remote", in.Client.String(), "shadow", spec.shadow)
	if spec.shadow {
		h.metrics.RateLimitViolations.WithLabelValues(spec.name).Inc()
		spec.addHeaders(d, res)
		return
	}
	*d = h.tooMany(spec, res)
}

// tooMany is the one 429 decision: counted per limit, with the RateLimit
// headers and Retry-After in whole seconds, rounded up.
func (h *Handler) tooMany(spec *limitSpec, res ratelimit.Result) Decision {
	h.metrics.RateLimitViolations.WithLabelValues(spec.name).Inc()
	d := refusal(http.StatusTooManyRequests, codeRateLimited, "too many requests; retry later")
	spec.addHeaders(&d, res)
	d.add(hRetryAfter, retryAfterSeconds(res.RetryAfter.Seconds()))
	return d
}

// unavailable is the 503 of a rate limit that cannot be decided
// (on_redis_failure: deny).
func unavailable() Decision {
	d := refusal(http.StatusServiceUnavailable, codeUnavailable, "rate limiting is unavailable; retry")
	d.add(hRetryAfter, "1")
	return d
}

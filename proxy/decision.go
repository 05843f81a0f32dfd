package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/policy"
)

// Header is one header field a Decision asks its front door to send.
type Header struct {
	Name, Value string
}

// maxDecisionHeaders bounds the response header fields one decision
// carries: Content-Type and Cache-Control of an error body,
// WWW-Authenticate, Retry-After and the five RateLimit fields. A fixed array
// keeps a Decision a plain value that costs no allocation.
const maxDecisionHeaders = 10

// HeaderGetter looks up a request header by its canonical name; http.Header
// is one. Front doors whose headers arrive in another shape (Envoy's
// lower-cased map) supply their own.
type HeaderGetter interface {
	Get(name string) string
}

// Input is the request a front door asks about: the proxied request itself,
// the original request a forward-auth call describes, or the request inside
// an Envoy CheckRequest. Its method and path have passed ParseTarget (or,
// in proxy mode, the path firewall).
type Input struct {
	Method   string
	Host     string
	Path     policy.Path
	RawQuery string
	// Client is the client's address from the trusted-proxy view; it keys
	// rate limits and is logged.
	Client netip.Addr
	// Authorization holds every Authorization value the request carries,
	// one element per header field.
	Authorization []string
	// Header serves header:<name> rate-limit keys; nil means none.
	Header HeaderGetter
	// RequestID labels security log lines when the front door is not HTTP.
	RequestID string

	req *http.Request // the HTTP request, for security log lines
}

// ParseTarget validates a method and an origin-form request target (the
// escaped path with its query, exactly as sent) and returns them as an
// Input. It is the one place where a front door's description of a request
// is checked (policy.ParseTarget: method, host, path firewall, query), so
// every front door refuses the same requests; its errors' texts are written
// for the client (targetProblem).
func ParseTarget(method, host, requestTarget string) (Input, error) {
	authority, rawPath, rawQuery, err := policy.SplitTarget(requestTarget)
	if err != nil {
		return Input{}, err
	}
	if authority != "" {
		return Input{}, policy.ErrTarget // a front door describes origin-form targets
	}
	return parseTarget(method, host, rawPath, rawQuery)
}

// parseTarget is ParseTarget for a target already split at its first "?".
func parseTarget(method, host, rawPath, rawQuery string) (Input, error) {
	pt, err := policy.ParseTarget(method, host, rawPath, rawQuery)
	if err != nil {
		return Input{}, err
	}
	return Input{Method: pt.Method, Host: pt.Host, Path: pt.Path, RawQuery: pt.RawQuery}, nil
}

// Decision is the engine's verdict on one Input: allowed (Status 200, with
// the route, the principal when a token was verified, and the RateLimit
// response headers) or refused (an HTTP status, an error code and
// description, and the response headers that go with them). Front doors
// only render it. It is a plain value; the zero Decision is not valid.
type Decision struct {
	// Status is 200 when allowed, else the HTTP status of the refusal.
	Status int
	// Code and Description are the refusal's JSON error body; both are
	// fixed strings, never request contents or internal errors.
	Code        string
	Description string
	// Route is the matched route; nil when none matched.
	Route *policy.Route
	// Principal is the verified token's identity; nil for anonymous requests.
	Principal *issuer.Principal

	headers [maxDecisionHeaders]Header
	n       uint8
}

// Allowed reports whether the request may proceed.
func (d *Decision) Allowed() bool { return d.Status == http.StatusOK }

// Headers returns the response header fields to send: on a refusal, with
// its body; when allowed, the RateLimit fields for the eventual response.
func (d *Decision) Headers() []Header { return d.headers[:d.n] }

// Body returns the JSON error body of a refusal ({"error":…,
// "error_description":…} and a newline); nil when allowed.
func (d *Decision) Body() []byte {
	if d.Allowed() {
		return nil
	}
	return errorJSON(d.Code, d.Description)
}

func (d *Decision) add(name, value string) {
	if int(d.n) < len(d.headers) {
		d.headers[d.n] = Header{name, value}
		d.n++
	}
}

// refusal starts a refused decision with its JSON body's header fields.
func refusal(status int, code, desc string) Decision {
	d := Decision{Status: status, Code: code, Description: desc}
	d.add("Content-Type", "application/json")
	d.add("Cache-Control", "no-store")
	return d
}

// result is the auth_requests_total label of a decision: a closed set
// derived from the status, so a new kind of refusal needs no new label.
func (d *Decision) result() string {
	switch d.Status {
	case http.StatusOK:
		return "allowed"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "invalid_request"
}

// Decide runs the pipeline (route match, token verification, policy, rate
// limit) for a validated Input and returns the verdict. Its side effects
// (metrics, security log lines, rate-limit charges) happen here, once, for
// every front door.
func (h *Handler) Decide(ctx context.Context, in *Input) Decision {
	start := time.Now()
	d := h.decide(ctx, in)
	h.finish(start, d.result())
	return d
}

// Invalid is the decision for a request whose description did not pass
// ParseTarget (or the front door's own checks): 400 invalid_request, with
// err's text as the description. Refusals by the path or method firewall
// are security events.
func (h *Handler) Invalid(in *Input, err error) Decision {
	msg := err.Error()
	if err != errOriginal {
		msg = targetProblem(err)
		h.event(in, "request target refused", "remote", in.Client.String(), "reason", err.Error())
	}
	d := refusal(http.StatusBadRequest, codeInvalidRequest, msg)
	h.finish(time.Now(), d.result())
	return d
}

// event writes a security log line about in.
func (h *Handler) event(in *Input, msg string, args ...any) {
	r := in.req
	if r == nil {
		// Not an HTTP front door: the logger reads the request id from
		// a request's header, so give it one (refusals only, never the
		// allowed path).
		r = &http.Request{Header: http.Header{hRequestID: {in.RequestID}}}
	}
	h.secLog(r, msg, args...)
}

// writeDecision renders a refusal as an HTTP response. It is the one
// renderer of Portcullis's own error responses.
func writeDecision(w http.ResponseWriter, d *Decision) {
	setHeaders(w.Header(), d.Headers())
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.Body())
}

// setHeaders replaces the named fields of h. The values share one backing
// array: this runs on every rate-limited request.
func setHeaders(h http.Header, fields []Header) {
	if len(fields) == 0 {
		return
	}
	vals := make([]string, len(fields))
	for i, f := range fields {
		vals[i] = f.Value
		h[f.Name] = vals[i : i+1 : i+1]
	}
}

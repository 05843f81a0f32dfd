package extauthz

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/portcullis/portcullis/proxy"
)

var (
	errNoHTTP = errors.New("the check request describes no HTTP request (attributes.request.http)")
	// errTwoQueries: Envoy puts the query inside path and leaves query
	// empty; a request with both could be read two ways.
	errTwoQueries = errors.New("the query is sent both in path and in query")
)

const (
	hAuthorization = "authorization"
	hRequestID     = "x-request-id"
	// maxRequestIDLen bounds a request id copied into log lines.
	maxRequestIDLen = 128
)

// Check decides the request a CheckRequest describes, as /auth/verify
// would: method, host and path (the raw request target, query included)
// from attributes.request.http, the token from its authorization header,
// and the client address from attributes.source (the caller is the trusted
// proxy; an x-forwarded-for inside the request is never read). A refusal is
// a CheckResponse whose status is the matching gRPC code and whose
// DeniedHttpResponse carries the HTTP answer; Check itself fails only when
// ctx does.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	h := s.engine()
	hr := req.GetAttributes().GetRequest().GetHttp()
	hdrs := requestHeaders(hr)
	in, err := target(hr)
	in.Client = sourceAddr(ctx, req)
	in.Header = hdrs
	in.RequestID = requestID(hr, hdrs)
	in.Authorization = hdrs.all(hAuthorization)
	var d proxy.Decision
	if err != nil {
		d = h.Invalid(&in, err)
	} else {
		d = h.Decide(ctx, &in)
	}
	s.metrics.ObserveHTTP(d.Status, hr.GetMethod(), time.Since(start).Seconds())
	if err := ctx.Err(); err != nil {
		return nil, err // Envoy has given up; its failure_mode_allow decides
	}
	if d.Allowed() {
		return s.allowed(h, &d, hdrs), nil
	}
	return s.denied(h, &d), nil
}

// target reads the request line. Envoy sends the raw request target, query
// included, in path (and leaves query and fragment empty).
func target(hr *authv3.AttributeContext_HttpRequest) (proxy.Input, error) {
	if hr == nil {
		return proxy.Input{}, errNoHTTP
	}
	path := hr.GetPath()
	if q := hr.GetQuery(); q != "" {
		if strings.IndexByte(path, '?') >= 0 {
			return proxy.Input{}, errTwoQueries
		}
		path += "?" + q
	}
	if hr.GetFragment() != "" {
		path += "#" + hr.GetFragment() // refused by ParseTarget, as in forward-auth
	}
	return proxy.ParseTarget(hr.GetMethod(), hr.GetHost(), path)
}

// sourceAddr is the downstream client's address as Envoy saw it, without
// port or zone, an IPv4-mapped address as IPv4. Without one (a pipe), the
// caller's own address keys rate limits: a stable key, never a header.
func sourceAddr(ctx context.Context, req *authv3.CheckRequest) netip.Addr {
	if a, err := netip.ParseAddr(req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress()); err == nil {
		return a.WithZone("").Unmap()
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			return ap.Addr().WithZone("").Unmap()
		}
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			if a, err := netip.ParseAddr(host); err == nil {
				return a.WithZone("").Unmap()
			}
		}
	}
	return netip.Addr{}
}

// requestID is Envoy's request id, for log lines; a value that is too long
// or not printable ASCII is dropped rather than logged.
func requestID(hr *authv3.AttributeContext_HttpRequest, hdrs headers) string {
	id := hr.GetId()
	if id == "" {
		id = hdrs.get(hRequestID)
	}
	if len(id) > maxRequestIDLen {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}

// headerAction: identity headers replace whatever the request carried.
var headerAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD

// headerOption is one rendered header field: the option and the value it
// points at, allocated together.
type headerOption struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

// options renders header fields as Envoy header options, names lower-cased
// as Envoy writes them; two allocations for the whole list.
func (s *Server) options(fields []proxy.Header) []*corev3.HeaderValueOption {
	if len(fields) == 0 {
		return nil
	}
	return s.renderOptions(make([]headerOption, len(fields)), make([]*corev3.HeaderValueOption, len(fields)), fields)
}

// renderOptions fills out (len(fields) long) from backing (as long).
func (s *Server) renderOptions(backing []headerOption, out []*corev3.HeaderValueOption, fields []proxy.Header) []*corev3.HeaderValueOption {
	for i, f := range fields {
		b := &backing[i]
		b.val.Key, b.val.Value = s.lower(f.Name), f.Value
		b.opt.Header, b.opt.AppendAction = &b.val, headerAction
		out[i] = &b.opt
	}
	return out
}

// lower returns name in lower case. Names come from configuration and
// constants (a small closed set), so each is lowered once.
func (s *Server) lower(name string) string {
	if isLower(name) {
		return name
	}
	if v, ok := s.lowered.Load(name); ok {
		return v.(string)
	}
	l := strings.ToLower(name)
	s.lowered.Store(name, l)
	return l
}

// isLower reports whether name has no upper-case ASCII letter (header
// names are ASCII tokens; anything else takes the strings.ToLower path).
func isLower(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			return false
		}
	}
	return true
}

// okAnswer is an allowed CheckResponse with every message it points at,
// allocated at once: the response is built on every allowed Check.
type okAnswer struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	wrap   authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	remove [8]string // HeadersToRemove's first backing array
}

// allowed renders an allowed decision. Envoy applies headers first, then
// headers_to_remove, so the removals never name a header that is set: every
// identity header name left unset, every other header the proxy would
// scrub that the request carries (any x-auth-*, CGI spellings such as
// x_auth_subject, forward-auth and method-override headers), and
// authorization unless forward_authorization.
func (s *Server) allowed(h *proxy.Handler, d *proxy.Decision, hdrs headers) *authv3.CheckResponse {
	var buf [16]proxy.Header
	fields := h.IdentityHeaders(buf[:0], d.Principal)
	nIDs := len(fields)
	fields = append(fields, d.Headers()...)
	a := &okAnswer{}
	ok := &a.ok
	if len(fields) > 0 {
		// One backing array and one pointer slice for both lists.
		out := s.renderOptions(make([]headerOption, len(fields)), make([]*corev3.HeaderValueOption, len(fields)), fields)
		if nIDs > 0 {
			ok.Headers = out[:nIDs:nIDs]
		}
		if len(fields) > nIDs {
			ok.ResponseHeadersToAdd = out[nIDs:]
		}
	}
	ids := ok.Headers // their keys are the lower-cased names set
	isSet := func(name string) bool {
		return slices.ContainsFunc(ids, func(o *corev3.HeaderValueOption) bool { return o.Header.Key == name })
	}
	ok.HeadersToRemove = a.remove[:0]
	remove := func(name string) {
		if !isSet(name) && !slices.Contains(ok.HeadersToRemove, name) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, name)
		}
	}
	for _, n := range h.IdentityHeaderNames() {
		remove(s.lower(n))
	}
	var carriedBuf [4]string
	carried := carriedBuf[:0]
	for name := range hdrs.m {
		if h.Scrubbed(name) {
			carried = append(carried, strings.ToLower(name))
		}
	}
	slices.Sort(carried) // map order is random; answers should not be
	for _, n := range carried {
		remove(n)
	}
	if !h.ForwardAuthorization() {
		remove(hAuthorization)
	}
	a.status.Code = int32(codes.OK)
	a.wrap.OkResponse = ok
	a.resp.Status, a.resp.HttpResponse = &a.status, &a.wrap
	return &a.resp
}

// denied renders a refusal: the gRPC code for its status, and the HTTP
// answer Envoy sends the client, the same status, body and headers as
// proxy mode (security headers included).
func (s *Server) denied(h *proxy.Handler, d *proxy.Decision) *authv3.CheckResponse {
	fields := h.SecurityHeaderFields(make([]proxy.Header, 0, 16))
	// The decision's own fields win over a security header of the same name.
	fields = slices.DeleteFunc(fields, func(f proxy.Header) bool {
		return slices.ContainsFunc(d.Headers(), func(g proxy.Header) bool { return strings.EqualFold(f.Name, g.Name) })
	})
	fields = append(fields, d.Headers()...)
	dr := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Headers: s.options(fields),
		Body:    string(d.Body()),
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(Code(d.Status)), Message: d.Code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr},
	}
}

// Code maps a refusal's HTTP status to the gRPC status code of its
// CheckResponse. Envoy denies on any code but OK; the code tells logs and
// other gRPC clients why. An unlisted refusal is PERMISSION_DENIED.
func Code(httpStatus int) codes.Code {
	switch httpStatus {
	case 200:
		return codes.OK
	case 400, 431:
		return codes.InvalidArgument
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.NotFound
	case 429:
		return codes.ResourceExhausted
	case 503:
		return codes.Unavailable
	}
	return codes.PermissionDenied
}

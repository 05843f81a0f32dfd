package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Transport sizing for the sidecar case: one upstream, many concurrent
// requests. Go's default keeps 2 idle connections per host, which under
// load means a new TCP connection per request (it halved throughput in the
// benchmark); we keep enough for the concurrency we expect.
const (
	maxIdleConnsPerHost = 512
	idleConnTimeout     = 90 * time.Second
	dialTimeout         = 5 * time.Second
)

func newTransport(responseTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never route upstream traffic via HTTP_PROXY
		DialContext:           d.DialContext,
		MaxIdleConns:          maxIdleConnsPerHost,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ResponseHeaderTimeout: responseTimeout,
		DisableCompression:    true, // pass bodies through as the upstream sent them
		ForceAttemptHTTP2:     false,
	}
}

// newReverseProxy builds the forwarder. The request has been checked and its
// path set by ServeHTTP; Rewrite only points it at the upstream and copies the
// X-Forwarded-* values computed from the trusted-proxy view (Rewrite mode
// drops the client's own before we decide what to trust).
func (h *Handler) newReverseProxy(target *url.URL, timeout time.Duration) *httputil.ReverseProxy {
	base := strings.TrimSuffix(target.Path, "/")
	baseRaw := strings.TrimSuffix(target.EscapedPath(), "/")
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			out, in := pr.Out, pr.In
			out.URL.Scheme = target.Scheme
			out.URL.Host = target.Host
			if base != "" {
				out.URL.Path = base + in.URL.Path
				if in.URL.RawPath != "" {
					out.URL.RawPath = baseRaw + in.URL.RawPath
				}
			}
			for _, k := range []string{hXForwardedFor, hXForwardedHost, hXForwardedProto} {
				if v := in.Header[k]; v != nil {
					out.Header[k] = v
				}
			}
			// The client's "Expect: 100-continue" is answered here (net/http
			// sends 100 Continue when the body is first read), not passed on,
			// as nginx and Envoy do: Go's transport starts sending the body
			// before it relays the upstream's own 100, so a client could get
			// two, and another server would disagree with us on when the body
			// may come.
			delete(out.Header, "Expect") // canonical already: no per-request canonicalising
		},
		Transport: h.transport,
		ModifyResponse: func(resp *http.Response) error {
			h.sec.fromUpstream(resp.Header)
			return nil
		},
		ErrorHandler: h.upstreamError,
		BufferPool:   newBufferPool(),
	}
}

// copyBufferSize matches httputil's own default.
const copyBufferSize = 32 << 10

// bufferPool reuses response copy buffers. Without one, ReverseProxy makes
// a fresh 32 KiB buffer per response; under load that was three quarters
// of all bytes allocated and drove most of the GC work.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}}
}

// Get returns a buffer of copyBufferSize bytes.
func (bp *bufferPool) Get() []byte { return *(bp.p.Get().(*[]byte)) }

// Put returns a buffer for reuse.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= copyBufferSize {
		b = b[:copyBufferSize]
		bp.p.Put(&b)
	}
}

// upstreamError maps forwarding failures in one place: a timeout is 504,
// anything else 502; neither reveals the upstream's address.
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody reads the answer
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		h.log.Warn("upstream timed out", "request_id", r.Header.Get(hRequestID), "path", r.URL.Path, "error", err)
		writeError(w, http.StatusGatewayTimeout, codeGatewayTimeout, "the application did not answer in time")
		return
	}
	h.log.Warn("upstream failed", "request_id", r.Header.Get(hRequestID), "path", r.URL.Path, "error", err)
	writeError(w, http.StatusBadGateway, codeBadGateway, "the application is unavailable")
}

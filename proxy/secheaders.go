package proxy

import (
	"bufio"
	"net"
	"net/http"
)

// securityHeaders sets the configured response headers on every response.
// Immutable; safe for concurrent use.
type securityHeaders struct {
	set    []secHeader // configured with a value
	remove []string    // configured "": removed, the upstream's too
	all    []string    // every configured name, to drop the upstream's copy
}

type secHeader struct {
	name string
	// val is shared by every response: a one-element slice whose capacity
	// is its length, so an Add elsewhere copies instead of writing into it.
	// Setting it allocates nothing per request.
	val []string
}

func newSecurityHeaders(cfg map[string]string) *securityHeaders {
	s := &securityHeaders{}
	for name, v := range cfg {
		cn := http.CanonicalHeaderKey(name)
		s.all = append(s.all, cn)
		if v == "" {
			s.remove = append(s.remove, cn)
		} else {
			s.set = append(s.set, secHeader{name: cn, val: []string{v}[:1:1]})
		}
	}
	return s
}

// apply replaces whatever values h holds for the configured names.
func (s *securityHeaders) apply(h http.Header) {
	for _, kv := range s.set {
		h[kv.name] = kv.val
	}
	for _, n := range s.remove {
		delete(h, n)
	}
}

// fromUpstream removes the upstream's values of every configured header, so
// ours replace them (and configured removals remove them).
func (s *securityHeaders) fromUpstream(h http.Header) {
	for _, n := range s.all {
		delete(h, n)
	}
}

// ApplySecurityHeaders sets the configured security headers on hdr,
// replacing any value there and removing those configured as "". Call it
// just before a final (non-1xx) response header is written: anything that
// rewrites the header map earlier (the reverse proxy clears it after
// relaying a 1xx) cannot lose them then. It allocates nothing.
func (h *Handler) ApplySecurityHeaders(hdr http.Header) { h.sec.apply(hdr) }

// SecurityHeaders wraps next so every final response carries the
// configured security headers, whatever next does to the header map before.
func (h *Handler) SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&secWriter{ResponseWriter: w, sec: h.sec}, r)
	})
}

// secWriter applies the security headers when the final response header
// goes out: at WriteHeader of a non-1xx status, at the first Write or
// Flush, or when the connection is hijacked (a 101 written by hand).
// Unwrap lets http.ResponseController reach deadlines and full duplex.
type secWriter struct {
	http.ResponseWriter
	sec  *securityHeaders
	done bool
}

func (w *secWriter) final() {
	if !w.done {
		w.done = true
		w.sec.apply(w.ResponseWriter.Header())
	}
}

func (w *secWriter) WriteHeader(code int) {
	// 1xx interim responses (RFC 9110 §15.2) are not final; 101 is, for
	// this connection.
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.final()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *secWriter) Write(b []byte) (int, error) {
	w.final()
	return w.ResponseWriter.Write(b)
}

// FlushError flushes, writing the header first if nothing has been.
func (w *secWriter) FlushError() error {
	w.final()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher for handlers that assert it.
func (w *secWriter) Flush() { _ = w.FlushError() }

// Hijack hands over the connection; the header map is what a hand-written
// 101 response will carry, so it gets the headers first.
func (w *secWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.final()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *secWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

package server

import (
	"net"
	"net/http"

	"github.com/portcullis/portcullis/proxy"
)

// edge answers what is decided at the connection's edge, before any route:
// a request the connection guard refused, OPTIONS * (net/http's built-in
// answer would lack our headers), and HTTP/2 requests whose headers are
// over the limit HTTP/1.x requests meet in the guard. Everything else goes
// to next.
func (s *Server) edge(px *proxy.Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == refusedMethod:
			// The guard's stand-in for a refused request, or (HTTP/2, no
			// guard) a client using the reserved method: refused either way.
			ref := refuseReserved
			if st := connStateFrom(r.Context()); st != nil {
				if got, ok := st.refusal(); ok {
					ref = got
				}
			}
			px.Refuse(w, r, ref.status, ref.reason)
			return
		case r.RequestURI == "*" && r.Method == http.MethodOptions:
			// RFC 9110 §9.3.7: OPTIONS * asks about the server itself; it
			// names no resource, so nothing is forwarded.
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		case r.ProtoMajor >= 2 && headerBytes(r) > maxHeadBytes:
			px.Refuse(w, r, refuseTooLarge.status, refuseTooLarge.reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes is the size of r's head as HTTP/1.1 would spell it.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Host) + 20
	for k, vv := range r.Header {
		for _, v := range vv {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// edgeListener is how the main listener's connections arrive: with tls,
// through our own handshake (HTTP/2 to net/http, HTTP/1.1 behind the
// framing guard); without, each behind the framing guard.
func (s *Server) edgeListener(ln net.Listener) net.Listener {
	if s.certs != nil {
		return newTLSListener(ln, s.certs.serverConfig(), s.log)
	}
	return newGuardListener(ln)
}

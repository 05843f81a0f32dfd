package proxy

import (
	"net/http"
	"time"
)

// Refuse answers a request that the connection layer refused before any
// decision (ambiguous framing, oversized headers, an HTTP/2 preface): the
// one error renderer, a security event, and Connection: close — nothing
// after such a request on its connection is trusted (RFC 9112 §6.3 ¶3).
// desc is a fixed text chosen by the caller, never request data.
func (h *Handler) Refuse(w http.ResponseWriter, r *http.Request, status int, desc string) {
	start := time.Now()
	h.secLog(r, "request refused at the connection", "status", status, "reason", desc, "remote", r.RemoteAddr)
	h.finish(start, "invalid_request")
	w.Header().Set(hConnection, "close")
	writeError(w, status, codeInvalidRequest, desc)
}

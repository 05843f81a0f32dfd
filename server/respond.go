package server

import (
	"bufio"
	"net"
	"net/http"
)

// statusWriter records the final status code and completes the final
// response's header just before it is written: the request id and the
// security headers are set again then, because the reverse proxy clears the
// header map after relaying a 1xx interim response. Unwrap lets
// http.ResponseController reach deadlines and full duplex; Flush and
// Hijack are its own so neither can skip the final header.
type statusWriter struct {
	http.ResponseWriter
	code  int
	final func(http.Header) // nil: nothing to add
	id    []string          // the request id, shared with the request
	req   *http.Request
}

// finish runs once, before the first final header goes out.
func (w *statusWriter) finish(code int) {
	if w.code != 0 {
		return
	}
	w.code = code
	h := w.ResponseWriter.Header()
	if w.id != nil {
		h[HeaderRequestID] = w.id
	}
	if w.final != nil {
		w.final(h)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx responses other than 101 are interim (RFC 9110 §15.2): the final
	// one is still to come, and it is what gets counted and completed.
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.finish(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.finish(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// FlushError writes the header (200 unless one was written) and flushes.
func (w *statusWriter) FlushError() error {
	w.finish(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() { _ = w.FlushError() }

// Hijack hands the connection to the handler (a WebSocket after 101, whose
// response the reverse proxy writes by hand from this header map). The
// connection's guard stops reading HTTP requests from it from then on.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.finish(http.StatusSwitchingProtocols)
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		markHijacked(w.req)
	}
	return c, brw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

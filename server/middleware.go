package server

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/metrics"
)

// HeaderRequestID carries the request id to the upstream and back.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLen bounds a caller-supplied id so it cannot bloat logs.
const maxRequestIDLen = 128

// instrument counts responses in http_requests_total and times them, keeps
// or assigns a request id, and turns a panic into a 500 (logged, not echoed).
// route is called once per request and names the handler and the final
// step (may be nil) that edits the header of the final response just
// before it is written (the security headers): both come from the running
// configuration, loaded once so a request finishes under the one it started
// with.
func instrument(m *metrics.Metrics, log *slog.Logger, route func() (final func(http.Header), next http.Handler)) http.Handler {
	ids := newRequestIDs()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		final, next := route()
		id := r.Header[HeaderRequestID]
		if len(id) != 1 || !validRequestID(id[0]) {
			id = []string{ids.next()}
			r.Header[HeaderRequestID] = id
		}
		// The request and response share the one-element slice: neither
		// side appends in place (a copy's append reallocates).
		w.Header()[HeaderRequestID] = id
		sw := &statusWriter{ResponseWriter: w, final: final, id: id, req: r}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p) // the proxy's way to abort a response; let net/http handle it
				}
				log.Error("handler panicked", "request_id", id[0], "panic", p)
				if sw.code == 0 {
					sw.Header().Set("Content-Type", "application/json")
					sw.WriteHeader(http.StatusInternalServerError)
					_, _ = sw.Write([]byte(`{"error":"server_error"}` + "\n"))
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			m.ObserveHTTP(code, r.Method, time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// requestIDs makes unique ids as a random per-process prefix and a counter:
// unique across replicas and restarts without a random read per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var buf [32]byte
	out := append(buf[:0], g.prefix...)
	out = strconv.AppendUint(out, g.n.Add(1), 36)
	return string(out)
}

package server

import (
	"context"
	"net/http"
	"time"
)

// readyWait bounds how long a request that arrives before the replica is
// ready waits for it. Readiness normally comes within a second or two (the
// first heartbeat, the revocation stream read in full); past this the
// request gets 503 with Retry-After rather than an answer made without
// the revocations it should know.
const readyWait = 10 * time.Second

// backendsReady reports whether the shared state this replica decides
// with has been loaded: the live replica count (so a local share is never
// computed as if alone while others are live) and every revocation
// already recorded (so a revoked token is refused from the first
// request). A Redis judged down counts as loaded: the replica then starts
// alone and degraded, with the revocations it has, and catches up when
// Redis returns.
func (s *Server) backendsReady() bool {
	if s.redis == nil {
		return true
	}
	return s.limiter.Ready() && (s.revocations.Synced() || s.limiter.Degraded())
}

// awaitReady holds requests that arrive before backendsReady (a load
// balancer without readiness checks sends them as soon as the port
// accepts) until it holds, instead of deciding them on half-loaded state.
// Once ready, it costs one atomic load per request. Probes (bypass) are
// never held: they must be able to say "not ready".
func (s *Server) awaitReady(next http.Handler, bypass func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.loaded.Load() && !bypass(r) && !s.waitLoaded(r.Context()) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"starting up"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// waitLoaded polls backendsReady until it holds, the request ends or
// readyWait passes. Only requests in a replica's first moments get here.
func (s *Server) waitLoaded(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.backendsReady() {
			s.loaded.Store(true)
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

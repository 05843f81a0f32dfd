package server

import (
	"context"
	"net/http"
	"sync"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
)

// runtime is everything one configuration compiles into: the route table,
// the issuer (keys, clients, trusted issuers), the proxy pipeline (limits,
// security and identity headers) and the handlers that route to them.
// It is immutable once built and safe for concurrent use. A reload builds a
// complete new runtime and swaps Server.rt; a request loads the pointer
// once and uses that runtime until it answers, so a request in flight
// finishes under the configuration it started with.
type runtime struct {
	cfg    *config.Config
	issuer *issuer.Issuer
	proxy  *proxy.Handler

	main  http.Handler      // edge + own endpoints + proxy
	final func(http.Header) // sets the security headers on the final response
	admin http.Handler      // security headers + /metrics, /health*, /admin/*

	// cancel stops this runtime's background work (trusted issuers' JWKS
	// refresh); set by start, called by stop.
	mu       sync.Mutex
	ctx      context.Context // nil until started
	cancel   context.CancelFunc
	stopped  bool
	stopOnce sync.Once
}

// current returns the running configuration, compiled. Every front door
// (the HTTP listeners, a gRPC listener) loads it once per request.
func (s *Server) current() *runtime { return s.rt.Load() }

// build compiles cfg into a runtime without touching the running one. prev
// is the runtime it will replace (nil at startup): the development key
// generated when no key is configured is kept, so a reload does not
// invalidate every token minted so far, and trusted issuers' key sets
// already fetched carry over.
func (s *Server) build(cfg *config.Config, prev *runtime) (*runtime, []string, error) {
	table, warnings, err := policy.Compile(cfg.Routes)
	if err != nil {
		return nil, warnings, err
	}
	log := s.log
	secLog := func(r *http.Request, msg string, args ...any) {}
	if cfg.Log.ShouldSecurityLog() {
		secLog = func(r *http.Request, msg string, args ...any) {
			if !s.events.Admit(msg) {
				return
			}
			log.Warn(msg, append([]any{"security_event", true, "request_id", r.Header.Get(HeaderRequestID)}, args...)...)
		}
	}
	var ephemeral *issuer.Key
	if prev != nil {
		ephemeral = prev.issuer.Ephemeral()
	}
	var px *proxy.Handler
	iss, err := issuer.New(issuer.Options{
		Config: cfg, Logger: log, Metrics: s.metrics, Revocations: s.revocations, SecurityLog: secLog,
		AdmitToken: func(w http.ResponseWriter, r *http.Request, id string) bool { return px.AdmitToken(w, r, id) },
		Ephemeral:  ephemeral,
		Replay:     s.replay,
	})
	if err != nil {
		return nil, warnings, err
	}
	px, err = proxy.New(proxy.Options{
		Config: cfg, Issuer: iss, Table: table, Limiter: s.limiter, Metrics: s.metrics,
		Logger: log, SecurityLog: secLog,
	})
	if err != nil {
		return nil, warnings, err
	}
	if prev != nil {
		iss.Inherit(prev.issuer)
	}
	rt := &runtime{cfg: cfg, issuer: iss, proxy: px}
	s.buildHandlers(rt)
	return rt, warnings, nil
}

// start runs the runtime's background work until stop or until parent ends.
func (rt *runtime) start(parent context.Context) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.cancel != nil || rt.stopped {
		return
	}
	ctx, cancel := context.WithCancel(parent)
	rt.ctx, rt.cancel = ctx, cancel
	rt.issuer.Start(ctx)
}

// stop ends the runtime's background work and releases its idle upstream
// connections. Requests still running on it finish normally: the proxy's
// connections in use are not closed.
func (rt *runtime) stop() {
	rt.stopOnce.Do(func() {
		rt.mu.Lock()
		rt.stopped = true
		if rt.cancel != nil {
			rt.cancel()
		}
		rt.mu.Unlock()
		rt.proxy.Close()
	})
}

// startRuntimes starts the running runtime's background work under the
// server's background context; later runtimes are started by the reload
// that installs them.
func (s *Server) startRuntimes(bg context.Context) {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	s.reload.bg = bg
	s.current().start(bg)
}

// stopRuntimes stops the running runtime at shutdown.
func (s *Server) stopRuntimes() {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	s.reload.bg = nil
	s.current().stop()
}

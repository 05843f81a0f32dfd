// Package server assembles Portcullis from a validated configuration: one
// logger, one metrics registry, one Redis client, the issuer, the policy
// table, the limiter and the proxy; it routes Portcullis's own endpoints,
// serves the admin listener, and runs the SIGTERM sequence.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/ratelimit"
	"github.com/portcullis/portcullis/revocation"
)

// Server timeouts. Headers must arrive within readHeaderTimeout (slowloris);
// Portcullis's own endpoints get ownEndpointTimeout to send their body and
// read the answer, while proxied requests may stream for as long as the
// application likes (uploads, SSE, WebSockets).
const (
	readHeaderTimeout  = 10 * time.Second
	idleTimeout        = 120 * time.Second
	ownEndpointTimeout = 15 * time.Second
	// maxHeaderBytes leaves room for an 8 KiB token and ordinary cookies;
	// net/http answers 431 beyond it.
	maxHeaderBytes = 32 << 10
)

// Server is a fully wired Portcullis. Build it with New, serve with Run.
type Server struct {
	cfg         *config.Config
	log         *slog.Logger
	metrics     *metrics.Metrics
	issuer      *issuer.Issuer
	proxy       *proxy.Handler
	limiter     *ratelimit.Limiter
	revocations *revocation.Store
	redis       redis.UniversalClient

	main  http.Handler
	admin http.Handler

	started  atomic.Bool
	draining atomic.Bool
	loaded   atomic.Bool // backendsReady has held once (readiness.go)
}

// New builds every component; it does no network I/O, so -check-config uses
// it too. The warnings are worth printing but do not stop startup.
func New(cfg *config.Config, log *slog.Logger) (*Server, []string, error) {
	s := &Server{cfg: cfg, log: log, metrics: metrics.New()}
	table, warnings, err := policy.Compile(cfg.Routes)
	if err != nil {
		return nil, warnings, err
	}
	secLog := func(r *http.Request, msg string, args ...any) {}
	if cfg.Log.ShouldSecurityLog() {
		secLog = func(r *http.Request, msg string, args ...any) {
			log.Warn(msg, append([]any{"security_event", true, "request_id", r.Header.Get(HeaderRequestID)}, args...)...)
		}
	}
	if cfg.Redis != nil {
		if s.redis, err = newRedisClient(cfg.Redis); err != nil {
			return nil, warnings, err
		}
	}
	s.limiter = ratelimit.New(ratelimit.Options{
		Redis: s.redis, Timeout: redisTimeout(cfg), OnFailure: cfg.RateLimit.OnRedisFailure,
		Metrics: s.metrics, Logger: log,
	})
	s.revocations = revocation.New(nil)
	if s.redis != nil {
		s.revocations.Share(s.redis, log, issuer.MaxTokenLifetime(cfg))
	}
	var px *proxy.Handler
	s.issuer, err = issuer.New(issuer.Options{
		Config: cfg, Logger: log, Metrics: s.metrics, Revocations: s.revocations, SecurityLog: secLog,
		AdmitToken: func(w http.ResponseWriter, r *http.Request, id string) bool { return px.AdmitToken(w, r, id) },
	})
	if err != nil {
		return nil, warnings, err
	}
	px, err = proxy.New(proxy.Options{
		Config: cfg, Issuer: s.issuer, Table: table, Limiter: s.limiter, Metrics: s.metrics,
		Logger: log, SecurityLog: secLog,
	})
	if err != nil {
		return nil, warnings, err
	}
	s.proxy = px
	s.buildHandlers()
	return s, warnings, nil
}

func redisTimeout(cfg *config.Config) time.Duration {
	if cfg.Redis == nil {
		return 0
	}
	return cfg.Redis.Timeout.D()
}

// newRedisClient makes the one Redis client every component shares. go-redis
// retries are off: a retried rate-limit script would charge twice.
func newRedisClient(c *config.Redis) (redis.UniversalClient, error) {
	timeout := c.Timeout.D()
	opts := &redis.UniversalOptions{
		Addrs: c.Addrs, MasterName: c.MasterName, Password: c.Password.Reveal(),
		DialTimeout: max(timeout, 250*time.Millisecond), ReadTimeout: timeout, WriteTimeout: timeout,
		PoolTimeout: timeout, MaxRetries: -1, ContextTimeoutEnabled: true,
		// One dial attempt: a refused connection is then reported as such
		// (evidence for the limiter's breaker) instead of being retried
		// until the deadline and looking like a slow Redis.
		DialerRetries: 1,
		// The limiter batches its calls into a few pipelines; the rest of
		// the pool serves heartbeats, revocations and the blocking stream read.
		PoolSize: 16,
	}
	if c.URL != "" {
		u, err := redis.ParseURL(c.URL.Reveal())
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		opts.Addrs, opts.Username, opts.DB, opts.TLSConfig = []string{u.Addr}, u.Username, u.DB, u.TLSConfig
		if u.Password != "" {
			opts.Password = u.Password
		}
	}
	return redis.NewUniversalClient(opts), nil
}

// Handler is the main listener's handler (exposed for tests).
func (s *Server) Handler() http.Handler { return s.main }

func (s *Server) buildHandlers() {
	own := map[string]http.Handler{
		"/token":                 s.issuer.TokenHandler(),
		"/.well-known/jwks.json": s.issuer.JWKSHandler(),
		"/.well-known/oauth-authorization-server": s.issuer.MetadataHandler(),
		"/revoke":     s.issuer.RevokeHandler(),
		"/introspect": s.issuer.IntrospectHandler(),
	}
	admin := map[string]http.Handler{
		"/metrics":             s.metrics.Handler(),
		"/health":              http.HandlerFunc(s.health),
		"/health/live":         http.HandlerFunc(s.live),
		"/health/ready":        http.HandlerFunc(s.ready),
		"/health/startup":      http.HandlerFunc(s.startup),
		"/admin/revoke-tokens": s.issuer.AdminRevokeHandler(),
	}
	adminOnMain := s.cfg.AdminAddr() == ""
	// Own endpoints are matched on the exact path as sent, never a cleaned
	// one: http.ServeMux would redirect //token and friends, and anything
	// that is not exactly ours belongs to the application.
	mainDispatch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := proxy.RequestPath(r)
		if h, ok := own[path]; ok {
			limitOwn(w)
			h.ServeHTTP(w, r)
			return
		}
		if path == proxy.ForwardAuthPrefix || strings.HasPrefix(path, proxy.ForwardAuthPrefix+"/") {
			limitOwn(w)
			s.proxy.ForwardAuth(w, r)
			return
		}
		if adminOnMain {
			if h, ok := admin[path]; ok {
				h.ServeHTTP(w, r)
				return
			}
		}
		s.proxy.ServeHTTP(w, r)
	})
	s.main = instrument(s.metrics, s.log, s.proxy.SecurityHeaders(s.awaitReady(mainDispatch, func(r *http.Request) bool {
		_, ok := admin[proxy.RequestPath(r)]
		return adminOnMain && ok
	})))
	adminMux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := admin[r.URL.Path]; ok {
			limitOwn(w)
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"not_found"}` + "\n"))
	})
	s.admin = s.proxy.SecurityHeaders(adminMux)
}

// limitOwn bounds how long our own endpoints wait on a slow client.
func limitOwn(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(ownEndpointTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
}

// Run serves until ctx is cancelled (SIGTERM), then: readiness turns 503 at
// once, requests are still served for shutdown.delay (so a Kubernetes
// Service stops routing here first), then in-flight requests get up to
// shutdown.grace to finish. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	lc := net.ListenConfig{}
	mainLn, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	servers := []*http.Server{s.httpServer(s.main)}
	listeners := []net.Listener{mainLn}
	if addr := s.cfg.AdminAddr(); addr != "" {
		adminLn, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			mainLn.Close()
			return fmt.Errorf("listen admin_listen %s: %w", addr, err)
		}
		servers = append(servers, s.httpServer(s.admin))
		listeners = append(listeners, adminLn)
	}
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	s.issuer.Start(bg)
	go s.limiter.Run(bg)
	go s.revocations.Run(bg)

	errc := make(chan error, len(servers))
	for i := range servers {
		go func(srv *http.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}(servers[i], listeners[i])
	}
	s.started.Store(true)
	s.log.Info("portcullis started", "listen", mainLn.Addr().String(), "admin_listen", s.cfg.AdminAddr(),
		"environment", s.cfg.Environment, "upstream", s.cfg.Upstream != nil, "redis", s.redis != nil)

	select {
	case err := <-errc:
		s.shutdown(servers, 0)
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down", "delay", s.cfg.Shutdown.Delay.D().String(), "grace", s.cfg.Shutdown.Grace.D().String())
	if d := s.cfg.Shutdown.Delay.D(); d > 0 {
		time.Sleep(d) // keep serving while load balancers notice readiness is 503
	}
	return s.shutdown(servers, s.cfg.Shutdown.Grace.D())
}

func (s *Server) shutdown(servers []*http.Server, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	s.proxy.Close()
	if s.redis != nil {
		s.redis.Close()
	}
	if len(errs) > 0 {
		return fmt.Errorf("shutdown: in-flight requests outlived the %s grace period: %w", grace, errors.Join(errs...))
	}
	s.log.Info("stopped")
	return nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// Package server assembles Portcullis from a validated configuration: one
// logger, one metrics registry, one Redis client, the issuer, the policy
// table, the limiter and the proxy; it routes Portcullis's own endpoints,
// serves the admin listener, reloads the configuration (SIGHUP, changed
// files), and runs the SIGTERM sequence.
package server

import (
	"context"
	"crypto/tls"
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
	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/ratelimit"
	"github.com/portcullis/portcullis/revocation"
	"github.com/portcullis/portcullis/seclog"
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
	// a request head beyond it is answered 431 (see framing.go).
	maxHeaderBytes = 32 << 10
)

// Server is a fully wired Portcullis. Build it with New, serve with Run.
// It holds what lives as long as the process (listeners, the Redis client,
// metrics, revocations, limiter state); everything compiled from the
// configuration is a runtime behind one atomic pointer, which a reload
// replaces whole (see runtime.go, reload.go).
type Server struct {
	// cfg is the configuration the process started with: the listeners,
	// the Redis client and the limiter follow it until a restart.
	cfg         *config.Config
	log         *slog.Logger
	metrics     *metrics.Metrics
	limiter     *ratelimit.Limiter
	revocations *revocation.Store
	redis       redis.UniversalClient
	events      *seclog.Events
	replay      *issuer.ReplayCache // jti of client assertions, across reloads

	// rt is the running configuration, compiled. Requests load it once.
	rt     atomic.Pointer[runtime]
	reload reloader
	certs  *certSource      // nil without tls
	grpc   *extauthz.Server // nil unless grpc_listen is set

	main  http.Handler
	admin http.Handler

	started  atomic.Bool
	draining atomic.Bool
	loaded   atomic.Bool // backendsReady has held once (readiness.go)
}

// New builds every component; it does no network I/O, so -check-config uses
// it too. The warnings are worth printing but do not stop startup.
func New(cfg *config.Config, log *slog.Logger) (*Server, []string, error) {
	// Every log line is bounded (request-supplied values cut to 256 bytes)
	// and security events are summarised per kind: see package seclog.
	log = slog.New(seclog.Bound(log.Handler()))
	s := &Server{cfg: cfg, log: log, metrics: metrics.New(), events: seclog.NewEvents(log, seclog.Options{})}
	var err error
	if cfg.Redis != nil {
		if s.redis, err = newRedisClient(cfg.Redis); err != nil {
			return nil, nil, err
		}
		s.metrics.ExportRedisUp()
	}
	s.limiter = ratelimit.New(ratelimit.Options{
		Redis: s.redis, Timeout: redisTimeout(cfg), OnFailure: cfg.RateLimit.OnRedisFailure,
		Metrics: s.metrics, Logger: log,
	})
	s.revocations = revocation.New(nil)
	if s.redis != nil {
		s.revocations.Share(s.redis, log, issuer.MaxTokenLifetime(cfg))
	}
	// The jti record of client assertions outlives reloads.
	s.replay = issuer.NewReplayCache(s.redis, redisTimeout(cfg), log)
	rt, warnings, err := s.build(cfg, nil)
	if err != nil {
		return nil, warnings, err
	}
	s.rt.Store(rt)
	// The listeners' handlers are fixed; each request loads the runtime
	// once and is served by it to the end, whatever a reload does meanwhile.
	s.main = instrument(s.metrics, s.log, func() (func(http.Header), http.Handler) {
		rt := s.rt.Load()
		return rt.final, rt.main
	})
	s.admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.rt.Load().admin.ServeHTTP(w, r)
	})
	if cfg.TLS != nil {
		if s.certs, err = newCertSource(*cfg.TLS, log, s.metrics.TLSCertificateExpiry()); err != nil {
			return nil, warnings, err
		}
		// Certificates follow the configuration: the reload watcher sees
		// the cert, key and CA files change (they are *_file settings), and
		// SIGHUP reloads too. A pair that does not load fails the reload.
		s.OnReload(func(next *config.Config) (func(), error) {
			if next.TLS == nil {
				return nil, nil // reported as needing a restart (processWide)
			}
			if err := s.certs.Configure(*next.TLS); err != nil {
				return nil, fmt.Errorf("tls: %w", err)
			}
			return nil, nil
		})
	}
	var grpcTLS *tls.Config
	if s.certs != nil {
		grpcTLS = s.certs.serverConfig() // the same certificates as listen
	}
	if err := s.buildGRPC(grpcTLS); err != nil {
		return nil, warnings, err
	}
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

// buildHandlers routes one runtime's endpoints; rt.main and rt.admin are
// what the listeners' fixed handlers call.
func (s *Server) buildHandlers(rt *runtime) {
	own := map[string]http.Handler{
		"/token":                 rt.issuer.TokenHandler(),
		"/.well-known/jwks.json": rt.issuer.JWKSHandler(),
		"/.well-known/oauth-authorization-server": rt.issuer.MetadataHandler(),
		"/revoke":     rt.issuer.RevokeHandler(),
		"/introspect": rt.issuer.IntrospectHandler(),
	}
	admin := map[string]http.Handler{
		"/metrics":             s.metrics.Handler(),
		"/health":              http.HandlerFunc(s.health),
		"/health/live":         http.HandlerFunc(s.live),
		"/health/ready":        http.HandlerFunc(s.ready),
		"/health/startup":      http.HandlerFunc(s.startup),
		"/admin/revoke-tokens": rt.issuer.AdminRevokeHandler(),
	}
	adminOnMain := s.cfg.AdminAddr() == "" // the listener that exists, not a reloaded wish
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
			rt.proxy.ForwardAuth(w, r)
			return
		}
		if adminOnMain {
			if h, ok := admin[path]; ok {
				h.ServeHTTP(w, r)
				return
			}
		}
		rt.proxy.ServeHTTP(w, r)
	})
	// Requests that arrive before the shared state is loaded wait for it
	// (awaitReady); probes on this listener never do.
	rt.main = s.edge(rt.proxy, s.awaitReady(mainDispatch, func(r *http.Request) bool {
		_, ok := admin[proxy.RequestPath(r)]
		return adminOnMain && ok
	}))
	rt.final = rt.proxy.ApplySecurityHeaders
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
	rt.admin = rt.proxy.SecurityHeaders(s.edge(rt.proxy, adminMux))
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
	listeners := []net.Listener{s.edgeListener(mainLn)}
	if addr := s.cfg.AdminAddr(); addr != "" {
		adminLn, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			mainLn.Close()
			return fmt.Errorf("listen admin_listen %s: %w", addr, err)
		}
		servers = append(servers, s.httpServer(s.admin))
		listeners = append(listeners, newGuardListener(adminLn))
	}
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	s.startRuntimes(bg)
	go s.limiter.Run(bg)
	go s.revocations.Run(bg)
	go s.events.Run(bg)
	go s.watch(bg)

	errc := make(chan error, len(servers)+1)
	grpcAddr, err := s.serveGRPC(ctx, &lc, errc)
	if err != nil {
		for _, ln := range listeners {
			ln.Close()
		}
		return err
	}
	for i := range servers {
		go func(srv *http.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}(servers[i], listeners[i])
	}
	s.started.Store(true)
	s.log.Info("portcullis started", "listen", mainLn.Addr().String(), "admin_listen", s.cfg.AdminAddr(),
		"grpc_listen", grpcAddr, "environment", s.cfg.Environment, "upstream", s.cfg.Upstream != nil, "redis", s.redis != nil)

	select {
	case err := <-errc:
		s.shutdown(servers, 0)
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.drainGRPC()
	sd := s.rt.Load().cfg.Shutdown // as last reloaded
	s.log.Info("shutting down", "delay", sd.Delay.D().String(), "grace", sd.Grace.D().String())
	if d := sd.Delay.D(); d > 0 {
		time.Sleep(d) // keep serving while load balancers notice readiness is 503
	}
	return s.shutdown(servers, sd.Grace.D())
}

func (s *Server) shutdown(servers []*http.Server, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	grpcDone := make(chan error, 1)
	go func() { grpcDone <- s.stopGRPC(ctx) }()
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	if err := <-grpcDone; err != nil {
		errs = append(errs, err)
	}
	s.stopRuntimes()
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
		// HTTP/1.x heads meet maxHeaderBytes in the connection guard, and
		// HTTP/2 ones in edge; net/http's own 431 (without our headers)
		// is only a backstop.
		MaxHeaderBytes: 2 * maxHeaderBytes,
		// net/http logs some request-triggered conditions once per request
		// (a ';' in the query, a failed TLS handshake): summarised, not a
		// line each.
		ErrorLog:                     slog.NewLogLogger(s.events.Handler("http server error", s.log.Handler()), slog.LevelWarn),
		ConnContext:                  connContext,
		DisableGeneralOptionsHandler: true, // edge answers OPTIONS * with our headers
	}
}

// Package extauthz serves Envoy's external authorization API over gRPC
// (envoy.service.auth.v3.Authorization/Check) and the standard gRPC health
// service. It is a front door like the proxy and /auth/verify: it turns a
// CheckRequest into the engine's Input, asks proxy.Handler.Decide, and
// renders the Decision as a CheckResponse. It decides nothing itself.
package extauthz

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/proxy"
)

// ServiceName is the gRPC service Check belongs to; the health service
// reports it by this name (and as "").
const ServiceName = "envoy.service.auth.v3.Authorization"

// Bounds on what one peer may make the server hold. Envoy sends small
// messages on a few long-lived connections; anything else is refused early.
const (
	// maxMessageBytes: a CheckRequest carries the request's headers (the
	// HTTP listener refuses more than 32 KiB of them) and, only when Envoy
	// is told to, a body it bounds itself (with_request_body).
	maxMessageBytes = 1 << 20
	// maxConcurrentStreams per connection: Envoy multiplexes every check
	// of a worker on one connection; 1024 in flight is far past 64
	// concurrent requests at ~100 µs each.
	maxConcurrentStreams = 1024
	// keepaliveMinTime: a client pinging more often is sent GOAWAY
	// (ENHANCE_YOUR_CALM); Envoy's own keepalive is far slower.
	keepaliveMinTime = 10 * time.Second
	// keepaliveTime and keepaliveTimeout detect a vanished peer.
	keepaliveTime    = 1 * time.Minute
	keepaliveTimeout = 20 * time.Second
	// maxConnectionIdle closes connections nobody uses.
	maxConnectionIdle = 15 * time.Minute
	// handshakeTimeout bounds the TLS handshake and HTTP/2 preface.
	handshakeTimeout = 10 * time.Second
	// maxHeaderListBytes bounds the gRPC metadata of one call.
	maxHeaderListBytes = 64 << 10
)

// Options are a Server's dependencies.
type Options struct {
	// Engine returns the handler that decides; it is called once per
	// Check, so a configuration reload that swaps the handler applies to
	// the next call. Required.
	Engine func() *proxy.Handler
	// Metrics counts each Check in http_requests_total by the HTTP status
	// it carries (as forward-auth's answers are counted). Required.
	Metrics *metrics.Metrics
	// Logger; nil logs nothing.
	Logger *slog.Logger
	// TLS, when set, is served (its certificate source may change between
	// handshakes); nil serves plain HTTP/2, for a loopback or mesh-internal
	// listener.
	TLS *tls.Config
}

// Server is the gRPC listener's server. Safe for concurrent use.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	engine  func() *proxy.Handler
	metrics *metrics.Metrics
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	lowered sync.Map // header name → lower case; see lower
}

// New builds the server; it does no I/O.
func New(o Options) (*Server, error) {
	if o.Engine == nil || o.Metrics == nil {
		return nil, errors.New("extauthz: Engine and Metrics are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.ForceServerCodecV2(newCodec()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: maxConnectionIdle, Time: keepaliveTime, Timeout: keepaliveTimeout,
		}),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	s := &Server{engine: o.Engine, metrics: o.Metrics, log: o.Logger, grpc: grpc.NewServer(opts...), health: health.NewServer()}
	authv3.RegisterAuthorizationServer(s.grpc, s)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Serve accepts connections on ln until Stop.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving gRPC ext_authz: %w", err)
	}
	return nil
}

// Drain turns the health service to NOT_SERVING (the first step after
// SIGTERM, as readiness turns 503); Check keeps answering.
func (s *Server) Drain() { s.health.Shutdown() }

// Stop refuses new calls and waits for calls in flight until ctx is done,
// then closes every connection. It returns ctx's error when calls were cut.
func (s *Server) Stop(ctx context.Context) error {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return fmt.Errorf("gRPC calls outlived the grace period: %w", ctx.Err())
	}
}

// streamWorkers is how many long-lived goroutines run Checks: 64 per
// core, Envoy's usual concurrency per connection, at most maxStreamWorkers
// (on a large node without a CPU limit GOMAXPROCS is the node's size, and
// idle workers hold their stacks). Without them gRPC starts a goroutine per
// call, and growing each new goroutine's stack to what a decision needs was
// a fifth of a Check's CPU; a worker keeps its grown stack. A call finding
// every worker busy still gets its own goroutine, so this bounds only the
// reuse, never the concurrency.
func streamWorkers() uint32 {
	return uint32(min(64*runtime.GOMAXPROCS(0), maxStreamWorkers))
}

// maxStreamWorkers bounds streamWorkers.
const maxStreamWorkers = 256

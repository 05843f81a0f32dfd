package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/proxy"
)

// buildGRPC makes the Envoy ext_authz server when grpc_listen is set. It
// decides with the running configuration's proxy handler, as /auth/verify
// does, loaded once per Check. tlsConfig is the
// listener's TLS (nil: plain HTTP/2); with tls configured it should be the
// same certificate source as listen's.
func (s *Server) buildGRPC(tlsConfig *tls.Config) error {
	if s.cfg.GRPCListen == "" {
		return nil
	}
	g, err := extauthz.New(extauthz.Options{
		Engine:  func() *proxy.Handler { return s.current().proxy },
		Metrics: s.metrics, Logger: s.log, TLS: tlsConfig,
	})
	if err != nil {
		return err
	}
	s.grpc = g
	return nil
}

// serveGRPC listens on grpc_listen and serves until stopGRPC; a serving
// error goes to errc. It returns the address listened on ("" when off).
func (s *Server) serveGRPC(ctx context.Context, lc *net.ListenConfig, errc chan<- error) (string, error) {
	if s.grpc == nil {
		return "", nil
	}
	ln, err := lc.Listen(ctx, "tcp", s.cfg.GRPCListen)
	if err != nil {
		return "", fmt.Errorf("listen grpc_listen %s: %w", s.cfg.GRPCListen, err)
	}
	go func() {
		if err := s.grpc.Serve(ln); err != nil {
			errc <- err
		}
	}()
	return ln.Addr().String(), nil
}

// drainGRPC turns the gRPC health service to NOT_SERVING, as readiness
// turns 503; Check keeps answering until stopGRPC.
func (s *Server) drainGRPC() {
	if s.grpc != nil {
		s.grpc.Drain()
	}
}

// stopGRPC lets calls in flight finish until ctx is done.
func (s *Server) stopGRPC(ctx context.Context) error {
	if s.grpc == nil {
		return nil
	}
	return s.grpc.Stop(ctx)
}

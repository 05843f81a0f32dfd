package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/redistest"
)

// TestGRPCListenerLifecycle runs the whole server with grpc_listen: Check
// answers with the engine's verdict, the health service is SERVING, turns
// NOT_SERVING on SIGTERM (the context's end) before the listeners close,
// and Run returns cleanly.
func TestGRPCListenerLifecycle(t *testing.T) {
	t.Parallel()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	s := newTestServer(t, fmt.Sprintf("listen: 127.0.0.1:%d\ngrpc_listen: %s\nshutdown: {delay: 0s, grace: 20s}\n", redistest.FreePort(t), grpcAddr), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: extauthz.ServiceName})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health not SERVING: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not waiting for time
	}
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Host: "app.test"}},
	}})
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("Check without a token: %v, %v; want a 401 denial", resp, err)
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	watch, err := health.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", first, err)
	}
	cancel() // SIGTERM
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after SIGTERM the health service says %v, %v; want NOT_SERVING", next, err)
	}
	stopWatch()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}
}

package extauthz

import (
	"context"
	"testing"
)

// BenchmarkCheck is one allowed Check decided and rendered in process
// (no network): the gRPC front door's own cost on top of the engine's
// (proxy's BenchmarkDecision).
func BenchmarkCheck(b *testing.B) {
	e := newEnv(b, "rate_limit: {default: {requests: 1000000000, per: 1s, key: subject}}\n")
	req := call{method: "GET", target: "/orders/1?x=1", headers: [][2]string{{"Authorization", "Bearer " + e.token(b, "bob", "orders:read")}}}.envoy()
	ctx := context.Background()
	if resp, err := e.srv.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
		b.Fatalf("%v %v", resp, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = e.srv.Check(ctx, req)
	}
}

// BenchmarkCheckGRPC is allowed Checks over the loopback gRPC connection,
// with 32 streams in flight per core (64 on two, as Envoy multiplexes a
// worker's checks on one connection): transport, codec and render cost,
// client side included. Profile it for the server's share.
func BenchmarkCheckGRPC(b *testing.B) {
	e := newEnv(b, "rate_limit: {default: {requests: 1000000000, per: 1s, key: subject}}\n")
	req := call{method: "GET", target: "/orders/1?x=1", headers: [][2]string{{"Authorization", "Bearer " + e.token(b, "bob", "orders:read")}}}.envoy()
	ctx := context.Background()
	if resp, err := e.client.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
		b.Fatalf("%v %v", resp, err)
	}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if resp, err := e.client.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
				b.Errorf("%v %v", resp, err)
				return
			}
		}
	})
}

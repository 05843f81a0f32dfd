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

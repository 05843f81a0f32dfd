package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sync"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcLoad calls Check over one HTTP/2 connection with c concurrent
// streams (as Envoy multiplexes) for d after a warm-up, and prints
// "rps p50_ms p99_ms non_ok cpu_percent" (its own CPU use during the
// measured run, to show it was not the bottleneck). It exists because ghz, a
// general-purpose client that builds every message by reflection, needs a
// whole load core for about 14k calls/s and so measured itself rather than
// the server; this client uses the generated stubs and costs a fraction of
// that. Every call is bounded by the run's deadline.
func grpcLoad(target, path, token string, c int, warmup, d time.Duration) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("grpcload: %v", err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: "bench.local", Scheme: "http", Protocol: "HTTP/1.1",
			Headers: map[string]string{":authority": "bench.local", ":method": "GET", ":path": path,
				"authorization": "Bearer " + token, "accept": "*/*"},
		}},
	}}
	run := func(d time.Duration, record bool) (calls int, lat []time.Duration, nonOK int) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		// gRPC times a call out by the deadline's own timer, which can
		// fire before ctx's: a call ending past the deadline is the end of
		// the run, whatever ctx.Err() says yet (counting those as failed,
		// instant calls inflated both non_ok and calls/s).
		end, _ := ctx.Deadline()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := 0; i < c; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				bad := 0
				for ctx.Err() == nil && time.Now().Before(end) {
					start := time.Now()
					resp, err := client.Check(ctx, req)
					if ctx.Err() != nil || !time.Now().Before(end) {
						break // cut off by the end of the run: not a failure
					}
					if err != nil || resp.GetStatus().GetCode() != int32(code.Code_OK) {
						bad++
					}
					if record {
						mine = append(mine, time.Since(start))
					}
				}
				mu.Lock()
				lat, nonOK = append(lat, mine...), nonOK+bad
				mu.Unlock()
			}()
		}
		wg.Wait()
		return len(lat), lat, nonOK
	}
	run(warmup, false)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	calls, lat, nonOK := run(d, true)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	if calls == 0 {
		log.Fatal("grpcload: no call completed")
	}
	slices.Sort(lat)
	pct := func(p int) float64 { return float64(lat[(len(lat)-1)*p/100]) / 1e6 }
	fmt.Printf("%.0f %.3f %.3f %d %.0f\n", float64(calls)/d.Seconds(), pct(50), pct(99), nonOK, 100*cpu.Seconds()/d.Seconds())
}

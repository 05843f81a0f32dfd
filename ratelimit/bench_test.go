package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

func BenchmarkLocalAllow(b *testing.B) {
	l := New(Options{})
	lim := Limit{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = l.Allow(ctx, "route:0", Key{"k", "s:alice"}, lim)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	srv := redistest.Start(b)
	l := New(Options{Redis: newClient(b, srv.Addr, time.Second), Timeout: time.Second})
	lim := Limit{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, "route:0", Key{"k", "s:alice"}, lim); err != nil {
			b.Fatal(err)
		}
	}
}

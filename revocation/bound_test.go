package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/redistest"
)

// jti looks like this issuer's token ids (22 base64url characters).
func jti(i int) string { return fmt.Sprintf("jti-%018d", i) }

// TestApplyCostIsFlat: recording one revocation costs the same whether the
// store holds a thousand or fifty thousand: nothing copies the set.
func TestApplyCostIsFlat(t *testing.T) {
	if raceEnabled {
		t.Skip("counts allocations: run without -race (make test does)")
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := func() time.Time { return now }
	perEntry := func(held int) float64 {
		s := New(clk)
		exp := now.Add(time.Hour).UnixNano()
		for i := 0; i < held; i++ {
			s.applyToken(jti(i), exp)
		}
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = jti(held + i)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, k := range keys {
			s.applyToken(k, exp)
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / float64(len(keys))
	}
	small, large := perEntry(1_000), perEntry(50_000)
	t.Logf("bytes allocated per revocation: %.0f holding 1,000, %.0f holding 50,000", small, large)
	if large > 4*small+1024 {
		t.Errorf("one revocation allocates %.0f bytes with 50,000 held but %.0f with 1,000: cost grows with the set", large, small)
	}
}

// TestRevocationMemoryBound fills the store to MaxBytes: it refuses more
// (ErrFull, so the caller answers 503), the heap it holds stays within the
// stated bound, and expiry makes room again.
func TestRevocationMemoryBound(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a memory flood: run without -race and -short (make test does)")
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := func() time.Time { return now }
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New(clk)
	ctx := context.Background()
	n := 0
	for ; ; n++ {
		err := s.RevokeToken(ctx, jti(n), now.Add(time.Hour))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 10*MaxBytes/entryOverhead {
			t.Fatal("the store never filled")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d revocations held, %d bytes accounted, heap +%.1f MiB", n, s.Bytes(), float64(grown)/(1<<20))
	if s.Bytes() > MaxBytes {
		t.Errorf("%d bytes accounted, bound %d", s.Bytes(), MaxBytes)
	}
	if grown > MaxBytes {
		t.Errorf("heap grew %d bytes, more than the stated bound %d: entryOverhead is too small", grown, MaxBytes)
	}
	if !s.IsRevoked(jti(0), "x", now) || !s.IsRevoked(jti(n-1), "x", now) {
		t.Error("a recorded revocation is not enforced")
	}
	runtime.KeepAlive(s)
	now = now.Add(2 * time.Hour) // every token named has expired
	if err := s.RevokeToken(ctx, "after-expiry", now.Add(time.Hour)); err != nil {
		t.Errorf("no room after every entry expired: %v", err)
	}
}

// addRevocations records n token revocations in the stream the way
// RevokeToken does, pipelined.
func addRevocations(t *testing.T, c *redis.Client, from, n int, exp time.Time) {
	t.Helper()
	ctx := context.Background()
	for start := from; start < from+n; start += 1000 {
		pipe := c.Pipeline()
		for i := start; i < min(start+1000, from+n); i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: streamKey, Values: []any{"k", kindToken, "v", jti(i), "a", exp.UnixMilli(), "u", int64(0)}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncedMeansEveryRevocationApplied: a replica that starts after 50,000
// revocations is not synced until it has read them all, and from then on
// refuses every one of them (no waiting: this is its first check).
func TestSyncedMeansEveryRevocationApplied(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	writer := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	defer writer.Close()
	// The replica's client is configured as Portcullis configures it: a
	// 50 ms timeout sized for one small call.
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond, ContextTimeoutEnabled: true})
	defer c.Close()
	const n = 50_000
	addRevocations(t, writer, 0, n, time.Now().Add(time.Hour))
	s := New(nil)
	s.Share(c, slog.New(slog.DiscardHandler), time.Hour)
	if s.Synced() {
		t.Fatal("synced before reading anything")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	go s.Run(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for !s.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("not synced within 60s")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
	t.Logf("%d revocations read in %v", n, time.Since(start))
	for i := 0; i < n; i++ {
		if !s.IsRevoked(jti(i), "x", time.Now()) {
			t.Fatalf("revocation %d not enforced once synced", i)
		}
	}
	// Revocations recorded later still arrive (the tail).
	addRevocations(t, writer, n, 1, time.Now().Add(time.Hour))
	deadline = time.Now().Add(10 * time.Second)
	for !s.IsRevoked(jti(n), "x", time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("a later revocation never arrived")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
}

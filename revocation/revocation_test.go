package revocation

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/redistest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := func() time.Time { return now }
	s := New(clk)
	ctx := context.Background()
	if s.IsRevoked("a", "alice", now) {
		t.Fatal("empty store revokes")
	}
	if err := s.RevokeToken(ctx, "a", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !s.IsRevoked("a", "alice", now) || s.IsRevoked("b", "alice", now) {
		t.Error("token revocation wrong")
	}
	if err := s.RevokeSubject(ctx, "bob", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		iat  time.Time
		want bool
	}{
		{"issued before", now.Add(-time.Minute), true},
		{"issued at the moment", now, true},
		{"issued after", now.Add(time.Second), false},
	}
	for _, tc := range tests {
		if got := s.IsRevoked("x", "bob", tc.iat); got != tc.want {
			t.Errorf("%s: revoked=%v, want %v", tc.name, got, tc.want)
		}
	}
	// Entries are forgotten once every token they could match has expired.
	now = now.Add(2 * time.Hour)
	_ = s.RevokeToken(ctx, "c", now.Add(time.Minute)) // a write prunes
	if tokens, subjects := s.Len(); tokens != 1 || subjects != 0 {
		t.Errorf("after expiry: %d tokens, %d subjects remembered, want 1 and 0", tokens, subjects)
	}
}

// TestSharedRetentionFollowsTokenLifetime: with tokens living 48 h, a
// revocation recorded 30 h ago must still be in the stream for a replica
// that starts now, while one from 50 h ago is trimmed.
func TestSharedRetentionFollowsTokenLifetime(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	ctx := context.Background()
	now := time.Now()
	for _, age := range []time.Duration{50 * time.Hour, 30 * time.Hour} {
		id := strconv.FormatInt(now.Add(-age).UnixMilli(), 10) + "-0"
		err := c.XAdd(ctx, &redis.XAddArgs{Stream: streamKey, ID: id, Values: []any{
			"k", kindToken, "v", "jti-" + age.String(), "a", now.Add(time.Hour).UnixMilli(), "u", int64(0),
		}}).Err()
		if err != nil {
			t.Fatal(err)
		}
	}
	writer := New(nil)
	writer.Share(c, slog.New(slog.DiscardHandler), 48*time.Hour)
	if err := writer.RevokeToken(ctx, "jti-now", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.XLen(ctx, streamKey).Result(); n != 2 {
		t.Errorf("stream holds %d entries, want 2 (the 30h-old one kept, the 50h-old one trimmed)", n)
	}
	late := New(nil)
	late.Share(c, slog.New(slog.DiscardHandler), 48*time.Hour)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go late.Run(runCtx)
	deadline := time.Now().Add(5 * time.Second)
	for !late.IsRevoked("jti-30h0m0s", "x", now) {
		if time.Now().After(deadline) {
			t.Fatal("a replica starting now never learned the 30h-old revocation")
		}
		time.Sleep(10 * time.Millisecond) // polling the stream reader
	}
	if !late.IsRevoked("jti-now", "x", now) {
		t.Error("the new revocation did not reach the late replica")
	}
}

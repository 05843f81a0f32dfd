package revocation

import (
	"context"
	"testing"
	"time"
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

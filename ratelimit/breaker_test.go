package ratelimit

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestBreakerTripsOnEvidence(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	timeout := fmt.Errorf("redis rate limit: %w", context.DeadlineExceeded)
	type event struct {
		at  time.Duration // since the start
		err error         // nil: a success
	}
	tests := []struct {
		name   string
		events []event
		want   bool // tripped after the events
	}{
		{"one timeout under load", []event{{0, timeout}}, false},
		{"a burst of timeouts within a throttling period",
			[]event{{0, timeout}, {1 * time.Millisecond, timeout}, {2 * time.Millisecond, timeout}, {50 * time.Millisecond, timeout}, {90 * time.Millisecond, timeout}, {100 * time.Millisecond, timeout}}, false},
		{"timeouts for a second, interrupted by a success",
			[]event{{0, timeout}, {300 * time.Millisecond, timeout}, {500 * time.Millisecond, nil}, {600 * time.Millisecond, timeout}, {900 * time.Millisecond, timeout}, {1100 * time.Millisecond, timeout}, {1200 * time.Millisecond, timeout}}, false},
		{"timeouts for a second without an answer",
			[]event{{0, timeout}, {250 * time.Millisecond, timeout}, {500 * time.Millisecond, timeout}, {750 * time.Millisecond, timeout}, {time.Second, timeout}}, true},
		{"few timeouts however long", []event{{0, timeout}, {5 * time.Second, timeout}}, false},
		{"connection refused three times", []event{{0, refused}, {time.Millisecond, refused}, {2 * time.Millisecond, refused}}, true},
		{"refused twice, then a timeout", []event{{0, refused}, {time.Millisecond, refused}, {2 * time.Millisecond, timeout}}, false},
		{"a closed client is evidence", []event{{0, redis.ErrClosed}, {0, redis.ErrClosed}, {0, redis.ErrClosed}}, true},
		{"recovered", []event{{0, refused}, {0, refused}, {0, refused}, {2 * time.Second, nil}}, false},
	}
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b breaker
			for _, e := range tc.events {
				if e.err == nil {
					b.success()
				} else {
					b.failure(start.Add(e.at), e.err)
				}
			}
			if got := b.isTripped(); got != tc.want {
				t.Errorf("tripped = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBreakerCooldownAndProbe(t *testing.T) {
	t.Parallel()
	var b breaker
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tripped := false
	for i := 0; i < breakerHardFailures; i++ {
		tripped = b.failure(now, refused) || tripped
	}
	if !tripped || b.allow(now) {
		t.Fatalf("tripped=%v allow=%v after %d refusals", tripped, b.allow(now), breakerHardFailures)
	}
	later := now.Add(breakerCooldown)
	if !b.allow(later) {
		t.Fatal("no probe after the cooldown")
	}
	if b.allow(later) {
		t.Fatal("two probes at once")
	}
	// A failed probe keeps it open, without a second "tripped" report.
	if b.failure(later, refused) || !b.isTripped() || b.allow(later) {
		t.Fatal("failed probe closed the breaker or reported a second trip")
	}
	if !b.success() || b.isTripped() || !b.allow(later) {
		t.Fatal("a success did not close the breaker")
	}
}

func TestHardFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{redis.ErrPoolTimeout, false},
		{errQueueFull, false},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, false},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{redis.ErrClosed, true},
	}
	for _, tc := range tests {
		if got := hardFailure(tc.err); got != tc.want {
			t.Errorf("hardFailure(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

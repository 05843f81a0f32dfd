package ratelimit

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Breaker thresholds. A slow Redis call (a CPU-starved process, a pod
// throttled by its CPU limit for tens of milliseconds, a burst that queues
// behind a pipeline) fails the one request that waited for it, but it is
// not an outage: the breaker opens only on evidence that Redis is gone.
//
//   - breakerHardFailures consecutive connection-level failures (refused,
//     reset, closed, an error reply): Redis answered "no" or is not there.
//   - breakerSoftFailures consecutive failures of any kind (timeouts
//     included) spanning at least breakerEvidence with no success between:
//     a throttled process still gets answers within a CFS period (100 ms)
//     or two, while a hung or partitioned Redis answers nothing for a
//     second.
//
// While open, calls are not attempted for breakerCooldown; then one call
// probes, and its success closes the breaker (the heartbeat probes too).
const (
	breakerHardFailures = 3
	breakerSoftFailures = 5
	breakerEvidence     = time.Second
	breakerCooldown     = time.Second
)

// breaker stops calls to a Redis that is down, and is the one judge of
// "down": the limiter reports Degraded while it is tripped. allow and an
// uneventful success are atomic loads, so the request path takes no lock;
// failures, rare while Redis is up and skipped while the breaker is open,
// take a mutex. Safe for concurrent use.
type breaker struct {
	openUntil atomic.Int64 // unix nanoseconds; 0: closed
	tripped   atomic.Bool  // opened, and no success since
	streak    atomic.Bool  // failures since the last success

	mu          sync.Mutex
	streakStart time.Time
	soft, hard  int
}

// allow reports whether a call may be attempted now. Once the cooldown has
// passed, the caller that wins the swap probes; the others wait another
// cooldown.
func (b *breaker) allow(now time.Time) bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	if now.UnixNano() < until {
		return false
	}
	return b.openUntil.CompareAndSwap(until, now.Add(breakerCooldown).UnixNano())
}

// success records an answered call; it reports whether that closed a
// tripped breaker (Redis is back).
func (b *breaker) success() (recovered bool) {
	if !b.streak.Load() && !b.tripped.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.soft, b.hard = 0, 0
	b.streak.Store(false)
	b.openUntil.Store(0)
	return b.tripped.Swap(false)
}

// failure records a failed call; it reports whether the breaker tripped
// because of it (it was closed before).
func (b *breaker) failure(now time.Time, err error) (tripped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.streak.Load() {
		b.streakStart, b.soft, b.hard = now, 0, 0
		b.streak.Store(true)
	}
	b.soft++
	if hardFailure(err) {
		b.hard++
	} else {
		b.hard = 0 // only consecutive connection failures are that evidence
	}
	open := b.tripped.Load() || // a failed probe: stay open
		b.hard >= breakerHardFailures ||
		(b.soft >= breakerSoftFailures && now.Sub(b.streakStart) >= breakerEvidence)
	if !open {
		return false
	}
	b.openUntil.Store(now.Add(breakerCooldown).UnixNano())
	return !b.tripped.Swap(true)
}

// isTripped reports whether the breaker judged Redis down.
func (b *breaker) isTripped() bool { return b.tripped.Load() }

// open reports whether calls are being skipped now.
func (b *breaker) open(now time.Time) bool {
	until := b.openUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// hardFailure tells evidence of absence (nothing listening, a connection
// torn down, Redis answering with an error) from slowness (a deadline, a
// full pool or queue), which a starved process produces on its own.
func hardFailure(err error) bool {
	var rerr redis.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, errQueueFull):
		return false
	case errors.As(err, &rerr):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, redis.ErrClosed):
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return false
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

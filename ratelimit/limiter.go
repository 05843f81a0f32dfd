package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/metrics"
)

// Failure policies for when Redis cannot decide.
const (
	FailLocal = "local" // enforce this replica's share from memory
	FailAllow = "allow" // let requests through
	FailDeny  = "deny"  // refuse with 503
)

// Heartbeat timing: replicas beat every heartbeatEvery and are counted live
// for heartbeatTTL, so a replica learns the live count at least every 5 s
// with room for two late beats. Until it has read the count once, a
// replica retries every heartbeatStartRetry; after a failed beat, and
// while Redis is judged down, it beats every heartbeatRetry, so an outage
// is judged on evidence within seconds and recovery is noticed within one.
const (
	heartbeatEvery      = 2 * time.Second
	heartbeatTTL        = 6 * time.Second
	heartbeatStartRetry = 200 * time.Millisecond
	heartbeatRetry      = 500 * time.Millisecond
	// deniedMax bounds the pre-check memory of keys Redis said are over.
	deniedMax = 65536
)

// Options configure a Limiter.
type Options struct {
	// Redis is the shared store; nil keeps every bucket in memory.
	Redis Client
	// Timeout bounds each Redis call (default 50 ms).
	Timeout time.Duration
	// OnFailure is FailLocal, FailAllow or FailDeny (default FailLocal).
	OnFailure string
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	Now       func() time.Time
}

// Limiter decides whether a request may pass. Safe for concurrent use.
type Limiter struct {
	local     *local
	redis     *redisStore
	onFailure string
	metrics   *metrics.Metrics
	log       *slog.Logger
	now       func() time.Time
	id        string
	// replicas is the live count last read from Redis: it survives an
	// outage, so a replica that cannot reach Redis still enforces only its
	// share while the others are (presumably) live too.
	replicas atomic.Int64
	// ready: the count has been read once, or Redis was found down at
	// start (then this replica starts alone and degraded).
	ready  atomic.Bool
	denied *deniedSet
}

// New builds a Limiter.
func New(o Options) *Limiter {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.OnFailure == "" {
		o.OnFailure = FailLocal
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	l := &Limiter{
		local: newLocal(), onFailure: o.OnFailure, metrics: o.Metrics, log: o.Logger,
		now: o.Now, id: hex.EncodeToString(id), denied: newDeniedSet(),
	}
	l.replicas.Store(1)
	if o.Redis != nil {
		l.redis = &redisStore{client: o.Redis, timeout: o.Timeout, batch: newBatcher(o.Redis, o.Timeout)}
		o.Metrics.RedisUp.Set(1)
	} else {
		l.ready.Store(true)
	}
	return l
}

// Degraded reports that Redis is configured and judged down: the circuit
// breaker has tripped on evidence (see breaker.go), not on one slow call.
func (l *Limiter) Degraded() bool { return l.redis != nil && l.redis.breaker.isTripped() }

// Ready reports whether the limiter can enforce shares correctly: without
// Redis at once; with Redis once it has read the live replica count (or
// found Redis down at start, when it starts alone). It never turns false
// again: a later outage keeps the last count.
func (l *Limiter) Ready() bool { return l.ready.Load() }

// Replicas is the live replica count last learned from heartbeats (1
// without Redis, or before the first heartbeat answered).
func (l *Limiter) Replicas() int { return int(l.replicas.Load()) }

// Allow takes one request from the bucket for (scope, key). The error is
// ErrUnavailable only under FailDeny while Redis cannot decide.
func (l *Limiter) Allow(ctx context.Context, scope string, key Key, lim Limit) (Result, error) {
	now := l.now()
	if l.redis == nil {
		return l.local.allow(scope, key, lim, now), nil
	}
	h := l.local.hash(scope, key)
	if until, ok := l.denied.blocked(h, now); ok {
		// Redis already said no until then: answer without a round trip.
		return Result{Limit: lim, RetryAfter: until.Sub(now), ResetAfter: until.Sub(now)}, nil
	}
	res, err := l.redis.allow(ctx, scope, key, lim, now)
	if err == nil {
		l.succeeded()
		if !res.Allowed && res.RetryAfter > 0 {
			l.denied.remember(h, now.Add(res.RetryAfter))
		}
		return res, nil
	}
	// This request could not be decided by Redis in time: the failure
	// policy applies to it, whatever the breaker concludes.
	l.metrics.RateLimitBackendFailures.Inc()
	if !errors.Is(err, ErrUnavailable) {
		l.failed(err)
	}
	switch l.onFailure {
	case FailAllow:
		return Result{Allowed: true, Limit: lim, Remaining: lim.Burst}, nil
	case FailDeny:
		return Result{Limit: lim, RetryAfter: time.Second}, ErrUnavailable
	}
	return l.local.allow(scope, key, lim.share(l.Replicas()), now), nil
}

// failed feeds one failed call to the breaker and reports an outage once.
func (l *Limiter) failed(err error) {
	if l.redis.breaker.failure(l.now(), err) {
		l.metrics.RedisUp.Set(0)
		l.log.Warn("redis is unreachable; rate limits follow on_redis_failure", "policy", l.onFailure, "replicas", l.Replicas(), "error", err)
	}
}

// succeeded closes the breaker and reports a recovery once.
func (l *Limiter) succeeded() {
	if l.redis.breaker.success() {
		l.metrics.RedisUp.Set(1)
		l.log.Info("redis is reachable again; shared rate limits resumed", "replicas", l.Replicas())
	}
}

// Run announces this replica in Redis and learns the live replica count
// until ctx ends; it returns at once without Redis.
func (l *Limiter) Run(ctx context.Context) {
	if l.redis == nil {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := l.redis.heartbeat(ctx, l.id, heartbeatTTL)
		switch {
		case err == nil:
			l.replicas.Store(int64(max(1, n)))
			l.ready.Store(true)
			l.succeeded()
		case ctx.Err() != nil:
			return
		default:
			l.failed(err)
			if l.Degraded() && l.ready.CompareAndSwap(false, true) {
				l.log.Warn("redis is unreachable at start; this replica starts alone, degraded", "error", err)
			}
		}
		switch {
		case !l.Ready():
			t.Reset(heartbeatStartRetry)
		case err != nil || l.Degraded():
			t.Reset(heartbeatRetry)
		default:
			t.Reset(heartbeatEvery)
		}
	}
}

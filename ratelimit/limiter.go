package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
// for heartbeatTTL, so the documented "at least every 5 s" holds with room.
const (
	heartbeatEvery = 2 * time.Second
	heartbeatTTL   = 6 * time.Second
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
	replicas  atomic.Int64
	up        atomic.Bool
	denied    *deniedSet
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
		l.up.Store(true)
		o.Metrics.RedisUp.Set(1)
	}
	return l
}

// Degraded reports that Redis is configured but not answering.
func (l *Limiter) Degraded() bool { return l.redis != nil && !l.up.Load() }

// Replicas is the live replica count learned from heartbeats (1 without Redis).
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
		if !res.Allowed && res.RetryAfter > 0 {
			l.denied.remember(h, now.Add(res.RetryAfter))
		}
		return res, nil
	}
	l.metrics.RateLimitBackendFailures.Inc()
	l.markDown(err)
	switch l.onFailure {
	case FailAllow:
		return Result{Allowed: true, Limit: lim, Remaining: lim.Burst}, nil
	case FailDeny:
		return Result{Limit: lim, RetryAfter: time.Second}, ErrUnavailable
	}
	return l.local.allow(scope, key, lim.share(l.Replicas()), now), nil
}

func (l *Limiter) markDown(err error) {
	if l.up.CompareAndSwap(true, false) {
		l.metrics.RedisUp.Set(0)
		l.log.Warn("redis is unreachable; rate limits follow on_redis_failure", "policy", l.onFailure, "replicas", l.Replicas(), "error", err)
	}
}

func (l *Limiter) markUp(replicas int) {
	l.replicas.Store(int64(max(1, replicas)))
	l.redis.breaker.success()
	if l.up.CompareAndSwap(false, true) {
		l.metrics.RedisUp.Set(1)
		l.log.Info("redis is reachable again; shared rate limits resumed", "replicas", replicas)
	}
}

// Run announces this replica in Redis and watches Redis's health until ctx
// ends; it returns at once without Redis.
func (l *Limiter) Run(ctx context.Context) {
	if l.redis == nil {
		return
	}
	beat := func() {
		n, err := l.redis.heartbeat(ctx, l.id, heartbeatTTL)
		if err != nil {
			if ctx.Err() == nil {
				l.markDown(err)
			}
			return
		}
		l.markUp(n)
	}
	beat()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := l.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Beat every heartbeatEvery while up; probe every second while
		// down, so recovery is noticed well within the documented 5 s.
		if !l.up.Load() || l.now().Sub(last) >= heartbeatEvery {
			last = l.now()
			beat()
		}
	}
}

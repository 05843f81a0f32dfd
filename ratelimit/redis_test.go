package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/redistest"
	"github.com/portcullis/portcullis/internal/schedtest"
)

func newClient(t testing.TB, addr string, timeout time.Duration) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, ReadTimeout: timeout, WriteTimeout: timeout, DialTimeout: 250 * time.Millisecond,
		PoolTimeout: timeout, MaxRetries: -1, ContextTimeoutEnabled: true, DialerRetries: 1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond (a readiness check) until it holds or the deadline.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisGCRA(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr, 200*time.Millisecond)
	l := New(Options{Redis: c, Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	lim := Limit{Requests: 5, Per: time.Hour, Burst: 3}
	for i := 0; i < 3; i++ {
		res, err := l.Allow(ctx, "r", Key{"k", "k"}, lim)
		if err != nil || !res.Allowed || res.Remaining != 2-i {
			t.Fatalf("request %d: %+v %v", i, res, err)
		}
	}
	res, err := l.Allow(ctx, "r", Key{"k", "k"}, lim)
	if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > lim.interval() {
		t.Fatalf("over the burst: %+v %v", res, err)
	}
	// Every key carries a TTL.
	keys, _ := c.Keys(ctx, keyPrefix+"*").Result()
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	if ttl, _ := c.PTTL(ctx, keys[0]).Result(); ttl <= 0 || ttl > time.Duration(lim.Burst)*lim.interval()+time.Second {
		t.Errorf("key TTL %v, want positive and bounded", ttl)
	}
	if len(keys[0]) != len(keyPrefix)+32 {
		t.Errorf("key %q is not prefix + hash", keys[0])
	}
}

// TestReplicasShareOneLimit runs three limiters, each with its own client,
// against one Redis; a bounded concurrent load over all three gets exactly
// the burst through (the window is long enough that nothing refills). On a
// machine so busy that a call misses even this generous timeout, that
// request falls back to its replica's share, and the bound widens by at
// most one share per replica (TestSharedLimitUnderStarvation measures that).
func TestReplicasShareOneLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const n = 30
	lim := Limit{Requests: n, Per: time.Hour, Burst: n}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var replicas []*Limiter
	for i := 0; i < 3; i++ {
		l := New(Options{Redis: newClient(t, srv.Addr, 500*time.Millisecond), Timeout: 500 * time.Millisecond})
		go l.Run(ctx)
		replicas = append(replicas, l)
	}
	for _, l := range replicas {
		waitFor(t, "three replicas counted", 10*time.Second, func() bool { return l.Replicas() == 3 })
	}
	var allowed, denied atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 12; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				res, err := replicas[g%3].Allow(context.Background(), "route:0", Key{"k", "s:alice"}, lim)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					allowed.Add(1)
				} else {
					denied.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	var failed float64
	for _, l := range replicas {
		failed += testutil.ToFloat64(l.metrics.RateLimitBackendFailures)
	}
	a := int(allowed.Load())
	switch {
	case failed == 0 && (a < n || a > n+1):
		t.Errorf("%d of %d allowed across replicas, want %d (at most N+1, no fewer than N)", a, a+int(denied.Load()), n)
	case failed > 0 && a > n+3*lim.share(3).Burst:
		t.Errorf("%d allowed with %v calls timed out, want at most %d", a, failed, n+3*lim.share(3).Burst)
	}
}

func TestRedisFailurePolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{FailLocal, FailAllow, FailDeny} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			const timeout = 50 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var ls []*Limiter
			for i := 0; i < 3; i++ {
				l := New(Options{Redis: newClient(t, srv.Addr, timeout), Timeout: timeout, OnFailure: policy})
				go l.Run(ctx)
				ls = append(ls, l)
			}
			l := ls[0]
			waitFor(t, "three replicas seen", 10*time.Second, func() bool { return l.Replicas() == 3 })
			lim := Limit{Requests: 9, Per: time.Hour, Burst: 9}

			srv.Pause() // a hung Redis: the worst case for latency
			// The bound is on waiting for Redis. On a saturated machine
			// (race detector, busy loops) single calls also stall for
			// hundreds of milliseconds that a sleeping probe does not
			// see, so the bound applies to the median call, net of the
			// measured scheduler lateness; any call is held to no hang.
			var over []time.Duration
			for i := 0; i < 10; i++ {
				lag := schedtest.Lag()
				start := time.Now()
				res, err := l.Allow(ctx, "r", Key{"k", "k"}, lim)
				d := time.Since(start)
				if late := lag(); d > timeout+100*time.Millisecond+late {
					over = append(over, d)
				}
				if d > 5*time.Second {
					t.Errorf("call %d hung for %v with Redis hung", i, d)
				}
				switch policy {
				case FailDeny:
					if !errors.Is(err, ErrUnavailable) {
						t.Errorf("deny: %+v %v, want ErrUnavailable", res, err)
					}
				case FailAllow:
					if err != nil || !res.Allowed {
						t.Errorf("allow: %+v %v", res, err)
					}
				case FailLocal:
					// A third of 9 each: 3 allowed, then refused.
					if err != nil || res.Allowed != (i < 3) || res.Limit.Requests != 3 {
						t.Errorf("local call %d: %+v %v, want a share of 3", i, res, err)
					}
				}
			}
			if len(over) > 4 {
				t.Errorf("%d of 10 calls waited longer than %v plus scheduler lateness with Redis hung: %v", len(over), timeout+100*time.Millisecond, over)
			}
			// Timeouts are not an outage until they last: the breaker trips
			// once calls have failed for breakerEvidence.
			waitFor(t, "degraded while Redis hangs", 10*time.Second, l.Degraded)
			srv.Resume()
			srv.Restart(t) // back, empty
			waitFor(t, "recovery", 10*time.Second, func() bool { return !l.Degraded() })
			waitFor(t, "shared limiting resumes", 10*time.Second, func() bool {
				res, err := l.Allow(ctx, "r", Key{"k", "fresh"}, lim)
				return err == nil && res.Allowed && res.Limit.Requests == 9
			})
		})
	}
}

// pipelineCounter counts pipelines sent, i.e. round trips to Redis.
type pipelineCounter struct{ n atomic.Int32 }

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestBreakerStopsCallsToADeadRedis: refused connections are evidence, so
// the breaker opens after breakerHardFailures of them, and from then on no
// call reaches the network until the cooldown passes (the clock is frozen
// here, so it never does).
func TestBreakerStopsCallsToADeadRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr, 50*time.Millisecond)
	hook := &pipelineCounter{}
	c.AddHook(hook)
	frozen := time.Now()
	l := New(Options{Redis: c, Timeout: 50 * time.Millisecond, OnFailure: FailAllow, Now: func() time.Time { return frozen }})
	srv.Kill()
	// Each attempt is refused at once; on a starved machine one may still
	// miss its deadline first (not evidence), so allow a few more.
	for i := 0; i < 10*breakerHardFailures && !l.Degraded(); i++ {
		_, _ = l.Allow(context.Background(), "r", Key{"k", "k"}, Limit{1, time.Second, 1})
	}
	if !l.redis.breaker.open(frozen) || !l.Degraded() {
		t.Fatal("breaker not open after repeated refused connections")
	}
	before := hook.n.Load()
	for i := 0; i < 100; i++ {
		if res, _ := l.Allow(context.Background(), "r", Key{"k", "k"}, Limit{1, time.Second, 1}); !res.Allowed {
			t.Fatal("on_redis_failure allow refused a request")
		}
	}
	if n := hook.n.Load() - before; n != 0 {
		t.Errorf("%d round trips to Redis with the breaker open, want 0", n)
	}
}

// TestDeniedKeysSkipTheRoundTrip: once Redis refuses a key, further
// requests for it are refused from memory until its retry time, while Redis
// still decides for every other key.
func TestDeniedKeysSkipTheRoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	l := New(Options{Redis: newClient(t, srv.Addr, time.Second), Timeout: time.Second})
	ctx := context.Background()
	lim := Limit{Requests: 1, Per: time.Hour, Burst: 1}
	if res, err := l.Allow(ctx, "r", Key{"k", "a"}, lim); err != nil || !res.Allowed {
		t.Fatalf("first: %+v %v", res, err)
	}
	if res, _ := l.Allow(ctx, "r", Key{"k", "a"}, lim); res.Allowed {
		t.Fatal("second allowed")
	}
	srv.Kill() // from here only memory can answer for "a"
	for i := 0; i < 3; i++ {
		res, err := l.Allow(ctx, "r", Key{"k", "a"}, lim)
		if err != nil || res.Allowed || res.RetryAfter <= 0 {
			t.Fatalf("refused key with Redis gone: %+v %v, want a refusal from memory", res, err)
		}
	}
	if got := testutil.ToFloat64(l.metrics.RateLimitBackendFailures); got != 0 {
		t.Errorf("%v backend calls failed: the known-refused key still went to Redis", got)
	}
}

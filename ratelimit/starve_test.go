package ratelimit

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/internal/redistest"
)

// burnCPU starves the machine the way a busy node does: n busy processes
// (each stops by itself after two minutes, and is killed by PID when the
// test ends) and n busy goroutines in this process, competing with the
// limiters' own goroutines for the Go scheduler.
func burnCPU(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		cmd := exec.Command("timeout", "120", "sh", "-c", "while :; do :; done")
		// Its own process group, ended whole: killing timeout alone would
		// orphan the shell, which then spins forever.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a busy process: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				for j := 0; j < 1e6; j++ {
				}
				runtime.Gosched()
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestSharedLimitUnderStarvation runs three limiters (each with its own
// client, the default 50 ms timeout) against a real Redis while busy
// processes and goroutines starve the machine, and spreads bounded
// concurrent load over them. Whatever the scheduler does, the replicas
// admit at most the limit plus one local share each (a call that missed its
// deadline falls back to the share); in rounds where no call failed they
// admit the limit, give or take one per replica.
func TestSharedLimitUnderStarvation(t *testing.T) {
	if testing.Short() {
		t.Skip("starves the machine for several seconds")
	}
	srv := redistest.Start(t)
	burnCPU(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const replicas = 3
	var ls []*Limiter
	for i := 0; i < replicas; i++ {
		l := New(Options{Redis: newClient(t, srv.Addr, 50*time.Millisecond), Timeout: 50 * time.Millisecond})
		go l.Run(ctx)
		ls = append(ls, l)
	}
	for i, l := range ls {
		waitFor(t, fmt.Sprintf("replica %d ready and counting %d", i, replicas), 30*time.Second, func() bool {
			return l.Ready() && l.Replicas() == replicas
		})
	}
	lim := Limit{Requests: 20, Per: time.Hour, Burst: 20}
	share := lim.share(replicas).Burst
	failures := func() (n float64) {
		for _, l := range ls {
			n += testutil.ToFloat64(l.metrics.RateLimitBackendFailures)
		}
		return n
	}
	for round := 0; round < 6; round++ {
		key := Key{"subject", fmt.Sprintf("round-%d", round)}
		before := failures()
		var allowed atomic.Int32
		var wg sync.WaitGroup
		for g := 0; g < 12; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					res, err := ls[g%replicas].Allow(ctx, "route:0", key, lim)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Allowed {
						allowed.Add(1)
					}
				}
			}(g)
		}
		wg.Wait()
		failed, got := failures()-before, int(allowed.Load())
		t.Logf("round %d: %d of 120 allowed, %v calls failed", round, got, failed)
		if max := lim.Burst + replicas*share; got > max {
			t.Errorf("round %d: %d allowed, more than the limit %d plus one share (%d) per replica", round, got, lim.Burst, share)
		}
		if failed == 0 && (got < lim.Burst || got > lim.Burst+replicas) {
			t.Errorf("round %d: %d allowed with every call answered, want %d to %d", round, got, lim.Burst, lim.Burst+replicas)
		}
		for i, l := range ls {
			if l.Replicas() != replicas {
				t.Errorf("round %d: replica %d counts %d replicas, want %d", round, i, l.Replicas(), replicas)
			}
		}
	}
}

// TestReadyOnlyAfterTheCount: a replica that starts while two others are
// live is not ready before it has read the live count, and the count it
// has when it turns ready includes the others (it never acts alone).
func TestReadyOnlyAfterTheCount(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 2; i++ {
		l := New(Options{Redis: newClient(t, srv.Addr, time.Second), Timeout: time.Second})
		go l.Run(ctx)
		waitFor(t, "an earlier replica ready", 10*time.Second, l.Ready)
	}
	late := New(Options{Redis: newClient(t, srv.Addr, time.Second), Timeout: time.Second})
	if late.Ready() {
		t.Fatal("ready before reading the replica count")
	}
	go late.Run(ctx)
	waitFor(t, "the late replica ready", 10*time.Second, late.Ready)
	if n := late.Replicas(); n != 3 {
		t.Errorf("ready with %d replicas counted, want 3", n)
	}
	if late.Degraded() {
		t.Error("degraded with Redis up")
	}
}

// TestStartsAloneWhenRedisIsDown: with nothing listening, the replica
// becomes ready on that evidence, alone and degraded.
func TestStartsAloneWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	l := New(Options{Redis: newClient(t, addr, 50*time.Millisecond), Timeout: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	waitFor(t, "ready with Redis down", 10*time.Second, l.Ready)
	if !l.Degraded() || l.Replicas() != 1 {
		t.Errorf("degraded=%v replicas=%d, want degraded and alone", l.Degraded(), l.Replicas())
	}
}

// TestTimedOutCallStillCounts: a call that misses its deadline may still
// run in Redis once Redis gets to it. The request it belonged to was
// decided locally, so it is counted twice (never zero times): the next
// answer from Redis reflects it.
func TestTimedOutCallStillCounts(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr, 50*time.Millisecond)
	l := New(Options{Redis: c, Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	lim := Limit{Requests: 10, Per: time.Hour, Burst: 10}
	key := Key{"k", "late"}
	// A connection that is already set up, so the call is written to the
	// socket before Redis stops answering (a new one would stall in the
	// handshake and never send it).
	failures := func() float64 { return testutil.ToFloat64(l.metrics.RateLimitBackendFailures) }
	waitFor(t, "a call answered by Redis", 10*time.Second, func() bool {
		before := failures()
		_, _ = l.Allow(ctx, "r", Key{"k", "warm-up"}, lim)
		return failures() == before
	})
	before := failures()
	srv.Pause()
	res, err := l.Allow(ctx, "r", key, lim)
	if err != nil || !res.Allowed || res.Limit.Requests != lim.Requests {
		t.Fatalf("with Redis paused: %+v %v, want a local decision", res, err)
	}
	if got := failures() - before; got != 1 {
		t.Fatalf("%v backend failures, want 1", got)
	}
	srv.Resume()
	waitFor(t, "the timed-out call lands in Redis", 10*time.Second, func() bool {
		n, err := c.Exists(ctx, redisKey("r", key)).Result()
		return err == nil && n == 1
	})
	res, err = l.Allow(ctx, "r", key, lim)
	if err != nil || !res.Allowed || res.Remaining != lim.Burst-2 {
		t.Errorf("after the timed-out call: %+v %v, want remaining %d (it counted)", res, err, lim.Burst-2)
	}
}

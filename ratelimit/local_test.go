package ratelimit

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestLocalBucket(t *testing.T) {
	t.Parallel()
	lim := Limit{Requests: 10, Per: time.Second, Burst: 3}
	steps := []struct {
		at            time.Duration
		wantAllowed   bool
		wantRemaining int
	}{
		{0, true, 2}, {0, true, 1}, {0, true, 0}, {0, false, 0},
		{100 * time.Millisecond, true, 0}, // one token back after 1/10 s
		{100 * time.Millisecond, false, 0},
		{time.Second, true, 2}, // refilled to the burst, never beyond
	}
	l := newLocal()
	for i, s := range steps {
		res := l.allow("r", Key{"k", "k"}, lim, t0.Add(s.at))
		if res.Allowed != s.wantAllowed || res.Remaining != s.wantRemaining {
			t.Fatalf("step %d at %v: allowed=%v remaining=%d, want %v %d", i, s.at, res.Allowed, res.Remaining, s.wantAllowed, s.wantRemaining)
		}
		if !res.Allowed && (res.RetryAfter <= 0 || res.RetryAfter > 100*time.Millisecond) {
			t.Errorf("step %d: RetryAfter %v, want (0, 100ms]", i, res.RetryAfter)
		}
	}
	if other := l.allow("r", Key{"k", "other"}, lim, t0); !other.Allowed {
		t.Error("another key shares the bucket")
	}
	if other := l.allow("r2", Key{"k", "k"}, lim, t0); !other.Allowed {
		t.Error("another scope shares the bucket")
	}
}

func TestShare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   Limit
		n    int
		want Limit
	}{
		{Limit{100, time.Minute, 20}, 1, Limit{100, time.Minute, 20}},
		{Limit{100, time.Minute, 20}, 3, Limit{34, time.Minute, 7}},
		{Limit{2, time.Second, 1}, 5, Limit{1, time.Second, 1}},
	}
	for _, tc := range tests {
		if got := tc.in.share(tc.n); got != tc.want {
			t.Errorf("%v.share(%d) = %v, want %v", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestLocalMemoryBound pushes two million distinct keys through the local
// store: it keeps at most localMaxKeys buckets and its heap stays under
// 24 MiB (local.go states ~15 MiB for the buckets themselves).
func TestLocalMemoryBound(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a memory flood: run without -race and -short (make test does)")
	}
	const keys = 2_000_000
	const bound = 24 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := newLocal()
	lim := Limit{Requests: 100, Per: time.Minute, Burst: 10}
	for i := 0; i < keys; i++ {
		l.allow("route:0", Key{"ip", strconv.Itoa(i)}, lim, t0.Add(time.Duration(i)*time.Microsecond))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := l.size(); n > localMaxKeys {
		t.Errorf("%d buckets live, bound %d", n, localMaxKeys)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grown > bound {
		t.Errorf("heap grew by %d MiB for %d keys, bound %d MiB", grown>>20, keys, bound>>20)
	}
	runtime.KeepAlive(l)
	t.Logf("%d keys: %d buckets, heap +%.1f MiB", keys, l.size(), float64(grown)/(1<<20))
}

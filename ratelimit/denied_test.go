package ratelimit

import (
	"runtime"
	"testing"
	"time"
)

// TestDeniedSetMemoryBound remembers a million distinct refused keys (a
// flood of new keys over a limit of one): at most deniedMax are held, and
// the heap stays within 6 MiB.
func TestDeniedSetMemoryBound(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a memory flood: run without -race and -short (make test does)")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := newDeniedSet()
	for i := uint64(0); i < 1_000_000; i++ {
		d.remember(i*0x9e3779b97f4a7c15, t0.Add(time.Minute))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := 0
	for i := range d.shards {
		n += len(d.shards[i].until)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("1,000,000 refused keys: %d held, heap +%.1f MiB", n, float64(grown)/(1<<20))
	if n > deniedMax {
		t.Errorf("%d entries held, bound %d", n, deniedMax)
	}
	if grown > 6<<20 {
		t.Errorf("heap grew %d bytes, bound 6 MiB", grown)
	}
	runtime.KeepAlive(d)
}

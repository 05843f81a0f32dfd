package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Local store bounds. At most localMaxKeys buckets exist at once, about
// 230 bytes each with map overhead, so a flood of distinct keys (random IPs,
// header values) costs at most ~15 MiB; TestLocalMemoryBound checks it with
// two million keys.
const (
	localShards  = 64
	localMaxKeys = 65536
	perShard     = localMaxKeys / localShards
)

// local is an in-memory bucket store. Keys are 64-bit seeded hashes: the
// store never holds caller-chosen strings, and without the per-process seed
// nobody can aim two keys at one bucket. Safe for concurrent use.
type local struct {
	seed   maphash.Seed
	shards [localShards]localShard
}

type localShard struct {
	mu      sync.Mutex
	buckets map[uint64]*bucket
}

type bucket struct {
	lim      *rate.Limiter
	limit    Limit
	lastSeen time.Time
}

func newLocal() *local {
	l := &local{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[uint64]*bucket)
	}
	return l
}

func (l *local) hash(scope string, key Key) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(scope)
	h.WriteByte(0)
	h.WriteString(key.Kind)
	h.WriteByte(0)
	h.WriteString(key.Value)
	return h.Sum64()
}

// allow takes one token from the bucket for (scope, key).
func (l *local) allow(scope string, key Key, lim Limit, now time.Time) Result {
	k := l.hash(scope, key)
	s := &l.shards[k%localShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[k]
	if b == nil {
		if len(s.buckets) >= perShard {
			s.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Every(lim.interval()), lim.Burst), limit: lim}
		s.buckets[k] = b
	} else if b.limit != lim {
		// The fallback share changes with the replica count.
		b.lim.SetLimitAt(now, rate.Every(lim.interval()))
		b.lim.SetBurstAt(now, lim.Burst)
		b.limit = lim
	}
	b.lastSeen = now
	res := Result{Limit: lim}
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		res.RetryAfter = d
		if !r.OK() {
			res.RetryAfter = lim.Per
		}
	} else {
		res.Allowed = true
	}
	tokens := b.lim.TokensAt(now)
	res.Remaining = max(0, int(math.Floor(tokens)))
	missing := float64(lim.Burst) - tokens
	res.ResetAfter = time.Duration(missing * float64(lim.interval()))
	return res
}

// evict makes room in a full shard: first buckets idle long enough to have
// refilled (forgetting them changes nothing), then, if that freed nothing,
// an arbitrary eighth of the shard, so that a flood of new keys pays for a
// scan once per perShard/8 inserts rather than on every one.
func (s *localShard) evict(now time.Time) {
	for k, b := range s.buckets {
		if now.Sub(b.lastSeen) >= b.limit.interval()*time.Duration(max(1, b.limit.Burst)) {
			delete(s.buckets, k)
		}
	}
	for k := range s.buckets {
		if len(s.buckets) <= perShard*7/8 {
			break
		}
		delete(s.buckets, k)
	}
}

// size returns the number of live buckets.
func (l *local) size() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].buckets)
		l.shards[i].mu.Unlock()
	}
	return n
}

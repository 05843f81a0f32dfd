package issuer

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Cache bounds, in bytes, because entries are not all alike: a token may
// be 8 KiB, and the principal decoded from it (subject, scope string,
// scope list, audience) grows with it. CacheMaxBytes caps the sum of
// principalSize over the cache, split evenly over cacheShards shards
// (64 keep lock contention negligible on the request path). At 8 MiB that
// is about 1,000 entries of the largest tokens, or 20,000 ordinary ones:
// a miss costs one signature check, and the bound keeps the cache far
// inside a 128 MiB container (see README, "Bounded memory").
const (
	CacheMaxBytes = 8 << 20
	cacheShards   = 64
	shardBudget   = CacheMaxBytes / cacheShards
	// mapSlotOverhead is a map slot: a 32-byte key, the entry, a control
	// byte and slack for the load factor. The Principal struct itself is
	// in its footprint.
	mapSlotOverhead = 96
)

// tokenCache remembers tokens whose signature and claims were verified, so a
// reused token costs a hash and a map lookup instead of a signature check.
// It never caches a route, scope or revocation decision: those run on every
// request (Ory Oathkeeper's CVE-2021-32701 cached too much). Safe for
// concurrent use.
type tokenCache struct {
	shards [cacheShards]cacheShard
	// seen is the doorkeeper: a token enters the cache on its second
	// verification, not its first. Tokens used once — a flood of fresh
	// valid tokens, or the benchmark's fresh-token mode — then never fill
	// the cache or push out the tokens in use (a sidecar's callers reuse a
	// token for its whole life, so they lose one signature check). Each
	// slot holds a fingerprint of the last token that mapped to it; a
	// collision only delays a token's admission.
	seen [seenSlots]atomic.Uint64
}

// seenSlots fingerprints (256 KiB) remember the tokens verified once.
const seenSlots = 1 << 15

type cacheEntry struct {
	p    *Principal
	size int
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[[32]byte]cacheEntry
	bytes   int
	// soonest is the earliest cacheUntil in the shard (unix ns): a full
	// shard scans for expired entries only when one can have expired.
	soonest int64
}

func newTokenCache() *tokenCache {
	c := &tokenCache{}
	for i := range c.shards {
		c.shards[i].entries = make(map[[32]byte]cacheEntry)
	}
	return c
}

// cacheKey is SHA-256 of the token: collision-resistant, so a forged token
// cannot alias a cached one, and the cache never holds the token itself.
// The token's bytes are read in place (Sum256 never writes to its input),
// which saves copying up to 8 KiB per request.
func cacheKey(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (c *tokenCache) shard(k *[32]byte) *cacheShard { return &c.shards[k[0]%cacheShards] }

// get returns the principal for a cached token still valid at now.
func (c *tokenCache) get(k [32]byte, now time.Time) *Principal {
	s := c.shard(&k)
	s.mu.RLock()
	e := s.entries[k]
	s.mu.RUnlock()
	if e.p == nil || !now.Before(e.p.cacheUntil) {
		return nil
	}
	return e.p
}

// principalSize is what an entry holds, counted generously: the
// principal's footprint (its strings, slice headers — which for a token of
// many one-letter scopes outweigh the scopes themselves — and the claims
// routes and headers keep) plus the map slot.
func principalSize(p *Principal) int {
	n := p.size // the footprint estimated when it was verified (Principal.footprint)
	if n == 0 {
		n = p.footprint()
	}
	return mapSlotOverhead + n
}

// seenSlot returns k's doorkeeper slot and fingerprint.
func (c *tokenCache) seenSlot(k *[32]byte) (*atomic.Uint64, uint64) {
	fp := binary.LittleEndian.Uint64(k[8:]) | 1 // never the empty slot's 0
	return &c.seen[binary.LittleEndian.Uint32(k[16:])%seenSlots], fp
}

// seenBefore reports whether k was verified before and is remembered.
func (c *tokenCache) seenBefore(k *[32]byte) bool {
	slot, fp := c.seenSlot(k)
	return slot.Load() == fp
}

// admit reports whether k was verified before (and remembers it if not).
func (c *tokenCache) admit(k *[32]byte) bool {
	slot, fp := c.seenSlot(k)
	if slot.Load() == fp {
		return true
	}
	slot.Store(fp)
	return false
}

// put caches p for k from k's second verification on.
func (c *tokenCache) put(k [32]byte, p *Principal, now time.Time) {
	if !c.admit(&k) {
		return
	}
	size := principalSize(p)
	if size > shardBudget {
		return // cannot happen for tokens within MaxTokenBytes; never evict a shard for one
	}
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[k]; ok {
		s.bytes -= old.size
		delete(s.entries, k)
	}
	if s.bytes+size > shardBudget {
		s.evict(now, size)
	}
	until := p.cacheUntil.UnixNano()
	if len(s.entries) == 0 || until < s.soonest {
		s.soonest = until
	}
	s.entries[k] = cacheEntry{p: p, size: size}
	s.bytes += size
}

// evict makes room for size bytes: expired entries first (when one can
// have expired), then arbitrary ones (Go's map order is randomised, so a
// flood cannot aim at particular entries), which keeps the bound without
// a per-entry LRU list on the request path. The caller holds s.mu.
func (s *cacheShard) evict(now time.Time, size int) {
	if now.UnixNano() >= s.soonest {
		soonest := int64(1<<63 - 1)
		for k, e := range s.entries {
			until := e.p.cacheUntil.UnixNano()
			if !now.Before(e.p.cacheUntil) {
				s.bytes -= e.size
				delete(s.entries, k)
				continue
			}
			soonest = min(soonest, until)
		}
		s.soonest = soonest
	}
	for k, e := range s.entries {
		if s.bytes+size <= shardBudget {
			break
		}
		s.bytes -= e.size
		delete(s.entries, k)
	}
}

// size returns the number of entries and the bytes they account for.
func (c *tokenCache) size() (entries, bytes int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.entries)
		bytes += s.bytes
		s.mu.RUnlock()
	}
	return entries, bytes
}

package issuer

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// Cache bounds. 64 shards keep lock contention negligible on the request
// path; 16,384 entries, and at most 32 MiB of principals by their estimated
// footprint (a token may be 8 KiB, and a principal keeps its identity
// strings and the claims routes and headers refer to), however many
// distinct tokens a flood sends. A principal too large for a shard's share
// is verified every time instead of cached.
const (
	cacheShards     = 64
	cacheMaxEntries = 16384
	cacheMaxBytes   = 32 << 20
)

// tokenCache remembers tokens whose signature and claims were verified, so a
// reused token costs a hash and a map lookup instead of a signature check.
// It never caches a route, scope or revocation decision: those run on every
// request (Ory Oathkeeper's CVE-2021-32701 cached too much). Safe for
// concurrent use.
type tokenCache struct {
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[[32]byte]*Principal
	bytes   int // sum of the entries' footprints
}

func newTokenCache() *tokenCache {
	c := &tokenCache{}
	for i := range c.shards {
		c.shards[i].entries = make(map[[32]byte]*Principal)
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
	p := s.entries[k]
	s.mu.RUnlock()
	if p == nil || !now.Before(p.cacheUntil) {
		return nil
	}
	return p
}

func (c *tokenCache) put(k [32]byte, p *Principal, now time.Time) {
	const maxEntries, maxBytes = cacheMaxEntries / cacheShards, cacheMaxBytes / cacheShards
	if p.size > maxBytes {
		return
	}
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.entries[k]; old != nil {
		s.bytes -= old.size
		delete(s.entries, k)
	}
	full := func() bool { return len(s.entries) >= maxEntries || s.bytes+p.size > maxBytes }
	if full() {
		// Drop expired entries first; if the shard is still full, drop
		// arbitrary ones (Go's map order is randomised), which keeps the
		// bound without a per-entry LRU list.
		for key, e := range s.entries {
			if !now.Before(e.cacheUntil) {
				s.bytes -= e.size
				delete(s.entries, key)
			}
		}
		for key, e := range s.entries {
			if !full() {
				break
			}
			s.bytes -= e.size
			delete(s.entries, key)
		}
	}
	s.entries[k] = p
	s.bytes += p.size
}

package issuer

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// Cache bounds. 64 shards keep lock contention negligible on the request
// path; 16,384 entries of a few hundred bytes each cap the cache near 8 MiB
// however many distinct tokens a flood sends.
const (
	cacheShards     = 64
	cacheMaxEntries = 16384
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
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= cacheMaxEntries/cacheShards {
		// Drop expired entries first; if the shard is still full, drop an
		// arbitrary one (Go's map order is randomised), which keeps the
		// bound without a per-entry LRU list.
		for key, e := range s.entries {
			if !now.Before(e.cacheUntil) {
				delete(s.entries, key)
			}
		}
		for key := range s.entries {
			if len(s.entries) < cacheMaxEntries/cacheShards {
				break
			}
			delete(s.entries, key)
		}
	}
	s.entries[k] = p
}

package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// replayMaxEntries bounds the in-memory jti cache. An entry is a
	// 32-byte hash and an expiry, about 100 bytes with map overhead, so the
	// cache stays under 7 MiB. Only assertions whose signature verified are
	// recorded, so filling it takes a client's own key.
	replayMaxEntries = 65536
	// replayKeyPrefix names the shared keys; v1 is the key format (a hex
	// SHA-256 of client id and jti), bumped if that ever changes.
	replayKeyPrefix = "portcullis:jti:v1:"
)

// errReplayFull means the in-memory jti cache holds replayMaxEntries live
// entries; refusing is safer than forgetting one (which would allow a replay).
var errReplayFull = errors.New("client assertion replay cache is full")

// replayRedis is the one Redis command the replay cache uses, so standalone,
// sentinel and cluster clients all fit.
type replayRedis interface {
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
}

// ReplayCache remembers the jti of every client assertion accepted, until
// the assertion expires, so each is accepted once (RFC 7523 §3 item 7).
// With Redis the record is shared by every replica and survives a replica's
// restart (SET NX with a TTL); each replica also keeps its own bounded
// record. When Redis cannot be reached within its timeout, the local record
// decides: /token keeps working, and a replay is refused by the replica
// that saw the assertion, but another replica could accept it once while
// Redis is down. It lives outside the Issuer so a configuration reload keeps
// it. Safe for concurrent use.
type ReplayCache struct {
	redis   replayRedis
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	seen map[[32]byte]time.Time
}

// NewReplayCache returns a cache shared through rdb (nil: this replica
// only); timeout bounds each Redis call.
func NewReplayCache(rdb redis.UniversalClient, timeout time.Duration, log *slog.Logger) *ReplayCache {
	c := &ReplayCache{timeout: timeout, log: log, seen: map[[32]byte]time.Time{}}
	if rdb != nil {
		c.redis = rdb
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.timeout <= 0 {
		c.timeout = 50 * time.Millisecond
	}
	return c
}

// firstUse records the client's jti until expires and reports whether it was
// seen before. now is the issuer's clock.
func (c *ReplayCache) firstUse(ctx context.Context, clientID, jti string, now, expires time.Time) (bool, error) {
	h := sha256.New()
	h.Write([]byte(clientID))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var key [32]byte
	h.Sum(key[:0])

	c.mu.Lock()
	if until, ok := c.seen[key]; ok && now.Before(until) {
		c.mu.Unlock()
		return false, nil
	}
	if len(c.seen) >= replayMaxEntries {
		for k, until := range c.seen {
			if !now.Before(until) {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= replayMaxEntries {
			c.mu.Unlock()
			return false, errReplayFull
		}
	}
	c.seen[key] = expires
	c.mu.Unlock()

	if c.redis == nil {
		return true, nil
	}
	ttl := max(expires.Sub(now), time.Second)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ok, err := c.redis.SetNX(ctx, replayKeyPrefix+hex.EncodeToString(key[:]), 1, ttl).Result()
	if err != nil {
		c.log.Warn("recording a client assertion in Redis failed; this replica's own record decides", "client_id", clientID, "error", err)
		return true, nil
	}
	return ok, nil
}

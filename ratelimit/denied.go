package ratelimit

import (
	"sync"
	"time"
)

// deniedShards spreads the pre-check over independent locks, like the local
// store: every Redis-mode request consults it, so one mutex would be a
// global lock on the request path.
const deniedShards = 64

// deniedSet remembers, per key hash, until when Redis said no, so repeated
// requests over the limit are answered without a round trip. Losing an
// entry only costs a round trip. Safe for concurrent use.
type deniedSet struct {
	shards [deniedShards]deniedShard
}

type deniedShard struct {
	mu    sync.RWMutex
	until map[uint64]time.Time
}

func newDeniedSet() *deniedSet {
	d := &deniedSet{}
	for i := range d.shards {
		d.shards[i].until = make(map[uint64]time.Time)
	}
	return d
}

// blocked reports until when h is known to be over its limit, if still so.
func (d *deniedSet) blocked(h uint64, now time.Time) (time.Time, bool) {
	s := &d.shards[h%deniedShards]
	s.mu.RLock()
	until, ok := s.until[h]
	s.mu.RUnlock()
	return until, ok && now.Before(until)
}

func (d *deniedSet) remember(h uint64, until time.Time) {
	s := &d.shards[h%deniedShards]
	s.mu.Lock()
	if len(s.until) >= deniedMax/deniedShards {
		clear(s.until) // entries live for one retry interval
	}
	s.until[h] = until
	s.mu.Unlock()
}

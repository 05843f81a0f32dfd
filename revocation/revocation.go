// Package revocation remembers revoked tokens (by jti) and revoked subjects
// (every token issued before a moment). Entries live in sharded maps, each
// shard behind its own lock: a check takes one shard's read lock (none at
// all while nothing is revoked), and applying one revocation costs the same
// however many are held, so catching up thousands of them is linear.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Memory bounds. An entry costs its key's bytes plus entryOverhead (the
// map slot, the string header, the expiry and allocation rounding; checked
// by TestRevocationMemoryBound). MaxBytes bounds what this replica records:
// past it, a new revocation is refused (the caller answers 503, never a
// false 200) until expiring entries make room. At 16 MiB that is over
// 150,000 revocations of this issuer's tokens held at once; entries are
// forgotten when the tokens they name expire.
const (
	MaxBytes      = 16 << 20
	entryOverhead = 88
	shards        = 64
	// minPruneAt: a shard drops expired entries whenever it has grown to
	// twice its size after the last pruning (amortised O(1) per insert),
	// but never for fewer entries than this.
	minPruneAt = 64
)

// ErrFull is returned when recording one more revocation would pass
// MaxBytes.
var ErrFull = errors.New("revocation store is full")

// Store holds revocations in memory. It is safe for concurrent use. A Store
// with a Shared backend also records revocations there and learns other
// replicas' revocations from it (see Run).
type Store struct {
	now    func() time.Time
	shared *shared // nil: this replica only
	seed   maphash.Seed
	shards [shards]shard
	// Counters read without a lock: checks skip the maps entirely while
	// nothing is revoked, and the byte bound is checked before inserting.
	tokens, subjects atomic.Int64
	bytes            atomic.Int64
	// synced: every revocation recorded in the shared store before Run
	// started has been applied (always true without one).
	synced atomic.Bool
}

type shard struct {
	mu       sync.RWMutex
	tokens   map[string]int64 // jti → token expiry, unix ns (forget after)
	subjects map[string]subjectRevocation
	pruneAt  int
}

// subjectRevocation revokes a subject's tokens issued at or before before;
// it is forgotten after until, when every such token has expired (unix ns).
type subjectRevocation struct{ before, until int64 }

// New returns an empty store; now is injected for tests (nil means time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{now: now, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].tokens = make(map[string]int64)
		s.shards[i].subjects = make(map[string]subjectRevocation)
		s.shards[i].pruneAt = minPruneAt
	}
	s.synced.Store(true)
	return s
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shards]
}

// IsRevoked reports whether the token with this jti, subject and issue time
// has been revoked.
func (s *Store) IsRevoked(jti, subject string, issuedAt time.Time) bool {
	if jti != "" && s.tokens.Load() != 0 {
		sh := s.shard(jti)
		sh.mu.RLock()
		_, ok := sh.tokens[jti]
		sh.mu.RUnlock()
		if ok {
			return true
		}
	}
	if s.subjects.Load() != 0 {
		sh := s.shard(subject)
		sh.mu.RLock()
		r, ok := sh.subjects[subject]
		sh.mu.RUnlock()
		if ok && issuedAt.UnixNano() <= r.before {
			return true
		}
	}
	return false
}

// Synced reports whether the revocations recorded in the shared store
// before this replica started have all been applied, so that a revoked
// token is refused from the first request. A store that is not shared is
// always synced.
func (s *Store) Synced() bool { return s.synced.Load() }

// RevokeToken records a token revocation until the token would have expired
// anyway. With a shared backend the revocation is recorded there first, and
// an error means it was not recorded (the caller must not report success).
func (s *Store) RevokeToken(ctx context.Context, jti string, expiry time.Time) error {
	if err := s.room(jti); err != nil {
		return err
	}
	if s.shared != nil {
		if err := s.shared.publish(ctx, event{Kind: kindToken, Key: jti, At: expiry}); err != nil {
			return err
		}
	}
	s.applyToken(jti, expiry.UnixNano())
	return nil
}

// RevokeSubject revokes every token of subject issued at or before before.
// until is when the last such token expires (before plus the longest token
// lifetime); the entry is forgotten after it.
func (s *Store) RevokeSubject(ctx context.Context, subject string, before, until time.Time) error {
	if err := s.room(subject); err != nil {
		return err
	}
	if s.shared != nil {
		if err := s.shared.publish(ctx, event{Kind: kindSubject, Key: subject, At: before, Until: until}); err != nil {
			return err
		}
	}
	s.applySubject(subject, before.UnixNano(), until.UnixNano())
	return nil
}

// room refuses a new revocation past MaxBytes, after dropping whatever has
// expired. Revocations learned from other replicas are always applied:
// they were checked against the same bound where they were recorded.
func (s *Store) room(key string) error {
	cost := int64(len(key) + entryOverhead)
	if s.bytes.Load()+cost <= MaxBytes {
		return nil
	}
	s.prune()
	if s.bytes.Load()+cost <= MaxBytes {
		return nil
	}
	return fmt.Errorf("%w: %d bytes held, bound %d; entries are forgotten as their tokens expire", ErrFull, s.bytes.Load(), MaxBytes)
}

func (s *Store) applyToken(jti string, expiry int64) {
	sh := s.shard(jti)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.tokens[jti]; ok {
		return
	}
	s.maybePrune(sh)
	sh.tokens[jti] = expiry
	s.tokens.Add(1)
	s.bytes.Add(int64(len(jti) + entryOverhead))
}

func (s *Store) applySubject(subject string, before, until int64) {
	sh := s.shard(subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.subjects[subject]
	if ok && before <= cur.before {
		return
	}
	if !ok {
		s.maybePrune(sh)
		s.subjects.Add(1)
		s.bytes.Add(int64(len(subject) + entryOverhead))
	}
	sh.subjects[subject] = subjectRevocation{before: before, until: until}
}

// maybePrune drops a shard's expired entries once it has doubled since the
// last time. The caller holds sh.mu.
func (s *Store) maybePrune(sh *shard) {
	if len(sh.tokens)+len(sh.subjects) < sh.pruneAt {
		return
	}
	s.pruneShard(sh, s.now().UnixNano())
	sh.pruneAt = max(minPruneAt, 2*(len(sh.tokens)+len(sh.subjects)))
}

// pruneShard drops entries whose tokens have all expired: a revoked token
// that has expired is rejected anyway. The caller holds sh.mu.
func (s *Store) pruneShard(sh *shard, now int64) {
	for k, exp := range sh.tokens {
		if exp <= now {
			delete(sh.tokens, k)
			s.tokens.Add(-1)
			s.bytes.Add(-int64(len(k) + entryOverhead))
		}
	}
	for k, v := range sh.subjects {
		if v.until <= now {
			delete(sh.subjects, k)
			s.subjects.Add(-1)
			s.bytes.Add(-int64(len(k) + entryOverhead))
		}
	}
}

// prune drops every expired entry, one shard at a time.
func (s *Store) prune() {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		s.pruneShard(sh, now)
		sh.mu.Unlock()
	}
}

// Len drops expired entries and returns the number of token and subject
// revocations still remembered.
func (s *Store) Len() (tokens, subjects int) {
	s.prune()
	return int(s.tokens.Load()), int(s.subjects.Load())
}

// Bytes returns the accounted size of the entries held (see MaxBytes).
func (s *Store) Bytes() int64 { return s.bytes.Load() }

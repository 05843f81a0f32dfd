// Package revocation remembers revoked tokens (by jti) and revoked subjects
// (every token issued before a moment). Checks read an immutable snapshot
// through an atomic pointer, so the request path takes no lock; revocations
// are rare and copy the snapshot.
package revocation

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Store holds revocations in memory. It is safe for concurrent use. A Store
// with a Shared backend also records revocations there and learns other
// replicas' revocations from it (see Sync).
type Store struct {
	now    func() time.Time
	shared *shared    // nil: this replica only
	mu     sync.Mutex // serialises writers
	snap   atomic.Pointer[snapshot]
}

type snapshot struct {
	tokens   map[string]time.Time // jti → token expiry (forget after)
	subjects map[string]subjectRevocation
}

// subjectRevocation revokes a subject's tokens issued at or before before;
// it is forgotten after until, when every such token has expired.
type subjectRevocation struct{ before, until time.Time }

// New returns an empty store; now is injected for tests (nil means time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{now: now}
	s.snap.Store(&snapshot{})
	return s
}

// IsRevoked reports whether the token with this jti, subject and issue time
// has been revoked.
func (s *Store) IsRevoked(jti, subject string, issuedAt time.Time) bool {
	sn := s.snap.Load()
	if len(sn.tokens) == 0 && len(sn.subjects) == 0 {
		return false
	}
	if jti != "" {
		if _, ok := sn.tokens[jti]; ok {
			return true
		}
	}
	if r, ok := sn.subjects[subject]; ok && !issuedAt.After(r.before) {
		return true
	}
	return false
}

// RevokeToken records a token revocation until the token would have expired
// anyway. With a shared backend the revocation is recorded there first, and
// an error means it was not recorded (the caller must not report success).
func (s *Store) RevokeToken(ctx context.Context, jti string, expiry time.Time) error {
	if s.shared != nil {
		if err := s.shared.publish(ctx, event{Kind: kindToken, Key: jti, At: expiry}); err != nil {
			return err
		}
	}
	s.applyToken(jti, expiry)
	return nil
}

func (s *Store) applyToken(jti string, expiry time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	if _, ok := old.tokens[jti]; ok {
		return
	}
	next := s.copyPruned(old)
	next.tokens[jti] = expiry
	s.snap.Store(next)
}

// RevokeSubject revokes every token of subject issued at or before before.
// until is when the last such token expires (before plus the longest token
// lifetime); the entry is forgotten after it.
func (s *Store) RevokeSubject(ctx context.Context, subject string, before, until time.Time) error {
	if s.shared != nil {
		if err := s.shared.publish(ctx, event{Kind: kindSubject, Key: subject, At: before, Until: until}); err != nil {
			return err
		}
	}
	s.applySubject(subject, before, until)
	return nil
}

func (s *Store) applySubject(subject string, before, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	if cur, ok := old.subjects[subject]; ok && !before.After(cur.before) {
		return
	}
	next := s.copyPruned(old)
	next.subjects[subject] = subjectRevocation{before: before, until: until}
	s.snap.Store(next)
}

// copyPruned copies the snapshot, dropping token entries whose tokens have
// expired: a revoked token that has expired is rejected anyway.
func (s *Store) copyPruned(old *snapshot) *snapshot {
	now := s.now()
	next := &snapshot{
		tokens:   make(map[string]time.Time, len(old.tokens)+1),
		subjects: make(map[string]subjectRevocation, len(old.subjects)+1),
	}
	for k, exp := range old.tokens {
		if exp.After(now) {
			next.tokens[k] = exp
		}
	}
	for k, v := range old.subjects {
		if v.until.After(now) {
			next.subjects[k] = v
		}
	}
	return next
}

// Len returns the number of remembered token and subject revocations.
func (s *Store) Len() (tokens, subjects int) {
	sn := s.snap.Load()
	return len(sn.tokens), len(sn.subjects)
}

// Package ratelimit enforces token-bucket limits per route and key, in
// memory (golang.org/x/time/rate, bounded) or shared by every replica
// through Redis (GCRA in one Lua script), with a failure policy for when
// Redis is gone.
package ratelimit

import (
	"math"
	"time"
)

// Limit is a token bucket: Requests per Per sustained, Burst at once.
type Limit struct {
	Requests int
	Per      time.Duration
	Burst    int
}

// interval is the time one request's token takes to refill.
func (l Limit) interval() time.Duration { return l.Per / time.Duration(l.Requests) }

// share is this replica's part of a global limit when replicas enforce it
// separately: ceil(requests/n) and ceil(burst/n), at least 1 each.
func (l Limit) share(n int) Limit {
	if n <= 1 {
		return l
	}
	div := func(v int) int { return max(1, int(math.Ceil(float64(v)/float64(n)))) }
	return Limit{Requests: div(l.Requests), Per: l.Per, Burst: div(l.Burst)}
}

// Result is one decision.
type Result struct {
	// Allowed is false when the request is over the limit.
	Allowed bool
	// Limit is the limit that was applied (a share of it under fallback).
	Limit Limit
	// Remaining is how many more requests would be allowed now.
	Remaining int
	// RetryAfter is how long until one more request is allowed (0 if now).
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
}

// Key identifies a bucket within a scope: what kind of key (subject, client
// id, IP, header) and its value. Kept apart so the local store hashes them
// without building a string per request.
type Key struct {
	Kind  string
	Value string
}

//go:build race

package ratelimit

// raceEnabled: memory-bound floods skip under the race detector, which
// changes allocation and is too slow for them; make test runs them again
// without it.
const raceEnabled = true

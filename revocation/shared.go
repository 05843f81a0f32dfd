package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	kindToken   = "t"
	kindSubject = "s"
	// streamKey is the versioned Redis stream of revocations, read by every
	// replica. Entries older than the store's retention are trimmed: by
	// then every token they name has expired.
	streamKey = "portcullis:rev:v1"
	// readBlock is how long one XREAD waits; a new entry wakes it at once,
	// so replicas learn a revocation in milliseconds, well within 1 s.
	readBlock     = 500 * time.Millisecond
	readCount     = 1000
	retryAfterErr = time.Second
	publishWait   = 500 * time.Millisecond
)

// Client is the part of a go-redis client the store uses.
type Client interface {
	XAdd(ctx context.Context, a *redis.XAddArgs) *redis.StringCmd
	XRead(ctx context.Context, a *redis.XReadArgs) *redis.XStreamSliceCmd
}

// event is one revocation as recorded in the shared store.
type event struct {
	Kind  string
	Key   string
	At    time.Time
	Until time.Time
}

// shared is the Redis side of a Store.
type shared struct {
	client    Client
	log       *slog.Logger
	retention time.Duration
}

// Share makes the store record revocations in Redis and, once Run is
// called, apply every replica's revocations. retention is how long a
// revocation must stay readable for replicas that start later: the longest
// token lifetime (issuer.MaxTokenLifetime). Call it before serving.
func (s *Store) Share(c Client, log *slog.Logger, retention time.Duration) {
	s.shared = &shared{client: c, log: log, retention: retention}
	s.synced.Store(false)
}

func (sh *shared) publish(ctx context.Context, e event) error {
	ctx, cancel := context.WithTimeout(ctx, publishWait)
	defer cancel()
	// Exact trimming: revocations are rare, and an approximate trim could
	// keep or drop entries unpredictably.
	minID := strconv.FormatInt(time.Now().Add(-sh.retention).UnixMilli(), 10)
	err := sh.client.XAdd(ctx, &redis.XAddArgs{
		Stream: streamKey, MinID: minID,
		Values: []any{"k", e.Kind, "v", e.Key, "a", e.At.UnixMilli(), "u", e.Until.UnixMilli()},
	}).Err()
	if err != nil {
		return fmt.Errorf("recording revocation in redis: %w", err)
	}
	return nil
}

// Run first reads every revocation already in the shared stream (Synced
// turns true when it has), then tails it until ctx ends, applying what
// other replicas record; it returns at once for a store that is not shared.
// After a Redis outage it resumes after the last entry it applied: stream
// ids are server timestamps, so whatever is added after a restart sorts
// later.
func (s *Store) Run(ctx context.Context) {
	if s.shared == nil {
		return
	}
	last := "0"
	failed := false
	applied := 0
	for ctx.Err() == nil {
		catchingUp := !s.synced.Load()
		args := &redis.XReadArgs{Streams: []string{streamKey, last}, Count: readCount, Block: readBlock}
		if catchingUp {
			// Block 1 ms rather than not at all: a blocking read is given
			// its own read deadline (the block plus go-redis's margin, cut
			// to this call's context), not redis.timeout, which is sized
			// for one small script call, not a thousand entries.
			args.Block = time.Millisecond
		}
		rctx, cancel := context.WithTimeout(ctx, readBlock+time.Second)
		streams, err := s.shared.client.XRead(rctx, args).Result()
		cancel()
		if errors.Is(err, redis.Nil) {
			streams, err = nil, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failed {
				s.shared.log.Warn("reading shared revocations failed; known revocations stay enforced", "error", err)
			}
			failed = true
			sleep(ctx, retryAfterErr)
			continue
		}
		failed = false
		n := 0
		for _, st := range streams {
			for _, m := range st.Messages {
				s.applyMessage(m.Values)
				last = m.ID
				n++
			}
		}
		applied += n
		// A read that returned less than it could have reached the end of
		// what existed when it ran: everything recorded before this
		// replica started is now applied.
		if catchingUp && n < readCount {
			s.synced.Store(true)
			s.shared.log.Info("shared revocations read", "entries", applied)
		}
	}
}

func (s *Store) applyMessage(v map[string]any) {
	str := func(k string) string { x, _ := v[k].(string); return x }
	// ms reads a unix-milliseconds field as unix nanoseconds; 0 (long
	// expired, so soon forgotten) when malformed.
	ms := func(k string) int64 {
		n, err := strconv.ParseInt(str(k), 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(time.Millisecond) {
			return 0
		}
		return n * int64(time.Millisecond)
	}
	switch str("k") {
	case kindToken:
		s.applyToken(str("v"), ms("a"))
	case kindSubject:
		s.applySubject(str("v"), ms("a"), ms("u"))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

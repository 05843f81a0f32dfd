package ratelimit

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed gcra.lua
var gcraSource string

//go:embed heartbeat.lua
var heartbeatSource string

var (
	gcraScript      = redis.NewScript(gcraSource)
	heartbeatScript = redis.NewScript(heartbeatSource)
)

// keyPrefix versions the key layout so a future change cannot misread old
// keys; the key itself is a hash, so no caller-chosen bytes reach Redis.
const keyPrefix = "portcullis:rl:v1:"

// heartbeatKey holds one member per live replica, scored by server time.
const heartbeatKey = "portcullis:hb:v1"

// ErrUnavailable is returned while the circuit breaker is open.
var ErrUnavailable = errors.New("redis is unavailable")

// Client is the part of a go-redis client the limiter uses, so standalone,
// Sentinel and Cluster clients (redis.UniversalClient) all fit.
type Client interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// redisStore runs GCRA in Redis with server time, so replicas' clocks never
// matter. Safe for concurrent use.
type redisStore struct {
	client  Client
	timeout time.Duration
	batch   *batcher
	breaker breaker
}

func redisKey(scope string, key Key) string {
	sum := sha256.Sum256([]byte(scope + "\x00" + key.Kind + "\x00" + key.Value))
	return keyPrefix + hex.EncodeToString(sum[:16])
}

func (s *redisStore) allow(ctx context.Context, scope string, key Key, lim Limit, now time.Time) (Result, error) {
	if !s.breaker.allow(now) {
		return Result{}, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	interval := lim.interval().Microseconds()
	v, err := s.batch.do(ctx, redisKey(scope, key), max(interval, 1), int64(lim.Burst))
	if err != nil {
		return Result{}, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(v) != 4 {
		return Result{}, fmt.Errorf("redis rate limit: unexpected reply %v", v)
	}
	allowed, ok1 := v[0].(int64)
	remaining, ok2 := v[1].(int64)
	retry, ok3 := v[2].(int64)
	reset, ok4 := v[3].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Result{}, fmt.Errorf("redis rate limit: unexpected reply %v", v)
	}
	return Result{
		Allowed: allowed == 1, Limit: lim, Remaining: int(remaining),
		RetryAfter: time.Duration(retry) * time.Microsecond, ResetAfter: time.Duration(reset) * time.Microsecond,
	}, nil
}

// heartbeat announces this replica and returns how many are live.
func (s *redisStore) heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.timeout, 200*time.Millisecond))
	defer cancel()
	n, err := heartbeatScript.Run(ctx, s.client, []string{heartbeatKey}, id, ttl.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("redis heartbeat: %w", err)
	}
	return n, nil
}

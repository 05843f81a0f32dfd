package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batching bounds. While a pipeline is in flight, calls that arrive queue
// and leave together in the next one: under load many requests share one
// write and one read, and an idle sidecar still sends each call at once.
const (
	batchMax     = 128
	batchWorkers = 4 // pipelines in flight at once
	batchQueue   = 4096
)

// errQueueFull refuses a call when batchQueue calls already wait: the
// process is falling behind (starved or flooded), which is slowness, not a
// Redis outage.
var errQueueFull = fmt.Errorf("redis rate limit: %d calls queued", batchQueue)

// call is one rate-limit script call waiting for its batch.
type call struct {
	ctx  context.Context
	key  string
	args [2]int64
	done chan struct{}
	res  []any
	err  error
}

// batcher sends queued script calls as pipelines. Safe for concurrent use.
type batcher struct {
	client  Client
	timeout time.Duration
	queue   chan *call
}

func newBatcher(c Client, timeout time.Duration) *batcher {
	b := &batcher{client: c, timeout: timeout, queue: make(chan *call, batchQueue)}
	for i := 0; i < batchWorkers; i++ {
		go b.work()
	}
	return b
}

// do queues one call and waits for its answer or the caller's deadline.
func (b *batcher) do(ctx context.Context, key string, interval, burst int64) ([]any, error) {
	c := &call{ctx: ctx, key: key, args: [2]int64{interval, burst}, done: make(chan struct{})}
	select {
	case b.queue <- c:
	default:
		return nil, errQueueFull
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		// A starved process may notice its deadline and the answer at the
		// same moment; an answer that arrived is used, never discarded.
		select {
		case <-c.done:
			return c.res, c.err
		default:
			return nil, ctx.Err()
		}
	}
}

// work runs for the process lifetime: a limiter lives as long as it does.
func (b *batcher) work() {
	batch := make([]*call, 0, batchMax)
	for first := range b.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < batchMax {
			select {
			case c := <-b.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.run(batch)
	}
}

func (b *batcher) run(batch []*call) {
	live := batch[:0:0]
	for _, c := range batch {
		if c.ctx.Err() != nil {
			c.err = c.ctx.Err()
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	cmds := b.exec(ctx, live, false)
	// NOSCRIPT means the script did not run (Redis restarted or flushed):
	// sending it again with EVAL cannot double-charge. No other error is
	// retried, since a call that timed out may have run.
	var again []*call
	for i, c := range live {
		if err := cmds[i].Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			again = append(again, c)
			continue
		}
		c.res, c.err = cmds[i].Slice()
		close(c.done)
	}
	if len(again) > 0 {
		cmds = b.exec(ctx, again, true)
		for i, c := range again {
			c.res, c.err = cmds[i].Slice()
			close(c.done)
		}
	}
}

func (b *batcher) exec(ctx context.Context, calls []*call, eval bool) []*redis.Cmd {
	pipe := b.client.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		keys := []string{c.key}
		if eval {
			cmds[i] = gcraScript.Eval(ctx, pipe, keys, c.args[0], c.args[1])
		} else {
			cmds[i] = gcraScript.EvalSha(ctx, pipe, keys, c.args[0], c.args[1])
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	return cmds
}

package seclog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Events: ten lines of one kind every ten seconds show an
// operator what is happening (and from where) without letting a flood of
// refused requests write one line each.
const (
	DefaultPerWindow = 10
	DefaultWindow    = 10 * time.Second
	// maxKinds bounds the per-kind state; kinds are the fixed messages of
	// the call sites, so real use stays far below it. Past it, kinds share
	// one bucket.
	maxKinds = 64
	// overflowKind names that shared bucket.
	overflowKind = "other security events"
)

// Options configure Events. Zero values take the defaults.
type Options struct {
	// PerWindow is how many lines of one kind are written per Window.
	PerWindow int
	// Window is the summarising interval.
	Window time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Events writes security events to a logger, at most PerWindow lines of
// one kind (the event's message) per Window; the rest are counted, and one
// line per kind reports how many were suppressed when the window ends (on
// the next event of that kind, or on Flush, which Run calls every Window).
// Safe for concurrent use; admitting an event takes no lock.
type Events struct {
	log       *slog.Logger
	now       func() time.Time
	perWindow int64
	window    time.Duration

	kinds  sync.Map // string → *kindState
	nKinds atomic.Int32
}

type kindState struct {
	start      atomic.Int64 // unix ns when the current window began
	count      atomic.Int64 // events seen in the current window
	suppressed atomic.Int64 // not written since the last summary
}

// NewEvents returns Events writing to log.
func NewEvents(log *slog.Logger, o Options) *Events {
	if o.PerWindow <= 0 {
		o.PerWindow = DefaultPerWindow
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Events{log: log, now: o.Now, perWindow: int64(o.PerWindow), window: o.Window}
}

func (e *Events) state(kind string) (string, *kindState) {
	if st, ok := e.kinds.Load(kind); ok {
		return kind, st.(*kindState)
	}
	if e.nKinds.Load() >= maxKinds {
		kind = overflowKind
	} else {
		e.nKinds.Add(1)
	}
	st, _ := e.kinds.LoadOrStore(kind, &kindState{})
	return kind, st.(*kindState)
}

// Admit reports whether an event of this kind may be written now, and
// counts it as suppressed when not. When a new window begins it first
// writes the previous window's summary.
func (e *Events) Admit(kind string) bool {
	kind, st := e.state(kind)
	now := e.now().UnixNano()
	if start := st.start.Load(); now-start >= int64(e.window) && st.start.CompareAndSwap(start, now) {
		st.count.Store(0)
		e.summarise(kind, st)
	}
	if st.count.Add(1) <= e.perWindow {
		return true
	}
	st.suppressed.Add(1)
	return false
}

// Log writes one security event (msg is its kind) when Admit allows it.
func (e *Events) Log(msg string, args ...any) {
	if e.Admit(msg) {
		e.log.Warn(msg, args...)
	}
}

// Flush writes a summary for every kind with suppressed events.
func (e *Events) Flush() {
	e.kinds.Range(func(k, v any) bool {
		e.summarise(k.(string), v.(*kindState))
		return true
	})
}

func (e *Events) summarise(kind string, st *kindState) {
	if n := st.suppressed.Swap(0); n > 0 {
		e.log.Warn("security events suppressed", "security_event", true, "event", kind,
			"suppressed", n, "window", e.window.String())
	}
}

// Run flushes summaries every Window until ctx ends, then once more, so a
// burst that stops is still reported.
func (e *Events) Run(ctx context.Context) {
	t := time.NewTicker(e.window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.Flush()
			return
		case <-t.C:
			e.Flush()
		}
	}
}

// Handler returns a handler that writes a record to next only when Admit
// allows its kind, so a logger that request traffic can trigger at will
// (net/http's server error log: one line per request whose query holds a
// ';', per failed TLS handshake) is summarised like security events.
func (e *Events) Handler(kind string, next slog.Handler) slog.Handler {
	return &eventsHandler{e: e, kind: kind, next: next}
}

type eventsHandler struct {
	e    *Events
	kind string
	next slog.Handler
}

func (h *eventsHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *eventsHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.e.Admit(h.kind) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *eventsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventsHandler{e: h.e, kind: h.kind, next: h.next.WithAttrs(as)}
}

func (h *eventsHandler) WithGroup(name string) slog.Handler {
	return &eventsHandler{e: h.e, kind: h.kind, next: h.next.WithGroup(name)}
}

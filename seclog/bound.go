// Package seclog bounds what traffic can make Portcullis write to its logs:
// Bound cuts every value in every log line to MaxValueBytes, so a value
// copied from a request (a 700 KiB client_id, a path, an error quoting
// either) cannot fill a disk; Events summarises a burst of one kind of
// security event instead of writing it line by line, so a flood of refused
// requests cannot bury the lines that matter.
package seclog

import (
	"context"
	"fmt"
	"log/slog"
	"unicode/utf8"
)

// MaxValueBytes is the most bytes of one value a log line repeats. It keeps
// every real identifier (client ids, subjects, paths an operator would
// read) whole and cuts anything an attacker inflated.
const MaxValueBytes = 256

// cutMark ends a value that was cut; it counts within MaxValueBytes.
const cutMark = "…"

// Bound wraps h so that the message and every attribute value that renders
// as text (strings, errors, fmt.Stringers, byte slices, inside groups too)
// is at most MaxValueBytes long. Values already short enough pass untouched
// and cost one length check each. The returned handler is safe for
// concurrent use when h is.
func Bound(h slog.Handler) slog.Handler {
	if b, ok := h.(*boundHandler); ok {
		return b
	}
	return &boundHandler{next: h}
}

type boundHandler struct {
	next slog.Handler
}

func (b *boundHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return b.next.Enabled(ctx, l)
}

func (b *boundHandler) Handle(ctx context.Context, r slog.Record) error {
	long := len(r.Message) > MaxValueBytes
	r.Attrs(func(a slog.Attr) bool {
		long = long || tooLong(a.Value)
		return !long
	})
	if !long {
		return b.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, Cut(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(cutAttr(a))
		return true
	})
	return b.next.Handle(ctx, out)
}

func (b *boundHandler) WithAttrs(as []slog.Attr) slog.Handler {
	cut := make([]slog.Attr, len(as))
	for i, a := range as {
		cut[i] = cutAttr(a)
	}
	return &boundHandler{next: b.next.WithAttrs(cut)}
}

func (b *boundHandler) WithGroup(name string) slog.Handler {
	return &boundHandler{next: b.next.WithGroup(Cut(name))}
}

// tooLong reports whether v renders as more than MaxValueBytes of text.
func tooLong(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindString:
		return len(v.String()) > MaxValueBytes
	case slog.KindGroup:
		for _, a := range v.Group() {
			if tooLong(a.Value) {
				return true
			}
		}
		return false
	case slog.KindLogValuer:
		return tooLong(v.Resolve())
	case slog.KindAny:
		s, ok := text(v.Any())
		return ok && len(s) > MaxValueBytes
	}
	return false // numbers, booleans, times, durations are short
}

func cutAttr(a slog.Attr) slog.Attr {
	return slog.Attr{Key: Cut(a.Key), Value: cutValue(a.Value)}
}

func cutValue(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); len(s) > MaxValueBytes {
			return slog.StringValue(Cut(s))
		}
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, a := range g {
			out[i] = cutAttr(a)
		}
		return slog.GroupValue(out...)
	case slog.KindLogValuer:
		return cutValue(v.Resolve())
	case slog.KindAny:
		if s, ok := text(v.Any()); ok && len(s) > MaxValueBytes {
			return slog.StringValue(Cut(s))
		}
	}
	return v
}

// text renders the Any values that end up as text in a log line.
func text(x any) (string, bool) {
	switch t := x.(type) {
	case error:
		return t.Error(), true
	case fmt.Stringer:
		return t.String(), true
	case []byte:
		return string(t), true
	}
	return "", false
}

// Cut shortens s to at most MaxValueBytes, on a UTF-8 boundary, ending in
// "…" when something was cut.
func Cut(s string) string {
	if len(s) <= MaxValueBytes {
		return s
	}
	n := MaxValueBytes - len(cutMark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + cutMark
}

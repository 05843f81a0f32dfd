package seclog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// lines decodes a JSON log buffer into records.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestBoundCutsEveryTextValue(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("a", 700<<10)
	var buf bytes.Buffer
	log := slog.New(Bound(slog.NewJSONHandler(&buf, nil)))
	log.With("with", huge).WithGroup("g").Warn(huge,
		"s", huge, "err", errors.New(huge), "str", stringer(huge), "bytes", []byte(huge),
		"group", slog.GroupValue(slog.String("inner", huge)), "short", "kept", "n", 42,
		"utf8", strings.Repeat("é", 300))
	if buf.Len() > 4<<10 {
		t.Fatalf("log line is %d bytes for seven 700 KiB values", buf.Len())
	}
	var check func(path string, v any)
	check = func(path string, v any) {
		switch x := v.(type) {
		case string:
			if len(x) > MaxValueBytes {
				t.Errorf("%s is %d bytes, want at most %d", path, len(x), MaxValueBytes)
			}
			if !utf8.ValidString(x) {
				t.Errorf("%s was cut inside a UTF-8 sequence", path)
			}
		case map[string]any:
			for k, e := range x {
				check(path+"."+k, e)
			}
		}
	}
	recs := lines(t, &buf)
	if len(recs) != 1 {
		t.Fatalf("%d lines, want 1", len(recs))
	}
	check("", recs[0])
	g := recs[0]["g"].(map[string]any)
	if g["short"] != "kept" || g["n"] != float64(42) {
		t.Errorf("short values changed: %v", g)
	}
	if s := g["s"].(string); !strings.HasSuffix(s, cutMark) {
		t.Errorf("cut value %q does not end in %q", s[len(s)-8:], cutMark)
	}
}

func TestBoundPassesShortRecordsUnchanged(t *testing.T) {
	t.Parallel()
	var a, b bytes.Buffer
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
		if at.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return at
	}}
	slog.New(slog.NewJSONHandler(&a, opts)).Info("m", "k", "v", "err", errors.New("e"))
	slog.New(Bound(slog.NewJSONHandler(&b, opts))).Info("m", "k", "v", "err", errors.New("e"))
	if a.String() != b.String() {
		t.Errorf("bounded %q, plain %q", b.String(), a.String())
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestEventsSummariseABurst(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	ev := NewEvents(slog.New(slog.NewJSONHandler(&buf, nil)), Options{Now: clk.now})
	for i := 0; i < 10000; i++ {
		ev.Log("token rejected", "i", i)
	}
	ev.Log("insufficient scope")
	recs := lines(t, &buf)
	if len(recs) != DefaultPerWindow+1 {
		t.Fatalf("%d lines for 10,000 events of one kind and one of another, want %d", len(recs), DefaultPerWindow+1)
	}
	clk.add(DefaultWindow)
	ev.Log("token rejected", "i", "next window")
	recs = lines(t, &buf)
	sum := recs[DefaultPerWindow+1]
	if sum["msg"] != "security events suppressed" || sum["event"] != "token rejected" || sum["suppressed"] != float64(10000-DefaultPerWindow) {
		t.Errorf("summary line %v, want 9990 suppressed token rejected events", sum)
	}
	if last := recs[len(recs)-1]; last["i"] != "next window" {
		t.Errorf("the next window's first event was not written: %v", last)
	}
	// A burst that stops is reported by Flush.
	for i := 0; i < 50; i++ {
		ev.Log("token rejected")
	}
	buf.Reset()
	ev.Flush()
	recs = lines(t, &buf)
	if len(recs) != 1 || recs[0]["suppressed"] != float64(50-DefaultPerWindow+1) {
		t.Errorf("flush wrote %v, want one summary of %d", recs, 50-DefaultPerWindow+1)
	}
	buf.Reset()
	ev.Flush()
	if buf.Len() != 0 {
		t.Errorf("a second flush repeated the summary: %s", buf.String())
	}
}

func TestEventsKindsAreBounded(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	ev := NewEvents(slog.New(slog.NewJSONHandler(&buf, nil)), Options{Now: func() time.Time { return time.Unix(0, 0) }})
	for i := 0; i < 10*maxKinds; i++ {
		ev.Log(fmt.Sprint("kind ", i))
	}
	n := 0
	ev.kinds.Range(func(any, any) bool { n++; return true })
	if n > maxKinds+1 {
		t.Errorf("%d kinds tracked, bound is %d", n, maxKinds+1)
	}
}

func TestEventsConcurrent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	ev := NewEvents(slog.New(slog.NewJSONHandler(w, nil)), Options{Now: func() time.Time { return time.Unix(0, 0) }})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				ev.Log("flood")
			}
		}()
	}
	wg.Wait()
	ev.Flush()
	recs := lines(t, &buf)
	written, suppressed := 0, 0.0
	for _, r := range recs {
		if r["msg"] == "flood" {
			written++
		} else {
			suppressed += r["suppressed"].(float64)
		}
	}
	if written != DefaultPerWindow || written+int(suppressed) != 8000 {
		t.Errorf("%d written + %v suppressed, want %d + %d", written, suppressed, DefaultPerWindow, 8000-DefaultPerWindow)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func FuzzCut(f *testing.F) {
	f.Add("short")
	f.Add(strings.Repeat("é", 200))
	f.Add(strings.Repeat("a", 255) + "é")
	f.Fuzz(func(t *testing.T, s string) {
		c := Cut(s)
		if len(c) > MaxValueBytes {
			t.Fatalf("Cut gave %d bytes", len(c))
		}
		if len(s) <= MaxValueBytes && c != s {
			t.Fatalf("Cut changed a short value")
		}
		if utf8.ValidString(s) && !utf8.ValidString(c) {
			t.Fatalf("Cut split a rune: %q", c)
		}
	})
}

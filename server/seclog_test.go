package server

import (
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/seclog"
)

func loggedServer(t *testing.T, sink *logBuffer) *Server {
	t.Helper()
	cfg, _, err := config.Parse([]byte(testConfig), t.TempDir(), func(k string) string {
		if k == "HASH" {
			return testHash
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := New(cfg, slog.New(slog.NewJSONHandler(sink, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRefusalFloodLogsABoundedSummary floods 10,000 refused requests: the
// log holds a few lines per kind of event and a summary counting the rest,
// not 10,000 lines.
func TestRefusalFloodLogsABoundedSummary(t *testing.T) {
	t.Parallel()
	sink := &logBuffer{}
	s := loggedServer(t, sink)
	h := s.Handler()
	const flood = 10000
	start := time.Now()
	for i := 0; i < flood; i++ {
		req := httptest.NewRequest("GET", "/auth/verify/x", nil)
		req.RequestURI = "/auth/verify/x"
		req.RemoteAddr = "192.0.2.1:1234"
		req.Header.Set("Authorization", "Bearer a.b.c")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 401 && rec.Code != 429 {
			t.Fatalf("request %d: %d, want a refusal", i, rec.Code)
		}
	}
	elapsed := time.Since(start)
	s.events.Flush()
	recs := sink.records(t)
	written, suppressed := 0, 0
	for _, r := range recs {
		switch {
		case r["msg"] == "security events suppressed":
			suppressed += int(r["suppressed"].(float64))
		case r["security_event"] == true:
			written++
		}
	}
	// Each window lets DefaultPerWindow lines of each of the (at most two)
	// kinds through, plus one summary per kind per window.
	windows := int(elapsed/seclog.DefaultWindow) + 1
	if bound := windows * 2 * (seclog.DefaultPerWindow + 1); len(recs) > bound {
		t.Errorf("%d log lines for %d refused requests in %v, want at most %d", len(recs), flood, elapsed, bound)
	}
	if written+suppressed != flood {
		t.Errorf("%d lines written + %d suppressed = %d, want every one of %d refusals accounted for", written, suppressed, written+suppressed, flood)
	}
	if suppressed == 0 {
		t.Error("no summary line counted the suppressed events")
	}
	sink.mu.Lock()
	size := sink.buf.Len()
	sink.mu.Unlock()
	if size > 64<<10 {
		t.Errorf("log grew %d bytes for one flood", size)
	}
}

// TestHugeClientIDIsNotLoggedWhole sends a 700 KiB client_id to /token: no
// log line repeats it past 256 bytes.
func TestHugeClientIDIsNotLoggedWhole(t *testing.T) {
	t.Parallel()
	sink := &logBuffer{}
	s := loggedServer(t, sink)
	huge := strings.Repeat("A", 700<<10)
	for i := 0; i < 4; i++ { // past the token endpoint's limit of 2, too
		req := httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=client_credentials&client_id="+url.QueryEscape(huge)+"&client_secret=x"))
		req.RequestURI = "/token"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != 401 && rec.Code != 429 {
			t.Fatalf("attempt %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	recs := sink.records(t)
	if len(recs) == 0 {
		t.Fatal("no security event logged for failed client authentication")
	}
	for _, r := range recs {
		for k, v := range r {
			if s, ok := v.(string); ok && len(s) > seclog.MaxValueBytes {
				t.Errorf("%q logged with %d bytes", k, len(s))
			}
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.buf.Len() > 8<<10 {
		t.Errorf("log holds %d bytes after four requests", sink.buf.Len())
	}
}

// TestServerErrorLogIsSummarised: net/http writes one error-log line per
// failed TLS handshake, which anyone can cause; a flood of them is
// summarised like security events.
func TestServerErrorLogIsSummarised(t *testing.T) {
	t.Parallel()
	sink := &logBuffer{}
	s := loggedServer(t, sink)
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config = s.httpServer(s.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	const n = 100
	for i := 0; i < n; i++ {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // plain HTTP to a TLS port
		_, _ = io.Copy(io.Discard, conn)                               // until the server hangs up
		conn.Close()
	}
	// The server logs a handshake error after closing the connection; wait
	// until every one is accounted for (written or suppressed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.events.Flush()
		written, suppressed := 0, 0
		for _, r := range sink.records(t) {
			msg, _ := r["msg"].(string)
			switch {
			case r["event"] == "http server error":
				suppressed += int(r["suppressed"].(float64))
			case strings.Contains(msg, "TLS handshake error"):
				written++
			}
		}
		if written+suppressed == n {
			if written > 2*seclog.DefaultPerWindow {
				t.Errorf("%d handshake-error lines written, want at most %d", written, 2*seclog.DefaultPerWindow)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d written + %d suppressed handshake errors, want %d accounted for", written, suppressed, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

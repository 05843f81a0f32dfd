package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/redistest"
)

// wantSecurity is the default security header set, written out here
// independently of the code that sets it.
var wantSecurity = map[string]string{
	"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	"X-Frame-Options":           "DENY",
	"X-Content-Type-Options":    "nosniff",
	"Content-Security-Policy":   "default-src 'self'",
	"Referrer-Policy":           "no-referrer",
}

func checkSecurityHeaders(t *testing.T, where string, h http.Header) {
	t.Helper()
	for k, v := range wantSecurity {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s = %q, want %q", where, k, got, v)
		}
	}
}

// received is one request as the upstream saw it.
type received struct {
	method, uri string
	header      http.Header
	body        string
}

// recorder is a real upstream that records what reaches it, with a few
// behaviours the attacks need: a 103 before its answer, an h2c-capable
// switch (as an h2c server would), a WebSocket echo, and a stream.
type recorder struct {
	*httptest.Server
	release chan struct{} // lets /public/stream finish

	mu     sync.Mutex
	reqs   []received
	tunnel []byte // bytes that arrived through a switched (h2c) connection
}

func newRecorder(t *testing.T) *recorder {
	u := &recorder{release: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, received{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: string(body)})
		u.mu.Unlock()
		switch {
		case strings.EqualFold(r.Header.Get("Upgrade"), "h2c"):
			// What an h2c server does (RFC 7540 §3.2): switch, then read
			// HTTP/2 from the same connection.
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
			brw.Flush()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(brw)
			u.mu.Lock()
			u.tunnel = append(u.tunnel, b...)
			u.mu.Unlock()
			return
		case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Frame-Options: SAMEORIGIN\r\n\r\n")
			brw.Flush()
			buf := make([]byte, 4)
			if _, err := io.ReadFull(brw, buf); err == nil {
				_, _ = conn.Write(buf)
			}
			return
		case r.URL.Path == "/public/hints":
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("X-Frame-Options", "SAMEORIGIN")
			fmt.Fprint(w, "hinted")
			return
		case r.URL.Path == "/public/stream":
			fmt.Fprint(w, "first\n")
			http.NewResponseController(w).Flush()
			select {
			case <-u.release:
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "second\n")
			return
		}
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		fmt.Fprintf(w, "ok %d", len(body))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recorder) got() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.reqs...)
}

func (u *recorder) reset() {
	u.mu.Lock()
	u.reqs, u.tunnel = nil, nil
	u.mu.Unlock()
}

// edgeEnv is a real Portcullis (Run, its own listeners) in front of a
// recorder.
type edgeEnv struct {
	up          *recorder
	addr, admin string
	srv         *Server
}

const edgeConfig = `
environment: development
listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
shutdown: {grace: 5s}
upstream: {url: "%s", timeout: 10s}
issuer:
  url: https://auth.test
  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]
audience: [api]
routes:
  - {path: /public, auth: none}
  - {path: /}
rate_limit: {enabled: false}
`

// startEdge runs Portcullis until the test ends. extra is appended to the
// config; dir holds any files it names.
func startEdge(t *testing.T, extra, dir string) *edgeEnv {
	t.Helper()
	up := newRecorder(t)
	port, adminPort := redistest.FreePort(t), redistest.FreePort(t)
	yaml := fmt.Sprintf(edgeConfig, port, adminPort, up.URL) + extra
	if dir == "" {
		dir = t.TempDir()
	}
	cfg, _, err := config.Parse([]byte(yaml), dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e := &edgeEnv{up: up, addr: fmt.Sprintf("127.0.0.1:%d", port), admin: fmt.Sprintf("127.0.0.1:%d", adminPort), srv: s}
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := client.Get("http://" + e.admin + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return e
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Portcullis not ready at %s: %v", e.admin, err)
		}
		time.Sleep(10 * time.Millisecond) // polling readiness
	}
}

// rawConn is a client connection that writes exactly the bytes given.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// response reads one response with its body.
func (c *rawConn) response(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// closed asserts the server closed the connection: nothing more arrives.
func (c *rawConn) closed(t *testing.T) {
	t.Helper()
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.Peek(c.br.Buffered())
		t.Fatalf("connection still open: got %q", append([]byte{b}, rest...))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open: the read timed out")
	}
}

// healthy sends a normal request on a new connection: the process still
// serves, and the upstream gets it.
func (e *edgeEnv) healthy(t *testing.T) {
	t.Helper()
	c := dialRaw(t, e.addr)
	defer c.Close()
	c.send(t, "GET /public/after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	resp, body := c.response(t)
	if resp.StatusCode != 200 || body != "ok 0" {
		t.Fatalf("normal request after the attack: %d %q", resp.StatusCode, body)
	}
	for _, r := range e.up.got() {
		if r.uri == "/public/after" {
			return
		}
	}
	t.Fatalf("upstream did not get the normal request: %+v", e.up.got())
}

package server

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/metrics"
)

// A typical API request: a bearer token, a JSON body.
var benchHead = "POST /orders/42?expand=items HTTP/1.1\r\nHost: api.example.com\r\n" +
	"Authorization: Bearer " + strings.Repeat("eyJhbGciOiJFUzI1NiJ9", 40) + "\r\n" +
	"User-Agent: bench/1.0\r\nAccept: application/json\r\nContent-Type: application/json\r\n" +
	"Accept-Encoding: gzip\r\nX-Request-Id: 0123456789abcdef\r\nContent-Length: 64\r\n\r\n"

var benchBody = strings.Repeat("x", 64)

func BenchmarkParseHead(b *testing.B) {
	head := []byte(benchHead)
	big := []byte(strings.Replace(benchHead, "Bearer ", "Bearer "+strings.Repeat("a", 8<<10), 1))
	for _, c := range []struct {
		name string
		head []byte
	}{{"typical", head}, {"8KiB-token", big}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.head)))
			b.ReportAllocs()
			for b.Loop() {
				end, _ := findHeadEnd(c.head, 0)
				if _, ref := parseHead(c.head[:end]); ref.status != 0 {
					b.Fatal(ref.reason)
				}
			}
		})
	}
}

// loopConn serves the same pipelined requests over and over.
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) SetReadDeadline(time.Time) error { return nil }

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkGuardStream reads requests as net/http does (a 4 KiB bufio
// reader parsing heads and bodies) with and without the guard in between.
func BenchmarkGuardStream(b *testing.B) {
	req := []byte(benchHead + benchBody)
	chunked := []byte(strings.Replace(benchHead, "Content-Length: 64", "Transfer-Encoding: chunked", 1) + "40\r\n" + benchBody + "\r\n0\r\n\r\n")
	for _, c := range []struct {
		name  string
		data  []byte
		guard bool
	}{{"plain", req, false}, {"guarded", req, true}, {"guarded-chunked", chunked, true}} {
		b.Run(c.name, func(b *testing.B) {
			var src io.Reader = &loopConn{data: bytes.Repeat(c.data, 16)}
			if c.guard {
				src = newGuard(src.(net.Conn), nil)
			}
			br := bufio.NewReaderSize(src, 4<<10)
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := http.ReadRequest(br)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEdgeRoundTrip is one keep-alive request through a real listener
// and Portcullis's handler chain to a real upstream, with and without the
// guard on the listener.
func BenchmarkEdgeRoundTrip(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	s := serverFrom(b, `
environment: development
admin_listen: ""
upstream: {url: "`+up.URL+`"}
issuer:
  url: https://auth.test
  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]
audience: [api]
routes: [{path: /, auth: none}]
rate_limit: {enabled: false}
`, nil)
	for _, guarded := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "guarded"}[guarded]
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := s.httpServer(s.main)
			if guarded {
				go srv.Serve(newGuardListener(ln))
			} else {
				go srv.Serve(ln)
			}
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			url := "http://" + ln.Addr().String() + "/orders/1"
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(url, "application/json", strings.NewReader(benchBody))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkInstrument is the per-request wrapper: status, request id and
// the security headers at final-header time.
func BenchmarkInstrument(b *testing.B) {
	apply := func(h http.Header) {
		for _, k := range []string{"X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Content-Security-Policy", "Strict-Transport-Security"} {
			h[k] = benchVal
		}
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
	})
	h := instrument(metrics.New(), slog.New(slog.DiscardHandler), func() (func(http.Header), http.Handler) { return apply, next })
	req := httptest.NewRequest("GET", "/", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

var benchVal = []string{"x"}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

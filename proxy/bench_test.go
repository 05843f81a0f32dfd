package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkDecision runs the whole forward-auth decision (firewall, route,
// cached verify, policy, local limit, identity headers) without a network:
// the cost Portcullis adds to every request.
func BenchmarkDecision(b *testing.B) {
	e := newEnv(b, "rate_limit: {default: {requests: 1000000000, per: 1s, key: subject}}\n")
	tok := e.token(b, "alice", "orders:read", nil)
	req := httptest.NewRequest("GET", "/auth/verify/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.RequestURI = "/auth/verify/orders/1"
	w := &nopWriter{h: http.Header{}}
	e.h.ForwardAuth(w, req)
	if w.code != 200 {
		b.Fatalf("status %d", w.code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		e.h.ForwardAuth(w, req)
	}
}

// BenchmarkProxyRoundTrip is one proxied request through a real loopback
// upstream, with the same pipeline as production.
func BenchmarkProxyRoundTrip(b *testing.B) {
	e := newEnv(b, "")
	tok := e.token(b, "alice", "orders:read", nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	req, _ := http.NewRequest("GET", e.front.URL+"/public/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

func BenchmarkScrubHeaders(b *testing.B) {
	s := newHeaderScrubber([]string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scopes", "X-Auth-Issuer", "X-Auth-Token-Id"})
	h := http.Header{
		"Accept": {"*/*"}, "User-Agent": {"bench"}, "Authorization": {"Bearer x"}, "Connection": {"keep-alive"},
		"Accept-Encoding": {"gzip"}, "X-Request-Id": {"abc"},
	}
	b.ReportAllocs()
	for b.Loop() {
		s.scrub(h)
	}
}

func BenchmarkBearer(b *testing.B) {
	v := []string{"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig"}
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = bearer(v)
	}
}

type nopWriter struct {
	h    http.Header
	code int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(code int)        { w.code = code }

package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/ratelimit"
	"github.com/portcullis/portcullis/revocation"
)

const testIssuer = "https://auth.test"

var testKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

// seen is what the upstream received.
type seen struct {
	method     string
	requestURI string
	host       string
	path       string
	header     http.Header
}

// upstream is a real HTTP server that records every request it gets.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
	sse  chan struct{}
}

func (u *upstream) got() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

func (u *upstream) reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{sse: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{method: r.Method, requestURI: r.RequestURI, host: r.Host, path: r.URL.Path, header: r.Header.Clone()})
		u.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow"):
			<-r.Context().Done() // answer only when the proxy gives up
			return
		case strings.HasPrefix(r.URL.Path, "/sse"):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-u.sse:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, "data: second\n\n")
			return
		case strings.HasSuffix(r.URL.Path, "/hints"):
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("X-Frame-Options", "SAMEORIGIN")
			fmt.Fprint(w, "hinted")
			return
		case strings.HasPrefix(r.URL.Path, "/ws"):
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			buf := make([]byte, 4)
			if _, err := io.ReadFull(rw, buf); err == nil {
				_, _ = conn.Write(buf)
			}
			return
		}
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Powered-By", "php")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(u.Close)
	return u
}

// baseConfig's upstream timeout is what an ordinary answer must beat on a
// saturated machine (300 ms did not, under make test with busy loops); the
// /slow path, which answers only when the proxy gives up, waits it out once.
const baseConfig = `
environment: development
upstream: {url: "${UPSTREAM}", timeout: 5s}
issuer:
  url: https://auth.test
  keys: [{id: es, algorithm: ES256, private_key_file: key.pem}]
audience: [orders-api]
routes:
  - {path: /public, auth: none}
  - {path: /docs, auth: optional}
  - {path: /admin, scopes: [admin]}
  - {path: /orders, methods: [GET], scopes: [orders:read]}
  - {path: /limited, rate_limit: {requests: 2, per: 1m, burst: 2, key: subject}}
  - {path: /shadow, rate_limit: {requests: 1, per: 1m, burst: 1, key: subject, shadow: true}}
  - {path: /byip, rate_limit: {requests: 1, per: 1m, burst: 1, key: client_ip}}
  - {path: /}
security_headers:
  Server: ""
  X-Powered-By: ""
`

// env is a Portcullis front with a recording upstream behind it.
type env struct {
	front   *httptest.Server
	up      *upstream
	iss     *issuer.Issuer
	h       *Handler
	metrics *metrics.Metrics
}

func newEnv(t testing.TB, extra string) *env {
	t.Helper()
	return newEnvConfig(t, baseConfig+extra)
}

// newEnvConfig is newEnv with a whole configuration of one's own.
func newEnvConfig(t testing.TB, yaml string) *env {
	t.Helper()
	up := newUpstream(t)
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(testKey)
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Parse([]byte(yaml), dir, func(k string) string {
		if k == "UPSTREAM" {
			return up.URL
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	rev := revocation.New(nil)
	iss, err := issuer.New(issuer.Options{Config: cfg, Metrics: m, Revocations: rev})
	if err != nil {
		t.Fatal(err)
	}
	tbl, _, err := policy.Compile(cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.New(ratelimit.Options{Metrics: m})
	h, err := New(Options{Config: cfg, Issuer: iss, Table: tbl, Limiter: lim, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(h.SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := RequestPath(r)
		if p == ForwardAuthPrefix || strings.HasPrefix(p, ForwardAuthPrefix+"/") {
			h.ForwardAuth(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})))
	front.Config.MaxHeaderBytes = 32 << 10 // as the server package sets it
	front.Start()
	t.Cleanup(front.Close)
	t.Cleanup(h.Close)
	return &env{front: front, up: up, iss: iss, h: h, metrics: m}
}

func (e *env) token(t testing.TB, sub, scope string, mutate func(*issuer.Claims)) string {
	t.Helper()
	now := time.Now()
	c := issuer.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: testIssuer, Subject: sub, Audience: jwt.ClaimStrings{"orders-api"}, ID: sub + "-" + scope + fmt.Sprint(now.UnixNano()),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		},
		ClientID: sub, Scope: scope,
	}
	if mutate != nil {
		mutate(&c)
	}
	tok, err := e.iss.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// raw sends a request exactly as written (target, headers) and returns the
// response with its body read.
func (e *env) raw(t testing.TB, method, target string, headers ...string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", e.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/redistest"
	"github.com/portcullis/portcullis/internal/schedtest"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
)

func issuerClaims(sub string, now time.Time) issuer.Claims {
	return issuer.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "https://auth.test", Subject: sub, Audience: jwt.ClaimStrings{"api"}, ID: sub + "-1",
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}, ClientID: sub, Scope: "a"}
}

const testConfig = `
environment: development
admin_listen: ""
issuer:
  url: https://auth.test
  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]
  clients: [{id: svc, secret_hash: "${HASH}", scopes: [a, portcullis:admin]}]
audience: [api]
routes: [{path: /}]
rate_limit:
  token_endpoint: {requests: 2, per: 1h, burst: 2, key: client_ip}
`

// hash of "s3cret-s3cret-s3cret-s3cret-s3cret" at cost 4.
const testHash = "$2a$04$HJo5qwHPrtpVsZh5YkO6ve4fC4EeYJQ4G9Scxun0EcuN5rlW2YNPO"
const testSecret = "s3cret-s3cret-s3cret-s3cret-s3cret"

func newTestServer(t *testing.T, extra string, env map[string]string) *Server {
	t.Helper()
	return serverFrom(t, testConfig+extra, env)
}

// serverFrom builds a server from YAML; ${HASH} is the test client's hash.
func serverFrom(t testing.TB, yaml string, env map[string]string) *Server {
	t.Helper()
	get := func(k string) string {
		if k == "HASH" {
			return testHash
		}
		return env[k]
	}
	cfg, _, err := config.Parse([]byte(yaml), t.TempDir(), get)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if s.redis != nil {
		// What Run starts: the heartbeat and the revocation stream reader,
		// which readiness (and so every request) waits for.
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go s.limiter.Run(ctx)
		go s.revocations.Run(ctx)
	}
	return s
}

func tokenRequest(h http.Handler, secret string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", url.QueryEscape(secret))
	req.RequestURI = "/token"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestTokenLimitBeforeBcrypt(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, "", nil)
	h := s.Handler()
	for i := 0; i < 2; i++ {
		if rec := tokenRequest(h, "wrong"); rec.Code != 401 {
			t.Fatalf("attempt %d: %d", i, rec.Code)
		}
	}
	failures := testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("invalid_client"))
	for i := 0; i < 5; i++ {
		rec := tokenRequest(h, "wrong")
		if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("attempt %d past the limit: %d %v", i, rec.Code, rec.Header())
		}
	}
	if got := testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("invalid_client")); got != failures {
		t.Errorf("rate-limited attempts reached the secret check (%v → %v failures)", failures, got)
	}
}

func TestOwnEndpointsAndProbes(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, "", nil)
	front := httptest.NewServer(s.Handler())
	defer front.Close()
	get := func(path string) (*http.Response, string) {
		resp, err := front.Client().Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, _ := get("/health/ready"); resp.StatusCode != 503 {
		t.Errorf("ready before start = %d, want 503", resp.StatusCode)
	}
	s.started.Store(true)
	for _, p := range []string{"/health/live", "/health/ready", "/health/startup", "/.well-known/jwks.json", "/.well-known/oauth-authorization-server"} {
		if resp, body := get(p); resp.StatusCode != 200 {
			t.Errorf("GET %s = %d %s", p, resp.StatusCode, body)
		} else if resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s lacks security headers", p)
		}
	}
	resp, body := get("/health")
	var h struct {
		Status string         `json:"status"`
		Checks map[string]any `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil || resp.StatusCode != 200 || h.Status != "healthy" {
		t.Errorf("/health = %d %s", resp.StatusCode, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "http_requests_total") || !strings.Contains(body, "go_goroutines") {
		t.Error("/metrics lacks http_requests_total or the Go collector")
	}
	// Our own paths are exact: anything else belongs to the application.
	if resp, _ := get("/token/"); resp.StatusCode != 404 {
		t.Errorf("/token/ = %d, want the proxy's 404 (no upstream)", resp.StatusCode)
	}
	s.draining.Store(true)
	if resp, _ := get("/health/ready"); resp.StatusCode != 503 {
		t.Errorf("ready while draining = %d, want 503", resp.StatusCode)
	}
	if resp, _ := get("/health/live"); resp.StatusCode != 200 {
		t.Errorf("live while draining = %d, want 200", resp.StatusCode)
	}
}

// TestRevocationAcrossReplicasAndRedisOutage runs two replicas on one Redis:
// a revocation at one is enforced by the other within 1 s; while Redis is
// down /revoke answers 503, readiness stays 200 and /health is degraded.
func TestRevocationAcrossReplicasAndRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := map[string]string{"REDIS_URL": srv.URL(), "DISABLE_RATE_LIMIT": "true"}
	a := newTestServer(t, "", env)
	b := newTestServer(t, "", env)
	for _, s := range []*Server{a, b} {
		s.started.Store(true)
	}
	mint := func() string {
		rec := tokenRequest(a.Handler(), testSecret)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
			t.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
		return tok.AccessToken
	}
	first, second := mint(), mint()
	var tok struct{ AccessToken string }
	tok.AccessToken = first
	if _, err := b.current().issuer.Verify(tok.AccessToken); err != nil {
		t.Fatalf("replica b rejects a fresh token: %v", err)
	}
	revoke := func(s *Server) int {
		req := httptest.NewRequest("POST", "/revoke", strings.NewReader("token="+tok.AccessToken))
		req.RequestURI = "/revoke"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", testSecret)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := revoke(a); code != 200 {
		t.Fatalf("revoke at a = %d", code)
	}
	// The promise is 1 s of propagation; on a saturated machine the time
	// this process spends waiting for a CPU is measured and set apart.
	lag := schedtest.Lag()
	start := time.Now()
	for {
		if _, err := b.current().issuer.Verify(tok.AccessToken); err != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("replica b still accepts the token 30s after revocation at a")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
	if d, late := time.Since(start), lag(); d > time.Second+late {
		t.Errorf("replica b accepted the token for %v after revocation at a (scheduler lateness %v)", d, late)
	}

	srv.Kill()
	tok.AccessToken = second
	if code := revoke(a); code != 503 {
		t.Errorf("revoke with Redis down = %d, want 503", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !a.limiter.Degraded() {
		if time.Now().After(deadline) {
			t.Fatal("not degraded 15s after Redis died")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	rec := httptest.NewRecorder()
	a.ready(rec, httptest.NewRequest("GET", "/health/ready", nil))
	if rec.Code != 200 {
		t.Errorf("ready with Redis down = %d, want 200", rec.Code)
	}
	rec = httptest.NewRecorder()
	a.health(rec, httptest.NewRequest("GET", "/health", nil))
	if !strings.Contains(rec.Body.String(), `"status":"degraded"`) {
		t.Errorf("/health with Redis down = %s, want degraded", rec.Body)
	}
	if _, err := a.current().issuer.Verify(first); err == nil {
		t.Error("a forgot the revocation while Redis is down")
	}
	if _, err := a.current().issuer.Verify(second); err != nil {
		t.Errorf("a 503 revocation took effect anyway: %v", err)
	}
	if rec := tokenRequest(a.Handler(), testSecret); rec.Code != 200 {
		t.Errorf("/token with Redis down = %d, want 200 (local limits)", rec.Code)
	}
}

// TestThreeReplicasShareOneLimit runs three full Portcullis servers, each
// with its own Redis client, and spreads a bounded concurrent load over them:
// exactly the limit gets through (its window is too long to refill). The
// Redis timeout is generous so that this measures sharing, not starvation;
// if a call misses it anyway, that request is decided from the replica's
// share, and the bound widens by one share per replica (ratelimit's
// TestSharedLimitUnderStarvation measures that case).
func TestThreeReplicasShareOneLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	extra := "upstream: {url: \"" + up.URL + "\"}\nredis: {url: \"" + srv.URL() + "\", timeout: 2s}\n"
	const limit, share = 20, 7
	var replicas []*Server
	for i := 0; i < 3; i++ {
		cfg := strings.Replace(testConfig, "routes: [{path: /}]", "routes: [{path: /, rate_limit: {requests: 20, per: 1h, key: subject}}]", 1)
		replicas = append(replicas, serverFrom(t, cfg+extra, nil))
	}
	for i, r := range replicas {
		deadline := time.Now().Add(20 * time.Second)
		for r.limiter.Replicas() != 3 {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d counts %d replicas, want 3", i, r.limiter.Replicas())
			}
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
	}
	tok, err := replicas[0].current().issuer.Sign(issuerClaims("svc", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for g := 0; g < 9; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				req := httptest.NewRequest("GET", "/x", nil)
				req.RequestURI = "/x"
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				replicas[g%3].Handler().ServeHTTP(rec, req)
				mu.Lock()
				codes[rec.Code]++
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	var failed float64
	for _, r := range replicas {
		failed += testutil.ToFloat64(r.metrics.RateLimitBackendFailures)
	}
	switch {
	case codes[200]+codes[429] != 90:
		t.Errorf("responses %v, want only 200 and 429", codes)
	case failed == 0 && codes[200] != limit:
		t.Errorf("responses %v across three replicas, want %d allowed and the rest 429", codes, limit)
	case codes[200] > limit+3*share:
		t.Errorf("responses %v with %v Redis calls failed, want at most %d allowed", codes, failed, limit+3*share)
	}
}

// limitedServer builds a server whose one route allows 3 requests per hour
// per subject, with the given redis section, in front of a do-nothing app.
func limitedServer(t *testing.T, redisYAML string) *Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	cfg := strings.Replace(testConfig, "routes: [{path: /}]", "routes: [{path: /, rate_limit: {requests: 3, per: 1h, key: subject}}]", 1) +
		"upstream: {url: \"" + up.URL + "\"}\n" + redisYAML
	return serverFrom(t, cfg, nil)
}

// hit sends n proxied requests for subject and returns the status codes.
func hit(t *testing.T, s *Server, subject string, n int) string {
	t.Helper()
	tok, err := s.current().issuer.Sign(issuerClaims(subject, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	for i := 0; i < n; i++ {
		req := httptest.NewRequest("GET", "/x", nil)
		req.RequestURI = "/x"
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		codes = append(codes, rec.Code)
	}
	return fmt.Sprint(codes)
}

// TestSentinelFromConfig configures Redis as Sentinel addrs + master_name:
// shared limits work through the master the Sentinel names.
func TestSentinelFromConfig(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "portcullis-test")
	s := limitedServer(t, "redis: {addrs: [\""+sentinel+"\"], master_name: portcullis-test, timeout: 5s}\n")
	if codes := hit(t, s, "svc", 5); codes != "[200 200 200 429 429]" {
		t.Errorf("codes %v, want three allowed then 429", codes)
	}
	if got := testutil.ToFloat64(s.metrics.RateLimitBackendFailures); got != 0 {
		t.Errorf("%v backend failures: the limit did not go through Redis", got)
	}
}

// TestClusterFromConfig configures several Redis Cluster nodes as addrs:
// limits (one key per call), heartbeats and revocations work across slots.
func TestClusterFromConfig(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t)
	s := limitedServer(t, "redis: {addrs: [\""+strings.Join(nodes, `", "`)+"\"], timeout: 500ms}\n")
	ctx := context.Background()
	// Several subjects land in different slots, hence on different nodes.
	for _, sub := range []string{"svc", "a", "b", "c", "d"} {
		if codes := hit(t, s, sub, 4); codes != "[200 200 200 429]" {
			t.Errorf("subject %s: codes %v, want three allowed then 429", sub, codes)
		}
	}
	if got := testutil.ToFloat64(s.metrics.RateLimitBackendFailures); got != 0 {
		t.Errorf("%v backend failures: limits did not go through the cluster", got)
	}
	if err := s.revocations.RevokeToken(ctx, "jti-cluster", time.Now().Add(time.Hour)); err != nil {
		t.Errorf("revocation through the cluster: %v", err)
	}
}

func TestPanicIsAJSON500(t *testing.T) {
	t.Parallel()
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	h := instrument(metrics.New(), slog.New(slog.DiscardHandler), func() (func(http.Header), http.Handler) { return nil, boom })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(rec.Body.String(), `"server_error"`) {
		t.Errorf("panic answered %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if strings.Contains(rec.Body.String(), "boom") {
		t.Error("panic value echoed to the client")
	}
}

package issuer

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/redistest"
)

// clientJWKS serves a client's public keys at /jwks.json; set swaps them.
type clientJWKS struct {
	srv     *httptest.Server
	mu      sync.Mutex
	body    []byte
	fetches atomic.Int32
	block   chan struct{} // non-nil: requests wait for it to close
}

func newClientJWKS(t *testing.T) *clientJWKS {
	t.Helper()
	c := &clientJWKS{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		body, block := c.body, c.block
		c.mu.Unlock()
		if block != nil {
			<-block
		}
		c.fetches.Add(1)
		if body == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *clientJWKS) set(t *testing.T, keys map[string]*ecdsa.PrivateKey) {
	t.Helper()
	set := config.JWKSet{}
	for kid, k := range keys {
		set.Keys = append(set.Keys, ecJWK(t, kid, k))
	}
	b, err := json.Marshal(map[string]any{"keys": jwkJSON(set.Keys)})
	if err != nil {
		t.Fatal(err)
	}
	c.setRaw(b)
}

func (c *clientJWKS) setRaw(b []byte) {
	c.mu.Lock()
	c.body = b
	c.mu.Unlock()
}

func jwkJSON(keys []config.JWK) []jwk {
	out := make([]jwk, len(keys))
	for i, k := range keys {
		out[i] = jwk{Kty: k.Kty, Kid: k.Kid, Alg: k.Alg, Crv: k.Crv, X: k.X, Y: k.Y}
	}
	return out
}

func jwksURLIssuer(t *testing.T, url string, o Options) (*Issuer, *clock) {
	t.Helper()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	cfg := testConfig(t)
	cfg.Issuer.Clients = append(cfg.Issuer.Clients, config.Client{ID: "reporting", Scopes: []string{"orders:read"}, JWKSURL: url})
	o.Now = clk.now
	return newTestIssuer(t, cfg, o), clk
}

// TestClientJWKSRotation: a jwks_url client publishes a new key and signs
// with it; the unknown kid triggers one fetch at once, then at most one a
// minute however many unknown kids arrive.
func TestClientJWKSRotation(t *testing.T) {
	t.Parallel()
	k1, k2, k3 := newECKey(t), newECKey(t), newECKey(t)
	js := newClientJWKS(t)
	js.set(t, map[string]*ecdsa.PrivateKey{"k1": k1})
	iss, clk := jwksURLIssuer(t, js.srv.URL+"/jwks.json", Options{})
	srv := serveIssuer(t, iss)
	startIssuer(t, iss)
	assert := func(key *ecdsa.PrivateKey, kid string) int {
		status, _ := postToken(t, srv.URL, assertionForm(sign(t, jwt.SigningMethodES256, key, kid, assertionClaims("reporting", clk.now()))))
		return status
	}
	if s := assert(k1, "k1"); s != 200 {
		t.Fatalf("k1: status %d", s)
	}
	js.set(t, map[string]*ecdsa.PrivateKey{"k1": k1, "k2": k2})
	if s := assert(k2, "k2"); s != 200 {
		t.Fatalf("rotated to k2: status %d, want 200 (fetch at once on an unknown kid)", s)
	}
	if n := js.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// A flood of unknown kids within the minute: no further fetch.
	js.set(t, map[string]*ecdsa.PrivateKey{"k2": k2, "k3": k3})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s := assert(k3, fmt.Sprintf("flood-%d", i)); s != 401 {
				t.Errorf("unknown kid: status %d", s)
			}
		}()
	}
	wg.Wait()
	if s := assert(k3, "k3"); s != 401 {
		t.Fatalf("k3 within the minute: status %d, want 401", s)
	}
	if n := js.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a flood of unknown kids, want still 2", n)
	}
	clk.t = clk.t.Add(unknownKidRefetch)
	if s := assert(k3, "k3"); s != 200 {
		t.Fatalf("k3 a minute later: status %d, want 200", s)
	}
	if s := assert(k1, "k1"); s != 401 {
		t.Fatalf("k1 after its removal: status %d, want 401", s)
	}
}

// TestUnknownKidFetchIsShared: concurrent unknown kids at the same moment
// share one fetch and all see its result.
func TestUnknownKidFetchIsShared(t *testing.T) {
	t.Parallel()
	k1, k2 := newECKey(t), newECKey(t)
	js := newClientJWKS(t)
	js.set(t, map[string]*ecdsa.PrivateKey{"k1": k1})
	iss, clk := jwksURLIssuer(t, js.srv.URL, Options{})
	srv := serveIssuer(t, iss)
	startIssuer(t, iss)
	js.set(t, map[string]*ecdsa.PrivateKey{"k1": k1, "k2": k2})
	block := make(chan struct{})
	js.mu.Lock()
	js.block = block
	js.mu.Unlock()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := postToken(t, srv.URL, assertionForm(sign(t, jwt.SigningMethodES256, k2, "k2", assertionClaims("reporting", clk.now()))))
			if status == 200 {
				ok.Add(1)
			}
		}()
	}
	// Every request is parked on the one fetch (or queued before it).
	waitFor(t, "the unknown-kid fetch to start", func() bool {
		iss.clients.sources[0].kidMu.Lock()
		defer iss.clients.sources[0].kidMu.Unlock()
		return iss.clients.sources[0].kidWaiting != nil
	})
	close(block)
	wg.Wait()
	if n := js.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (start and one shared unknown-kid fetch)", n)
	}
	if ok.Load() != 20 {
		t.Fatalf("%d of 20 assertions accepted, want all", ok.Load())
	}
}

// TestHostileJWKS: documents over the size bound, with too many keys or
// with broken keys never replace the last good set, and a fetch that
// fails still counts for readiness.
func TestHostileJWKS(t *testing.T) {
	t.Parallel()
	good := newECKey(t)
	goodJWK := ecJWK(t, "good", good)
	many := make([]jwk, maxJWKSKeys+1)
	for i := range many {
		many[i] = jwkJSON([]config.JWK{goodJWK})[0]
		many[i].Kid = fmt.Sprint("k", i)
	}
	manyBody, _ := json.Marshal(map[string]any{"keys": many})
	huge := []byte(`{"keys":[],"pad":"` + strings.Repeat("A", jwksMaxBytes) + `"}`)
	bad, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
		{"kty": "RSA", "kid": "even-e", "n": b64.EncodeToString(rsa2048.N.Bytes()), "e": "Ag"},
		{"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": goodJWK.X, "y": goodJWK.X},
		{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
	}})
	cases := []struct {
		name string
		body []byte
	}{
		{"over 1 MiB", huge},
		{"too many keys", manyBody},
		{"only broken keys", bad},
		{"not JSON", []byte("<html>")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			js := newClientJWKS(t)
			js.setRaw(c.body)
			iss, _ := jwksURLIssuer(t, js.srv.URL, Options{})
			startIssuer(t, iss) // ready although the fetch failed
			if n := len(*iss.clients.sources[0].keys.Load()); n != 0 {
				t.Fatalf("%d keys loaded from a hostile document", n)
			}
			js.set(t, map[string]*ecdsa.PrivateKey{"good": good})
			if _, err := iss.clients.sources[0].fetch(context.Background()); err != nil {
				t.Fatal(err)
			}
			js.setRaw(c.body)
			if _, err := iss.clients.sources[0].fetch(context.Background()); err == nil {
				t.Fatal("hostile document accepted")
			}
			if iss.clients.sources[0].key("good") == nil {
				t.Fatal("the last good key set was lost")
			}
		})
	}
}

// TestReadyWaitsForFirstFetch: /health/ready depends on Ready, which stays
// false while the first fetch of a jwks_url is in flight.
func TestReadyWaitsForFirstFetch(t *testing.T) {
	t.Parallel()
	js := newClientJWKS(t)
	js.set(t, map[string]*ecdsa.PrivateKey{"k1": newECKey(t)})
	block := make(chan struct{})
	js.block = block
	iss, _ := jwksURLIssuer(t, js.srv.URL, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	iss.Start(ctx)
	if iss.Ready() {
		t.Fatal("ready while the first fetch is blocked")
	}
	close(block)
	waitFor(t, "ready after the first fetch", iss.Ready)
	cfg := testConfig(t)
	if !newTestIssuer(t, cfg, Options{}).Ready() {
		t.Fatal("an issuer without remote key sets is not ready")
	}
}

// TestAssertionReplayAcrossReplicas: two replicas sharing a real Redis; an
// assertion accepted by one is refused by the other, and by a replica that
// started afterwards with empty memory.
func TestAssertionReplayAcrossReplicas(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	key := newECKey(t)
	clk := &clock{t: time.Now().Truncate(time.Second)}
	replica := func() (string, *redis.Client) {
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { rdb.Close() })
		cfg := testConfig(t)
		cfg.Issuer.Clients = append(cfg.Issuer.Clients, config.Client{
			ID: "reporting", Scopes: []string{"orders:read"},
			JWKS: &config.JWKSet{Keys: []config.JWK{ecJWK(t, "r1", key)}},
		})
		iss := newTestIssuer(t, cfg, Options{Now: clk.now, Replay: NewReplayCache(rdb, time.Second, nil)})
		return serveIssuer(t, iss).URL, rdb
	}
	a, rdb := replica()
	b, _ := replica()
	assertion := sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))
	if status, body := postToken(t, a, assertionForm(assertion)); status != 200 {
		t.Fatalf("replica a: %d %v", status, body)
	}
	if status, _ := postToken(t, b, assertionForm(assertion)); status != 401 {
		t.Fatalf("replay on replica b: status %d, want 401", status)
	}
	c, _ := replica() // a restarted replica: empty memory, same Redis
	if status, _ := postToken(t, c, assertionForm(assertion)); status != 401 {
		t.Fatalf("replay on a restarted replica: status %d, want 401", status)
	}
	keys, err := rdb.Keys(context.Background(), replayKeyPrefix+"*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("redis keys %v (%v), want one %s key", keys, err, replayKeyPrefix)
	}
	if strings.Contains(keys[0], "reporting") {
		t.Errorf("key %s holds the client id in clear; want a hash", keys[0])
	}
	ttl, err := rdb.PTTL(context.Background(), keys[0]).Result()
	if err != nil || ttl <= 0 || ttl > 2*time.Minute {
		t.Errorf("key TTL %s (%v), want the assertion's remaining life", ttl, err)
	}
	fresh := sign(t, jwt.SigningMethodES256, key, "r1", assertionClaims("reporting", clk.now()))
	if status, _ := postToken(t, b, assertionForm(fresh)); status != 200 {
		t.Fatalf("fresh assertion on replica b: status %d", status)
	}
}

// TestReplayCacheBound: the in-memory record stops at its bound and
// refuses rather than forgetting a live jti; expired entries make room.
func TestReplayCacheBound(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(nil, 0, nil)
	now := time.Unix(1_700_000_000, 0)
	ctx := context.Background()
	for i := range replayMaxEntries {
		if ok, err := c.firstUse(ctx, "c", fmt.Sprint(i), now, now.Add(time.Minute)); !ok || err != nil {
			t.Fatalf("entry %d: %v %v", i, ok, err)
		}
	}
	if _, err := c.firstUse(ctx, "c", "one-more", now, now.Add(time.Minute)); err != errReplayFull {
		t.Fatalf("past the bound: %v, want errReplayFull", err)
	}
	if ok, _ := c.firstUse(ctx, "c", "0", now, now.Add(time.Minute)); ok {
		t.Fatal("a live jti was forgotten")
	}
	later := now.Add(2 * time.Minute)
	if ok, err := c.firstUse(ctx, "c", "one-more", later, later.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if len(c.seen) != 1 {
		t.Fatalf("%d entries after expiry, want 1", len(c.seen))
	}
}

// TestJWKSDecodeIsBounded: a 1 MiB document of empty keys is refused after
// maxJWKSKeys of them, without decoding the rest; well-formed sets with
// other members still decode.
func TestJWKSDecodeIsBounded(t *testing.T) { // not parallel: it counts allocations
	flood := []byte(`{"keys":[` + strings.Repeat(`{},`, jwksMaxBytes/3-10) + `{}]}`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := decodeJWKS(flood); err == nil {
		t.Fatal("flood of keys accepted")
	}
	runtime.ReadMemStats(&after)
	// Decoding all 350,000 keys would allocate over 40 MiB.
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing a flood of keys allocated %d bytes; want it stopped at %d keys", n, maxJWKSKeys)
	}
	for _, bad := range []string{`[]`, `{"keys":{}}`, `{"keys":[],"keys":[]}`, `{"other":1}`, `{"keys":[{"kty":1}]}`} {
		if _, err := decodeJWKS([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	got, err := decodeJWKS([]byte(`{"meta":{"x":[1,2]},"keys":[{"kty":"EC","kid":"a"}]}`))
	if err != nil || len(got) != 1 || got[0].Kid != "a" {
		t.Errorf("got %v, %v", got, err)
	}
}

// TestReplayWhenRedisIsDown: with Redis unreachable the replica's own
// record decides, so /token keeps working and this replica still accepts a
// jti only once; each call waits at most the Redis timeout.
func TestReplayWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	defer rdb.Close()
	rs.Kill()
	c := NewReplayCache(rdb, 100*time.Millisecond, nil)
	now := time.Now()
	ctx := context.Background()
	start := time.Now()
	if ok, err := c.firstUse(ctx, "reporting", "j1", now, now.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("first use with Redis down: %v %v, want accepted", ok, err)
	}
	if ok, _ := c.firstUse(ctx, "reporting", "j1", now, now.Add(time.Minute)); ok {
		t.Fatal("replay on the same replica accepted while Redis is down")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("two calls took %s with Redis down", d)
	}
}

// FuzzParseJWKS: any document a remote endpoint serves is parsed without
// panicking, into at most maxJWKSKeys keys, each pinned to an allowed
// algorithm.
func FuzzParseJWKS(f *testing.F) {
	good, _ := json.Marshal(map[string]any{"keys": jwkJSON([]config.JWK{ecJWK(f, "a", newECKey(f))})})
	rsaJWK, _ := publicJWK(&Key{ID: "r", Alg: "RS256", public: &rsa2048.PublicKey})
	withRSA, _ := json.Marshal(map[string]any{"keys": []jwk{rsaJWK}})
	for _, s := range []string{string(good), string(withRSA), `{"keys":[]}`, `{"keys":[{},{}]}`, `[]`, `{"keys":{}}`,
		`{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}`, `{"a":{"b":[1,{"c":2}]},"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e","x":"AA"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data, config.AssertionAlgorithms)
		if err != nil {
			return
		}
		if len(keys) > maxJWKSKeys {
			t.Fatalf("%d keys", len(keys))
		}
		for kid, k := range keys {
			if kid == "" || !slices.Contains(config.AssertionAlgorithms, k.Alg) {
				t.Fatalf("key %q pinned to %q", kid, k.Alg)
			}
		}
	})
}

package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// TestLateReplicaRefusesRevokedTokensFromItsFirstRequest: 5,000 tokens are
// revoked at one replica; a replica started afterwards is not ready until
// it has read them all, and the requests sent to it at once (as a load
// balancer without readiness checks would) wait for that and are refused.
func TestLateReplicaRefusesRevokedTokensFromItsFirstRequest(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("upstream saw %s with a revoked token", r.URL.Path)
	}))
	defer up.Close()
	cfg := testConfig + "upstream: {url: \"" + up.URL + "\"}\nredis: {url: \"" + srv.URL() + "\", timeout: 2s}\n"
	first := serverFrom(t, cfg, nil)
	const n = 5000
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				if err := first.revocations.RevokeToken(context.Background(), fmt.Sprintf("sub-%d-1", i), now.Add(time.Hour)); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	late := serverFrom(t, cfg, nil) // its Redis loops start now
	late.started.Store(true)
	// The first requests, sent at once: tokens revoked at the other replica.
	for _, i := range []int{0, n / 2, n - 1} {
		tok, err := late.current().issuer.Sign(issuerClaims(fmt.Sprintf("sub-%d", i), now))
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/x", nil)
		req.RequestURI = "/x"
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		late.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(strings.Join(rec.Header()["WWW-Authenticate"], ","), "invalid_token") {
			t.Errorf("revoked token %d at a fresh replica: %d %s, want 401 invalid_token", i, rec.Code, rec.Body)
		}
	}
	if tokens, _ := late.revocations.Len(); tokens != n {
		t.Errorf("the late replica holds %d revocations, want %d", tokens, n)
	}
	rec := httptest.NewRecorder()
	late.ready(rec, httptest.NewRequest("GET", "/health/ready", nil))
	if rec.Code != 200 {
		t.Errorf("ready after catching up = %d, want 200", rec.Code)
	}
}

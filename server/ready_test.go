package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestReadyWaitsForTrustedIssuerKeys: /health/ready stays 503 while a
// trusted issuer's first JWKS fetch is in flight, and turns 200 once it has
// finished, here with an error (an IdP that is down must not keep the
// replica out of service forever).
func TestReadyWaitsForTrustedIssuerKeys(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer idp.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	s := newTestServer(t, "trusted_issuers: [{issuer: https://idp.test, jwks_url: "+idp.URL+"}]\n", nil)
	ready := func() int {
		rec := httptest.NewRecorder()
		s.ready(rec, httptest.NewRequest("GET", "/health/ready", nil))
		return rec.Code
	}
	s.started.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.current().issuer.Start(ctx)
	if code := ready(); code != 503 {
		t.Fatalf("ready while the first JWKS fetch is in flight = %d, want 503", code)
	}
	close(release)
	deadline := time.Now().Add(20 * time.Second)
	for ready() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("not ready after the first fetch finished")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
}

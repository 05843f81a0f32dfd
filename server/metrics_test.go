package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRedisUpOnlyWithRedis: a Redis-less install must not export redis_up,
// or a "Redis down" alert (redis_up == 0) would fire on it forever.
func TestRedisUpOnlyWithRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string
		want  bool
	}{
		{"no redis", "", false},
		// New does no network I/O, so an address nothing listens on is fine.
		{"redis configured", "redis: {url: redis://127.0.0.1:1/0}\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, tt.extra, nil)
			rec := httptest.NewRecorder()
			s.admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("/metrics: status %d", rec.Code)
			}
			body := rec.Body.String()
			if got := strings.Contains(body, "\nredis_up "); got != tt.want {
				t.Errorf("redis_up exported = %v, want %v", got, tt.want)
			}
			if !strings.Contains(body, "rate_limit_backend_failures_total") {
				t.Error("rate_limit_backend_failures_total missing")
			}
		})
	}
}

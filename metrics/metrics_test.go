package metrics

import (
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// specNames is copied by hand from docs/reference.md ("Metrics"), independently of
// the code: dashboards and alerts depend on these exact names.
var specNames = []string{
	"auth_requests_total", "auth_failures_total", "auth_request_duration_seconds",
	"rate_limit_violations_total", "tokens_issued_total", "tokens_revoked_total",
	"http_requests_total", "http_request_duration_seconds", "upstream_request_duration_seconds",
	"redis_up", "rate_limit_backend_failures_total",
	"config_reloads_total", "config_last_reload_successful",
}

func TestMetricNamesMatchSpec(t *testing.T) {
	t.Parallel()
	m := New()
	m.ExportRedisUp() // as with Redis configured; see TestRedisUpOnlyWhenExported
	// Touch the vectors so they are gathered.
	m.AuthRequests.WithLabelValues("allowed")
	m.AuthFailures.WithLabelValues("expired")
	m.RateLimitViolations.WithLabelValues("/")
	m.TokensIssued.WithLabelValues("c")
	m.ObserveHTTP(200, "GET", 0.001)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, n := range specNames {
		if !got[n] {
			t.Errorf("metric %s from docs/reference.md is not registered", n)
		}
	}
	var own []string
	for n := range got {
		if !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			own = append(own, n)
		}
	}
	sort.Strings(own)
	if len(own) != len(specNames) {
		t.Errorf("registered %v, want exactly the documented %d names", own, len(specNames))
	}
}

func TestMethodLabelIsClosed(t *testing.T) {
	t.Parallel()
	m := New()
	m.ObserveHTTP(200, "BREW", 0)
	m.ObserveHTTP(1000, "GET", 0)
	families, _ := m.Registry.Gather()
	for _, f := range families {
		if f.GetName() != "http_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if v := l.GetValue(); v == "BREW" || v == "1000" {
					t.Errorf("label %s=%q leaked into the metric", l.GetName(), v)
				}
			}
		}
	}
}

func TestReloadResult(t *testing.T) {
	t.Parallel()
	m := New()
	steps := []struct {
		ok                     bool
		success, failure, last float64
	}{
		{ok: false, success: 0, failure: 1, last: 0},
		{ok: true, success: 1, failure: 1, last: 1},
		{ok: true, success: 2, failure: 1, last: 1},
	}
	if got := testutil.ToFloat64(m.ConfigLastReloadOK); got != 1 {
		t.Fatalf("config_last_reload_successful at start = %v, want 1", got)
	}
	for i, s := range steps {
		m.ReloadResult(s.ok)
		got := [3]float64{
			testutil.ToFloat64(m.ConfigReloads.WithLabelValues("success")),
			testutil.ToFloat64(m.ConfigReloads.WithLabelValues("failure")),
			testutil.ToFloat64(m.ConfigLastReloadOK),
		}
		if want := [3]float64{s.success, s.failure, s.last}; got != want {
			t.Errorf("step %d: (success, failure, last) = %v, want %v", i, got, want)
		}
	}
}

// Package metrics holds Portcullis's Prometheus collectors. The metric names
// are part of the external contract (dashboards and alerts in deploy/ use
// them), so they are defined here once. Each Metrics has its own registry:
// nothing is registered globally.
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of collectors. All fields are safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	AuthRequests             *prometheus.CounterVec // result
	AuthFailures             *prometheus.CounterVec // reason
	AuthDuration             prometheus.Histogram
	RateLimitViolations      *prometheus.CounterVec // route
	TokensIssued             *prometheus.CounterVec // client_id
	TokensRevoked            prometheus.Counter
	HTTPRequests             *prometheus.CounterVec // code, method
	HTTPDuration             prometheus.Histogram
	UpstreamDuration         prometheus.Histogram
	RedisUp                  prometheus.Gauge
	RateLimitBackendFailures prometheus.Counter
}

// latencyBuckets suit a sidecar whose own work is microseconds but whose
// proxied requests take as long as the application.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New creates the collectors on a fresh registry, with Go and process
// collectors included.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		AuthRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_requests_total", Help: "Authorization decisions by result (allowed, unauthorized, forbidden, rate_limited, invalid_request, not_found).",
		}, []string{"result"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_failures_total", Help: "Failed authentications by reason.",
		}, []string{"reason"}),
		AuthDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "auth_request_duration_seconds", Help: "Time spent deciding a request (verify, policy, limit), excluding the upstream.", Buckets: latencyBuckets,
		}),
		RateLimitViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rate_limit_violations_total", Help: "Requests over a rate limit, by route.",
		}, []string{"route"}),
		TokensIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokens_issued_total", Help: "Access tokens issued, by client id.",
		}, []string{"client_id"}),
		TokensRevoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokens_revoked_total", Help: "Tokens revoked through /revoke or /admin/revoke-tokens.",
		}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP responses sent, by status code and method.",
		}, []string{"code", "method"}),
		HTTPDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Time from request to response, upstream included.", Buckets: latencyBuckets,
		}),
		UpstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "upstream_request_duration_seconds", Help: "Time the upstream took to answer.", Buckets: latencyBuckets,
		}),
		RedisUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redis_up", Help: "1 when the shared Redis store answers, 0 otherwise.",
		}),
		RateLimitBackendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rate_limit_backend_failures_total", Help: "Rate-limit decisions the shared store could not make.",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.AuthRequests, m.AuthFailures, m.AuthDuration, m.RateLimitViolations,
		m.TokensIssued, m.TokensRevoked, m.HTTPRequests, m.HTTPDuration,
		m.UpstreamDuration, m.RedisUp, m.RateLimitBackendFailures,
	)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// knownMethods keeps the method label a closed set; anything else is "other".
var knownMethods = map[string]string{
	"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH",
	"DELETE": "DELETE", "OPTIONS": "OPTIONS", "CONNECT": "CONNECT", "TRACE": "TRACE",
}

// ObserveHTTP counts one response.
func (m *Metrics) ObserveHTTP(code int, method string, seconds float64) {
	lm, ok := knownMethods[method]
	if !ok {
		lm = "other"
	}
	m.HTTPRequests.WithLabelValues(codeLabel(code), lm).Inc()
	m.HTTPDuration.Observe(seconds)
}

func codeLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 429:
		return "429"
	}
	if code < 100 || code > 999 {
		return "other"
	}
	return strconv.Itoa(code)
}

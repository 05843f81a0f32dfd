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
	RedisUp                  prometheus.Gauge // exported only after ExportRedisUp
	RateLimitBackendFailures prometheus.Counter
	ConfigReloads            *prometheus.CounterVec // result: success | failure
	ConfigLastReloadOK       prometheus.Gauge

	// httpCounters are http_requests_total's children for the common
	// (code, method) pairs, resolved once so the request path takes no
	// lock and hashes no labels.
	httpCounters map[httpKey]prometheus.Counter
	// authResults likewise for auth_requests_total.
	authResults map[string]prometheus.Counter
}

type httpKey struct {
	code   int
	method string
}

// AuthResults are the auth_requests_total result labels.
var AuthResults = []string{"allowed", "unauthorized", "forbidden", "rate_limited", "invalid_request", "not_found", "unavailable"}

// commonCodes are pre-resolved; other codes still count, through the vector.
var commonCodes = []int{200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 413, 415, 429, 500, 502, 503, 504}

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
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_reloads_total", Help: "Configuration reloads (SIGHUP or a changed file), by result (success, failure).",
		}, []string{"result"}),
		ConfigLastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_last_reload_successful", Help: "1 when the last configuration (re)load succeeded, 0 when the running configuration is older than a refused file.",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.AuthRequests, m.AuthFailures, m.AuthDuration, m.RateLimitViolations,
		m.TokensIssued, m.TokensRevoked, m.HTTPRequests, m.HTTPDuration,
		m.UpstreamDuration, m.RateLimitBackendFailures,
		m.ConfigReloads, m.ConfigLastReloadOK,
	)
	// Both results are exported from the start, so an alert on
	// increase(config_reloads_total{result="failure"}) sees a zero first;
	// the configuration the process started with loaded fine.
	m.ConfigReloads.WithLabelValues("success")
	m.ConfigReloads.WithLabelValues("failure")
	m.ConfigLastReloadOK.Set(1)
	m.httpCounters = make(map[httpKey]prometheus.Counter, len(commonCodes)*len(knownMethods))
	for _, c := range commonCodes {
		for meth := range knownMethods {
			m.httpCounters[httpKey{c, meth}] = m.HTTPRequests.WithLabelValues(strconv.Itoa(c), meth)
		}
	}
	m.authResults = make(map[string]prometheus.Counter, len(AuthResults))
	for _, r := range AuthResults {
		m.authResults[r] = m.AuthRequests.WithLabelValues(r)
	}
	return m
}

// ReloadResult records the outcome of one configuration reload. The gauge
// is set before the counter moves, so whoever sees the new count (a
// scrape, a test waiting for it) also sees the gauge that goes with it.
func (m *Metrics) ReloadResult(ok bool) {
	if ok {
		m.ConfigLastReloadOK.Set(1)
		m.ConfigReloads.WithLabelValues("success").Inc()
		return
	}
	m.ConfigLastReloadOK.Set(0)
	m.ConfigReloads.WithLabelValues("failure").Inc()
}

// AuthResult counts one authorization decision.
func (m *Metrics) AuthResult(result string) {
	if c, ok := m.authResults[result]; ok {
		c.Inc()
		return
	}
	m.AuthRequests.WithLabelValues(result).Inc()
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
	m.HTTPDuration.Observe(seconds)
	if c, ok := m.httpCounters[httpKey{code, method}]; ok {
		c.Inc()
		return
	}
	lm, ok := knownMethods[method]
	if !ok {
		lm = "other"
	}
	label := "other"
	if code >= 100 && code <= 999 {
		label = strconv.Itoa(code)
	}
	m.HTTPRequests.WithLabelValues(label, lm).Inc()
}

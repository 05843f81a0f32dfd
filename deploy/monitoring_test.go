package deploy

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite kubernetes/base/prometheusrule.yaml from monitoring/portcullis.rules.yaml")

const (
	rulesFile     = "monitoring/portcullis.rules.yaml"
	rulesTestFile = "monitoring/portcullis.rules.test.yaml"
	dashboardFile = "monitoring/dashboard.json"
	promRuleFile  = "kubernetes/base/prometheusrule.yaml"
)

// specMetrics are the metric names of Portcullis's documented interface.
// Some exist only with Redis (redis_up) or TLS, or once a reload happened,
// so a scrape of a plain instance does not show them all.
var specMetrics = []string{
	"auth_requests_total", "auth_failures_total", "auth_request_duration_seconds",
	"rate_limit_violations_total", "tokens_issued_total", "tokens_revoked_total",
	"http_requests_total", "http_request_duration_seconds", "upstream_request_duration_seconds",
	"redis_up", "rate_limit_backend_failures_total", "config_reloads_total",
	"config_last_reload_successful", "tls_certificate_expiry_timestamp_seconds",
}

// promtool returns promtool's path; a missing promtool fails under CI=true
// and skips otherwise (make deps installs it: Debian package prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (apt-get install prometheus, or make deps)")
		}
		t.Skip("promtool not found; make deps installs it")
	}
	return p
}

func TestRulesPassPromtool(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", rulesTestFile},
	} {
		out, err := exec.Command(pt, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEveryAlertIsUnitTested: each alert has a promtool case where it fires
// and one where it is evaluated and does not.
func TestEveryAlertIsUnitTested(t *testing.T) {
	t.Parallel()
	var rules ruleFile
	if err := yaml.UnmarshalStrict(mustRead(t, rulesFile), &rules); err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(mustRead(t, rulesTestFile), &tests); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && (!fires[r.Alert] || !quiet[r.Alert]) {
				t.Errorf("alert %s: tested firing %v, not firing %v; want both", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
}

// TestPrometheusRuleMatchesRulesFile keeps the PrometheusRule object and the
// plain rules file identical; -update regenerates the object.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	t.Parallel()
	plain := mustRead(t, rulesFile)
	if *update {
		body := plain[bytes.Index(plain, []byte("groups:")):]
		var b bytes.Buffer
		b.WriteString(promRuleHeader)
		for _, line := range strings.SplitAfter(string(body), "\n") {
			if strings.TrimSpace(line) != "" {
				b.WriteString("  ")
			}
			b.WriteString(line)
		}
		if err := os.WriteFile(promRuleFile, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want ruleFile
	if err := yaml.UnmarshalStrict(plain, &want); err != nil {
		t.Fatal(err)
	}
	var got prometheusRule
	if err := yaml.UnmarshalStrict(mustRead(t, promRuleFile), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec, want) {
		t.Errorf("%s differs from %s; run: cd deploy && go test -run TestPrometheusRuleMatchesRulesFile -update", promRuleFile, rulesFile)
	}
}

const promRuleHeader = `# Generated from deploy/monitoring/portcullis.rules.yaml (the same groups, for
# the Prometheus Operator): edit that file, then run
#   cd deploy && go test ./... -run TestPrometheusRuleMatchesRulesFile -update
# The operator's ruleSelector must match these labels (kube-prometheus-stack
# selects release: <its release name>).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: portcullis
  labels:
    release: prometheus
    role: alert-rules
spec:
`

// TestEveryMetricUsedIsExported scrapes a live Redis-less instance: every
// metric the rules and the dashboard read is one it exports, or one of the
// documented metrics that need Redis, TLS or a reload to appear.
func TestEveryMetricUsedIsExported(t *testing.T) {
	t.Parallel()
	exported := map[string]bool{"up": true} // written by Prometheus itself
	for _, m := range specMetrics {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			exported[m+suffix] = true
		}
	}
	for _, s := range scrapeLive(t) {
		exported[s.name] = true
	}
	var exprs []string
	var rules ruleFile
	if err := yaml.UnmarshalStrict(mustRead(t, rulesFile), &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, e := range exprs {
		for _, name := range metricNames(e) {
			if !exported[name] {
				t.Errorf("%q reads %s, which Portcullis does not export", strings.TrimSpace(e), name)
			}
		}
	}
}

// TestLiveRedislessInstanceFiresNothing feeds the series of a live
// Redis-less instance, held for an hour, to the rules: nothing fires.
func TestLiveRedislessInstanceFiresNothing(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	samples := scrapeLive(t)
	for _, s := range samples {
		if s.name == "redis_up" {
			t.Fatal("a Redis-less instance exports redis_up: the Redis alert would fire on every install without Redis")
		}
	}
	abs, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n", abs)
	fmt.Fprintf(&b, "      - {series: 'up{job=\"portcullis\",instance=\"live\"}', values: '1x60'}\n")
	for _, s := range samples {
		labels := `job="portcullis",instance="live"`
		if s.labels != "" {
			labels += "," + s.labels
		}
		fmt.Fprintf(&b, "      - {series: '%s{%s}', values: '%s+0x60'}\n", s.name, strings.ReplaceAll(labels, "'", "''"), s.value)
	}
	b.WriteString("    alert_rule_test:\n")
	var rules ruleFile
	if err := yaml.UnmarshalStrict(mustRead(t, rulesFile), &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				for _, at := range []string{"5m", "30m", "60m"} {
					fmt.Fprintf(&b, "      - {eval_time: %s, alertname: %s, exp_alerts: []}\n", at, r.Alert)
				}
			}
		}
	}
	file := filepath.Join(t.TempDir(), "live.test.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "test", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool test rules with a live instance's series: %v\n%s", err, out)
	}
}

// sample is one line of the Prometheus text format.
type sample struct{ name, labels, value string }

// scrapeLive starts the binary from the environment alone (development, no
// Redis, no TLS) on loopback, scrapes /metrics once it is ready, stops it.
func scrapeLive(t *testing.T) []sample {
	t.Helper()
	bin := portcullisBinary(t)
	main, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"ENVIRONMENT=development", "ISSUER_URL=https://auth.test", "BIND_ADDR=" + main, "ADMIN_BIND_ADDR=" + admin}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	for {
		if resp, err := http.Get("http://" + admin + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("portcullis exited: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// One request, so the request counters have children.
	if resp, err := http.Get("http://" + main + "/"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return parseExposition(t, resp.Body)
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)

func parseExposition(t *testing.T, r io.Reader) []sample {
	t.Helper()
	var out []sample
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable metrics line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil || v != v || v > 1e300 || v < -1e300 {
			continue // NaN and infinities have no series notation
		}
		out = append(out, sample{m[1], m[2], strconv.FormatFloat(v, 'f', -1, 64)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if len(out) == 0 {
		t.Fatal("no samples scraped")
	}
	return out
}

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

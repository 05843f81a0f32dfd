package deploy

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// dashboard is the part of the Grafana dashboard model checked here.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(mustRead(t, dashboardFile), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDashboardIsPortable: a stable uid (links and provisioning) and every
// query on the ${datasource} variable, so importing it asks for a data
// source instead of pointing at one that does not exist.
func TestDashboardIsPortable(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		hasVar = hasVar || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
	}
	if !hasVar {
		t.Error("dashboard has no datasource variable of type prometheus")
	}
	for _, p := range d.Panels {
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" || tg.Expr == "" {
				t.Errorf("panel %q: a target without ${datasource} or expr", p.Title)
			}
		}
	}
}

// promqlNoise is what metricNames strips before reading identifiers:
// strings, numbers (1e3 is not a metric e3), label matchers, range selectors and the label lists of by,
// without, on, ignoring, group_left and group_right.
var promqlNoise = []*regexp.Regexp{
	regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
	regexp.MustCompile(`\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b`),
	regexp.MustCompile(`\{[^}]*\}`),
	regexp.MustCompile(`\[[^\]]*\]`),
	regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
}

var (
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	for _, re := range promqlNoise {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, m := range identifier.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || keywords[strings.ToLower(name)] {
			continue // a function or aggregation, or a keyword
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	got := metricNames(`histogram_quantile(0.99, sum by (job, le) (rate(x_bucket{job=~"a|b"}[5m]))) > 2.5 and on (job) up == 0 or tls_expiry - time() < 1.5e3 * 86400`)
	want := []string{"x_bucket", "up", "tls_expiry"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metricNames = %v, want %v", got, want)
	}
}

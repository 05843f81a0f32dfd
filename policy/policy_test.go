package policy

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/claim"
	"github.com/portcullis/portcullis/config"
)

func testTable(t testing.TB) *Table {
	t.Helper()
	tbl, _, err := Compile([]config.Route{
		{Path: "/healthz", Auth: "none"},
		{Path: "/public", Auth: "none"},
		{Path: "/docs", Auth: "optional"},
		{Path: "/orders/", Methods: []string{"GET"}, Auth: "required", Scopes: []string{"orders:read"}},
		{Path: "/orders/", Methods: []string{"POST", "DELETE"}, Auth: "required", Scopes: []string{"orders:write"}},
		{Path: "/admin", Host: "admin.example.com", Auth: "required", Scopes: []string{"admin"}},
		{Path: "/admin", Auth: "required", Scopes: []string{"root"}},
		{Path: "/api/v1", Auth: "required"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

var matchCases = []struct {
	name, method, host, path string
	wantIndex                int // -1: no route
}{
	{"exact", "GET", "x", "/healthz", 0},
	{"segment child", "GET", "x", "/public/x/y", 1},
	{"not a segment prefix", "GET", "x", "/publicity", -1},
	{"case-sensitive", "GET", "x", "/Public", -1},
	{"trailing slash route matches bare", "GET", "x", "/orders", 3},
	{"method picks route", "POST", "x", "/orders/1", 4},
	{"method not listed", "PUT", "x", "/orders/1", -1},
	{"host match", "GET", "admin.example.com:8443", "/admin/users", 5},
	{"host case-insensitive", "GET", "ADMIN.example.com", "/admin", 5},
	{"other host falls through", "GET", "www.example.com", "/admin", 6},
	{"nested prefix", "GET", "x", "/api/v1/things", 7},
	{"sibling prefix", "GET", "x", "/api/v10", -1},
	{"root unmatched", "GET", "x", "/", -1},
}

func TestMatch(t *testing.T) {
	t.Parallel()
	tbl := testTable(t)
	for _, tc := range matchCases {
		t.Run(tc.name, func(t *testing.T) {
			r := tbl.Match(tc.method, tc.host, tc.path)
			got := -1
			if r != nil {
				got = r.Index
			}
			if got != tc.wantIndex {
				t.Errorf("Match(%s %s %s) = route %d, want %d", tc.method, tc.host, tc.path, got, tc.wantIndex)
			}
		})
	}
}

type caller []string

func (c caller) HasScope(s string) bool {
	for _, x := range c {
		if x == s {
			return true
		}
	}
	return false
}
func (c caller) InAudience(string) bool           { return true }
func (c caller) Claim(string) (claim.Claim, bool) { return claim.Claim{}, false }

func TestDecide(t *testing.T) {
	t.Parallel()
	tbl := testTable(t)
	r := tbl.Routes()
	tests := []struct {
		name      string
		route     *Route
		caller    Caller
		want      Outcome
		wantScope string
	}{
		{"none ignores missing token", r[0], nil, Allow, ""},
		{"optional anonymous", r[2], nil, Allow, ""},
		{"required without token", r[3], nil, Unauthenticated, ""},
		{"required with scope", r[3], caller{"orders:read"}, Allow, ""},
		{"required missing scope", r[4], caller{"orders:read"}, Forbidden, "orders:write"},
		{"any valid token", r[7], caller{}, Allow, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, scope := Decide(tc.route, tc.caller)
			if got != tc.want || scope != tc.wantScope {
				t.Errorf("Decide = %v %q, want %v %q", got, scope, tc.want, tc.wantScope)
			}
		})
	}
}

func TestCompileWarnsAboutShadowedRoutes(t *testing.T) {
	t.Parallel()
	_, warnings, err := Compile([]config.Route{
		{Path: "/", Auth: "required"},
		{Path: "/orders", Auth: "none"},
		{Path: "/x", Methods: []string{"GET"}, Auth: "none"},
		{Path: "/x/y", Methods: []string{"POST"}, Auth: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 3 || !strings.Contains(warnings[0], "routes[1]") {
		t.Errorf("warnings = %q, want routes[1..3] shadowed by routes[0]", warnings)
	}
	_, warnings, _ = Compile([]config.Route{
		{Path: "/x", Methods: []string{"GET"}, Auth: "none"},
		{Path: "/x/y", Methods: []string{"POST"}, Auth: "none"},
		{Path: "/x", Host: "a", Auth: "none"},
		{Path: "/x"},
	})
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
}

func TestCompileRefusesAmbiguousRoutePaths(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/a/../b", "//a", "/a%2fb", "/a;b"} {
		if _, _, err := Compile([]config.Route{{Path: p, Auth: "none"}}); err == nil {
			t.Errorf("Compile(%q) succeeded, want an error", p)
		}
	}
}

// FuzzMatch: a path that matches a route must have that route's prefix as a
// whole-segment prefix, and spelling a path differently (encodings) cannot
// reach a route its decoded form does not.
func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.method, tc.host, tc.path)
	}
	f.Add("GET", "x", "/%61dmin")
	f.Add("GET", "Admin.Example.COM.:8443", "/admin")
	f.Add("GET", "admin.example.com..", "/admin")
	tbl := testTable(f)
	f.Fuzz(func(t *testing.T, method, host, raw string) {
		p, err := CleanPath(raw)
		if err != nil {
			return
		}
		r := tbl.Match(method, host, p.Match)
		// The matcher reads the host as ParseHost does, so the canonical
		// spelling and the one sent reach the same route.
		if h, err := ParseHost(host); err == nil && tbl.Match(method, h, p.Match) != r {
			t.Fatalf("host %q and its canonical %q match different routes", host, h)
		}
		if r == nil {
			return
		}
		if !segmentPrefix(p.Match, r.prefix) {
			t.Fatalf("%q matched %q without a segment prefix", p.Match, r.Name)
		}
		if again := tbl.Match(method, host, p.Match); again != r {
			t.Fatalf("match not deterministic")
		}
	})
}

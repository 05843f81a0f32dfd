package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/config"
)

var methodCases = []struct {
	in string
	ok bool
}{
	{"GET", true}, {"POST", true}, {"DELETE", true}, {"PROPFIND", true}, {"M-SEARCH", true},
	{"UPDATEREDIRECTREF", true}, {"X_CUSTOM", true},
	{"get", false}, {"Get", false}, {"gET", false}, {"post", false}, {"delete", false},
	{"", false}, {"G E T", false}, {"GET\t", false}, {"GET/1", false}, {"GE\x00T", false},
	{"G\u00c9T", false}, {"(GET)", false}, {"GET,POST", false},
	{"CONNECT", false}, {"PRI", false}, {strings.Repeat("A", 33), false},
}

func TestParseMethod(t *testing.T) {
	t.Parallel()
	for _, tc := range methodCases {
		if err := ParseMethod(tc.in); (err == nil) != tc.ok {
			t.Errorf("ParseMethod(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

var hostCases = []struct {
	in, want string
	ok       bool
}{
	{"example.com", "example.com", true},
	{"Example.COM", "example.com", true},
	{"example.com.", "example.com", true},
	{"example.com:8443", "example.com", true},
	{"Example.COM.:8443", "example.com", true},
	{"example.com:", "example.com", true},
	{"localhost", "localhost", true},
	{"my_svc.internal", "my_svc.internal", true},
	{"xn--caf-dma.example", "xn--caf-dma.example", true},
	{"127.0.0.1", "127.0.0.1", true},
	{"127.0.0.1:80", "127.0.0.1", true},
	{"[::1]", "[::1]", true},
	{"[::1]:8080", "[::1]", true},
	{"[2001:DB8::1]", "[2001:db8::1]", true},
	{"[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]", true},
	{"", "", true},
	{"example.com..", "", false},
	{".example.com", "", false},
	{"a..b", "", false},
	{".", "", false},
	{"user@example.com", "", false},
	{"user:pw@example.com", "", false},
	{"example.com:80:81", "", false},
	{"example.com:80x", "", false},
	{"example.com:99999", "", false},
	{"example.com:-1", "", false},
	{"::1", "", false},
	{"[::1", "", false},
	{"[::1]x", "", false},
	{"[::1]:80:81", "", false},
	{"[fe80::1%25eth0]", "", false},
	{"[127.0.0.1]", "", false},
	{"exa mple.com", "", false},
	{"example.com/admin", "", false},
	{"example.com\\admin", "", false},
	{"exam%70le.com", "", false},
	{"caf\u00e9.example", "", false},
	{"*.example.com", "", false},
	{"example.com,evil.test", "", false},
	{"127.1", "", false},
	{"0x7f.0.0.1", "", false},
	{"2130706433", "", false},
	{"010.0.0.1", "", false},
	{"1.2.3.4.5", "", false},
	{strings.Repeat("a", 64) + ".com", "", false},
}

func TestParseHost(t *testing.T) {
	t.Parallel()
	for _, tc := range hostCases {
		got, err := ParseHost(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseHost(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseHostCanonicalDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseHost("api.example.com:8443") }); n != 0 {
		t.Errorf("ParseHost on a canonical host allocates %v times, want 0", n)
	}
}

var splitCases = []struct {
	in                     string
	authority, path, query string
	wantErr                bool
}{
	{in: "/a/b?x=1", path: "/a/b", query: "x=1"},
	{in: "/", path: "/"},
	{in: "/a?", path: "/a"},
	{in: "/a?b?c", path: "/a", query: "b?c"},
	{in: "http://app.test/admin?x", authority: "app.test", path: "/admin", query: "x"},
	{in: "HTTPS://App.Test:8443/a", authority: "App.Test:8443", path: "/a"},
	{in: "http://app.test", wantErr: true},
	{in: "http://app.test?x=/a", wantErr: true},
	{in: "http:///admin", wantErr: true},
	{in: "ftp://app.test/admin", wantErr: true},
	{in: "//app.test/admin", authority: "", path: "//app.test/admin"}, // CleanPath refuses it
	{in: "*", wantErr: true},
	{in: "app.test:443", wantErr: true},
	{in: "", wantErr: true},
	{in: "/a#b", wantErr: true},
	{in: "/a?b#c", wantErr: true},
	{in: "http://app.test/a#/../admin", wantErr: true},
}

func TestSplitTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range splitCases {
		a, p, q, err := SplitTarget(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("SplitTarget(%q) = %q %q %q, want an error", tc.in, a, p, q)
			}
			continue
		}
		if err != nil || a != tc.authority || p != tc.path || q != tc.query {
			t.Errorf("SplitTarget(%q) = %q %q %q %v, want %q %q %q", tc.in, a, p, q, err, tc.authority, tc.path, tc.query)
		}
	}
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		method, host, path, q string
		want                  error
	}{
		{"ok", "GET", "Example.COM.:8443", "/%61dmin", "x=1", nil},
		{"lower-case method", "get", "example.com", "/admin", "", ErrMethod},
		{"connect", "CONNECT", "example.com", "/admin", "", ErrMethod},
		{"bad host", "GET", "a@b", "/admin", "", ErrHost},
		{"fragment in query", "GET", "example.com", "/admin", "x#y", ErrTarget},
		{"bad path", "GET", "example.com", "/admin.", "", ErrAmbiguousPath},
		{"method override", "POST", "example.com", "/admin", "_method=DELETE", ErrMethodOverride},
		{"encoded method override", "POST", "example.com", "/admin", "a=1&%5Fmethod=DELETE", ErrMethodOverride},
		{"php method override", "POST", "example.com", "/admin", ".method=DELETE", ErrMethodOverride},
	}
	for _, tc := range tests {
		got, err := ParseTarget(tc.method, tc.host, tc.path, tc.q)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: ParseTarget error %v, want %v", tc.name, err, tc.want)
		}
		if tc.want == nil && (got.Host != "example.com" || got.Path.Match != "/admin" || got.RawQuery != tc.q || got.Method != "GET") {
			t.Errorf("%s: ParseTarget = %+v", tc.name, got)
		}
	}
}

var accessTokenCases = []struct {
	q    string
	want bool
}{
	{"access_token=x", true},
	{"a=1&access_token=x", true},
	{"access_token", true},
	{"access_token=", true},
	{"%61ccess_token=x", true},
	{"access%5Ftoken=x", true},
	{"access%5ftoken=x", true},
	{"%61%63%63%65%73%73%5f%74%6f%6b%65%6e=x", true},
	{"%2561ccess_token=x", true},
	{"a=1;access_token=x", true},
	{"ACCESS_TOKEN=x", true},
	{"Access_Token=x", true},
	{"access.token=x", true},
	{"access+token=x", true},
	{"access%20token=x", true},
	{"access_token[]=x", true},
	{"access_token[a]=x", true},
	{"access[token=x", true},
	{"+access_token=x", true},
	{"%20access_token=x", true},
	{"access_token%00junk=x", true},
	{"acce\u017f\u017f_token=x", true},
	{"", false},
	{"a=access_token", false},
	{"x=1&y=2", false},
	{"access_tokens=x", false},
	{"my_access_token=x", false},
	{"access_token_hint=x", false},
	{"token=x", false},
	{"accesstoken=x", false},
	{"access-token=x", false},
	{"access_toke%6=x", false},
}

func TestHasMethodOverride(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]bool{
		"_method=DELETE": true, "%5Fmethod=PUT": true, "_METHOD=put": true, "x=1;_method=PUT": true, "_method[]=PUT": true,
		" method=PUT": false, "method=PUT": false, "_methods=PUT": false, "a=_method": false, "": false,
	} {
		if got := HasMethodOverride(q); got != want {
			t.Errorf("HasMethodOverride(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestHasAccessToken(t *testing.T) {
	t.Parallel()
	for _, tc := range accessTokenCases {
		if got := HasAccessToken(tc.q); got != tc.want {
			t.Errorf("HasAccessToken(%q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestHasAccessTokenOrdinaryQueryDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		_ = HasAccessToken("page=2&sort=name&filter=open&category_name=books&subcategory=fiction%20novels")
		_ = HasMethodOverride("page=2&sort=name&filter=open&category_name=books&subcategory=fiction%20novels")
	}); n != 0 {
		t.Errorf("HasAccessToken allocates %v times, want 0", n)
	}
}

func TestCompileValidatesHostsAndMethods(t *testing.T) {
	t.Parallel()
	_, _, err := Compile([]config.Route{
		{Path: "/a", Host: "user@example.com"},
		{Path: "/b", Methods: []string{"GET", "post"}},
		{Path: "/c", Methods: []string{"CONNECT"}},
		{Path: "/d", Host: "a:1:2"},
	})
	if err == nil {
		t.Fatal("Compile accepted bad hosts and methods")
	}
	for _, want := range []string{`routes[0].host: "user@example.com"`, `routes[1].methods[1]: "post"`, `routes[2].methods[0]: "CONNECT"`, `routes[3].host: "a:1:2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	tbl, _, err := Compile([]config.Route{{Path: "/a", Host: "Example.COM.:8443"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := tbl.Match("GET", "example.com", "/a"); r == nil {
		t.Error("route host Example.COM.:8443 does not match example.com")
	}
}

// FuzzParseHost: an accepted host is canonical (parsing it again gives
// itself), holds only name characters, and names an address when numeric.
func FuzzParseHost(f *testing.F) {
	for _, tc := range hostCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := ParseHost(in)
		if err != nil || h == "" {
			return
		}
		again, err := ParseHost(h)
		if err != nil || again != h {
			t.Fatalf("ParseHost(%q) = %q, not canonical: again %q, %v", in, h, again, err)
		}
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			if a.Zone() != "" {
				t.Fatalf("ParseHost(%q) kept a zone: %q", in, h)
			}
			return
		}
		if strings.ContainsAny(h, "@:/\\%[] ") || strings.ToLower(h) != h || strings.HasSuffix(h, ".") {
			t.Fatalf("ParseHost(%q) = %q", in, h)
		}
	})
}

// FuzzParseMethod: an accepted method is an upper-case token that is not
// CONNECT or PRI.
func FuzzParseMethod(f *testing.F) {
	for _, tc := range methodCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, m string) {
		if ParseMethod(m) != nil {
			return
		}
		if strings.ToUpper(m) != m || m == "CONNECT" || m == "PRI" || m == "" {
			t.Fatalf("ParseMethod accepted %q", m)
		}
		for i := 0; i < len(m); i++ {
			if m[i] <= ' ' || m[i] >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", m[i]) >= 0 {
				t.Fatalf("ParseMethod accepted %q with %q", m, m[i])
			}
		}
	})
}

// FuzzHasAccessToken: a query that carries access_token under any spelling
// a lenient parser decodes is reported, and a query with none is not
// (checked against a parser written independently).
func FuzzHasAccessToken(f *testing.F) {
	for _, tc := range accessTokenCases {
		f.Add(tc.q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := HasAccessToken(q)
		for _, pair := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
			key, _, _ := strings.Cut(pair, "=")
			if strings.EqualFold(key, accessToken) && !got {
				t.Fatalf("HasAccessToken(%q) missed %q", q, key)
			}
		}
		if got && !strings.ContainsAny(strings.ToLower(q), "a%") {
			t.Fatalf("HasAccessToken(%q) reported a token in a query that cannot spell one", q)
		}
	})
}

// FuzzSplitTarget: whatever is accepted reassembles to the input, and a
// fragment never passes.
func FuzzSplitTarget(f *testing.F) {
	for _, tc := range splitCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, p, q, err := SplitTarget(in)
		if err != nil {
			return
		}
		if strings.Contains(in, "#") {
			t.Fatalf("SplitTarget(%q) accepted a fragment", in)
		}
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("SplitTarget(%q) path %q", in, p)
		}
		rebuilt := p
		if strings.Contains(in, "?") {
			rebuilt += "?" + q
		}
		if a != "" || !strings.HasPrefix(in, "/") {
			if !strings.HasSuffix(in, a+rebuilt) {
				t.Fatalf("SplitTarget(%q) = %q %q %q does not reassemble", in, a, p, q)
			}
		} else if rebuilt != in {
			t.Fatalf("SplitTarget(%q) = %q %q does not reassemble", in, p, q)
		}
	})
}

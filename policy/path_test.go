package policy

import (
	"net/url"
	"strings"
	"testing"
)

var cleanPathCases = []struct {
	name      string
	in        string
	wantMatch string
	wantRaw   string
	wantErr   bool
}{
	{name: "plain", in: "/orders/1", wantMatch: "/orders/1", wantRaw: "/orders/1"},
	{name: "root", in: "/", wantMatch: "/", wantRaw: "/"},
	{name: "trailing slash", in: "/orders/", wantMatch: "/orders/", wantRaw: "/orders/"},
	{name: "encoded unreserved decoded", in: "/%61dmin", wantMatch: "/admin", wantRaw: "/admin"},
	{name: "lower-case hex", in: "/a%7eb", wantMatch: "/a~b", wantRaw: "/a~b"},
	{name: "encoded space kept encoded", in: "/a%20b", wantMatch: "/a b", wantRaw: "/a%20b"},
	{name: "encoded utf8 kept", in: "/caf%c3%a9", wantMatch: "/caf\xc3\xa9", wantRaw: "/caf%C3%A9"},
	{name: "dot-dot", in: "/public/../admin", wantErr: true},
	{name: "dot", in: "/public/./admin", wantErr: true},
	{name: "trailing dot-dot", in: "/public/..", wantErr: true},
	{name: "encoded dot-dot", in: "/public/%2e%2e/admin", wantErr: true},
	{name: "mixed encoded dot-dot", in: "/public/.%2E/admin", wantErr: true},
	{name: "double slash", in: "//admin", wantErr: true},
	{name: "inner double slash", in: "/public//admin", wantErr: true},
	{name: "encoded slash", in: "/public%2fadmin", wantErr: true},
	{name: "encoded slash upper", in: "/public%2Fadmin", wantErr: true},
	{name: "encoded backslash", in: "/public%5cadmin", wantErr: true},
	{name: "backslash", in: "/public\\admin", wantErr: true},
	{name: "semicolon", in: "/admin;jsessionid=1", wantErr: true},
	{name: "encoded semicolon", in: "/admin%3bx", wantErr: true},
	{name: "double encoding", in: "/%252e%252e/admin", wantErr: true},
	{name: "NUL", in: "/admin%00", wantErr: true},
	{name: "raw control", in: "/ad\x01min", wantErr: true},
	{name: "fragment", in: "/admin#x", wantErr: true},
	{name: "encoded fragment", in: "/admin%23x", wantErr: true},
	{name: "bad escape", in: "/a%zz", wantErr: true},
	{name: "truncated escape", in: "/a%2", wantErr: true},
	{name: "no leading slash", in: "admin", wantErr: true},
	{name: "empty", in: "", wantErr: true},
	{name: "raw non-ascii", in: "/caf\xc3\xa9", wantErr: true},
	{name: "space", in: "/a b", wantErr: true},
	{name: "dots inside a name are fine", in: "/a..b/.c/d.", wantMatch: "/a..b/.c/d.", wantRaw: "/a..b/.c/d."},
}

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for _, tc := range cleanPathCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := CleanPath(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("CleanPath(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("CleanPath(%q) error %v, want %q", tc.in, err, tc.wantMatch)
			}
			if got.Match != tc.wantMatch || got.Raw != tc.wantRaw {
				t.Errorf("CleanPath(%q) = {%q %q}, want {%q %q}", tc.in, got.Match, got.Raw, tc.wantMatch, tc.wantRaw)
			}
		})
	}
}

func TestCleanPathFastPathDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() { _, _ = CleanPath("/orders/123/items") })
	if allocs != 0 {
		t.Errorf("CleanPath on a plain path allocates %v times, want 0", allocs)
	}
}

// FuzzCleanPath checks the firewall's promises on any input: an accepted
// path has no dot segment, no empty segment, and its forwarded form decodes
// to exactly the matched form.
func FuzzCleanPath(f *testing.F) {
	for _, tc := range cleanPathCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := CleanPath(in)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p.Match, "/") || strings.Contains(p.Match, "//") || hasDotSegment(p.Match) {
			t.Fatalf("CleanPath(%q) accepted ambiguous %q", in, p.Match)
		}
		if strings.ContainsAny(p.Match, "\\;#%\x00") {
			t.Fatalf("CleanPath(%q) match %q holds a refused character", in, p.Match)
		}
		dec, err := url.PathUnescape(p.Raw)
		if err != nil || dec != p.Match {
			t.Fatalf("CleanPath(%q): raw %q decodes to %q (%v), want %q", in, p.Raw, dec, err, p.Match)
		}
		again, err := CleanPath(p.Raw)
		if err != nil || again.Match != p.Match {
			t.Fatalf("CleanPath(%q) not stable: raw %q gives %+v, %v", in, p.Raw, again, err)
		}
	})
}

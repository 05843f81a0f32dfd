package policy

import (
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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
	{name: "dots inside a name are fine", in: "/a..b/.c/d.e", wantMatch: "/a..b/.c/d.e", wantRaw: "/a..b/.c/d.e"},
	{name: "dotfile", in: "/.well-known/x", wantMatch: "/.well-known/x", wantRaw: "/.well-known/x"},
	{name: "inner encoded space", in: "/a%20b/c", wantMatch: "/a b/c", wantRaw: "/a%20b/c"},
	{name: "encoded question mark", in: "/a%3fb", wantMatch: "/a?b", wantRaw: "/a%3Fb"},
	{name: "encoded unreserved utf8 letter", in: "/%C3%BCber", wantMatch: "/\u00fcber", wantRaw: "/%C3%BCber"},
	{name: "cjk", in: "/%E6%97%A5%E6%9C%AC", wantMatch: "/日本", wantRaw: "/%E6%97%A5%E6%9C%AC"},
	{name: "emoji", in: "/%F0%9F%98%80", wantMatch: "/\U0001F600", wantRaw: "/%F0%9F%98%80"},

	// Segments that Windows, IIS and trimming routers read as another name.
	{name: "trailing dot", in: "/admin.", wantErr: true},
	{name: "trailing dots", in: "/admin../x", wantErr: true},
	{name: "three dots", in: "/.../admin", wantErr: true},
	{name: "encoded trailing dot", in: "/admin%2e", wantErr: true},
	{name: "encoded trailing dot upper", in: "/admin%2E/x", wantErr: true},
	{name: "trailing encoded space", in: "/admin%20", wantErr: true},
	{name: "leading encoded space", in: "/%20admin", wantErr: true},
	{name: "space then dot", in: "/admin%20.", wantErr: true},
	{name: "dot then space", in: "/admin.%20", wantErr: true},
	{name: "encoded tab", in: "/admin%09", wantErr: true},
	{name: "encoded newline", in: "/admin%0a", wantErr: true},
	{name: "encoded DEL", in: "/admin%7f", wantErr: true},

	// Percent-decoding that is not valid UTF-8.
	{name: "overlong dot 2 bytes", in: "/%c0%ae%c0%ae/admin", wantErr: true},
	{name: "overlong dot 3 bytes", in: "/%e0%80%ae/admin", wantErr: true},
	{name: "overlong slash", in: "/public%c0%afadmin", wantErr: true},
	{name: "overlong slash 4 bytes", in: "/public%f0%80%80%afadmin", wantErr: true},
	{name: "surrogate", in: "/a%ed%a0%80", wantErr: true},
	{name: "truncated sequence", in: "/caf%c3", wantErr: true},
	{name: "lone continuation", in: "/a%80b", wantErr: true},
	{name: "beyond U+10FFFF", in: "/a%f4%90%80%80", wantErr: true},
	{name: "latin-1 byte", in: "/caf%e9", wantErr: true},

	// Non-ASCII whitespace and ignorables.
	{name: "no-break space", in: "/admin%c2%a0", wantErr: true},
	{name: "no-break space inside", in: "/ad%c2%a0min", wantErr: true},
	{name: "next line", in: "/admin%c2%85", wantErr: true},
	{name: "C1 control", in: "/a%c2%80", wantErr: true},
	{name: "ogham space", in: "/a%e1%9a%80", wantErr: true},
	{name: "mongolian vowel separator", in: "/a%e1%a0%8e", wantErr: true},
	{name: "en quad", in: "/a%e2%80%80", wantErr: true},
	{name: "hair space", in: "/a%e2%80%8a", wantErr: true},
	{name: "zero width space", in: "/admin%e2%80%8b", wantErr: true},
	{name: "line separator", in: "/a%e2%80%a8", wantErr: true},
	{name: "paragraph separator", in: "/a%e2%80%a9", wantErr: true},
	{name: "narrow no-break space", in: "/a%e2%80%af", wantErr: true},
	{name: "ideographic space", in: "/a%e3%80%80", wantErr: true},
	{name: "byte order mark", in: "/%ef%bb%bfadmin", wantErr: true},
	{name: "soft hyphen", in: "/ad%c2%admin", wantErr: true},
	{name: "right-to-left override", in: "/a%e2%80%aeb", wantErr: true},
	{name: "tag character", in: "/a%f3%a0%80%81", wantErr: true},
	{name: "variation selector", in: "/a%ef%b8%8f", wantErr: true},

	// Compatibility forms that NFKC or best-fit conversion fold into ASCII.
	{name: "fullwidth full stop", in: "/%ef%bc%8e%ef%bc%8e/admin", wantErr: true},
	{name: "fullwidth solidus", in: "/public%ef%bc%8fadmin", wantErr: true},
	{name: "fullwidth reverse solidus", in: "/public%ef%bc%bcadmin", wantErr: true},
	{name: "fullwidth letters", in: "/%ef%bd%81dmin", wantErr: true},
	{name: "division slash", in: "/public%e2%88%95admin", wantErr: true},
	{name: "fraction slash", in: "/public%e2%81%84admin", wantErr: true},
	{name: "set minus", in: "/public%e2%88%96admin", wantErr: true},
	{name: "small full stop", in: "/%ef%b9%92%ef%b9%92/admin", wantErr: true},
	{name: "one dot leader", in: "/%e2%80%a4%e2%80%a4/admin", wantErr: true},
	{name: "two dot leader", in: "/%e2%80%a5/admin", wantErr: true},
	{name: "greek question mark", in: "/admin%cd%be", wantErr: true},
	{name: "yen sign", in: "/public%c2%a5admin", wantErr: true},
	{name: "kelvin sign", in: "/%e2%84%aaey", wantErr: true},
	{name: "long s", in: "/%c5%bfecret", wantErr: true},
	{name: "ligature", in: "/%ef%ac%81le", wantErr: true},
	{name: "mathematical bold a", in: "/%f0%9d%90%9admin", wantErr: true},
	{name: "circled digit", in: "/v%e2%91%a0", wantErr: true},
	{name: "digit full stop", in: "/v%e2%92%88", wantErr: true},
	{name: "superscript two", in: "/v%c2%b2", wantErr: true},
	{name: "fullwidth percent", in: "/a%ef%bc%85%32%65", wantErr: true},
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
		// Written independently of badSegment and badUnicode.
		if !utf8.ValidString(p.Match) {
			t.Fatalf("CleanPath(%q) accepted invalid UTF-8 %q", in, p.Match)
		}
		for _, seg := range strings.Split(p.Match, "/") {
			if strings.HasSuffix(seg, ".") || strings.TrimSpace(seg) != seg {
				t.Fatalf("CleanPath(%q) accepted segment %q that Windows reads as %q", in, seg, strings.TrimRight(strings.TrimSpace(seg), ". "))
			}
		}
		for _, r := range p.Match {
			if (r >= 0x80 && unicode.IsSpace(r)) || unicode.Is(unicode.Cf, r) || (r >= 0xFF01 && r <= 0xFF5E) {
				t.Fatalf("CleanPath(%q) accepted %U in %q", in, r, p.Match)
			}
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

// hasDotSegment is the fuzz oracle for dot segments: it reports a "." or ".." segment (RFC 3986 §5.2.4).
func hasDotSegment(p string) bool {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			seg := p[start:i]
			if seg == "." || seg == ".." {
				return true
			}
			start = i + 1
		}
	}
	return false
}

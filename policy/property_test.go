package policy

import (
	"net/url"
	"strings"
	"testing"
	"unicode"
)

// upstreamViews model how servers behind Portcullis read the raw path they
// are forwarded, each written independently of CleanPath.
var upstreamViews = []struct {
	name string
	read func(raw string) (string, bool)
}{
	// Go's net/http: percent-decoding only.
	{"go", func(raw string) (string, bool) {
		p, err := url.PathUnescape(raw)
		return p, err == nil
	}},
	// nginx ($uri): decoding, then merged slashes and resolved dot segments.
	{"nginx", func(raw string) (string, bool) {
		p, err := url.PathUnescape(raw)
		if err != nil {
			return "", false
		}
		return resolveDots(mergeSlashes(p)), true
	}},
	// IIS on Windows: "\" is "/", trailing dots and spaces of a segment are
	// dropped, then dot segments resolved.
	{"windows", func(raw string) (string, bool) {
		p, err := url.PathUnescape(raw)
		if err != nil {
			return "", false
		}
		segs := strings.Split(strings.ReplaceAll(p, `\`, "/"), "/")
		for i, s := range segs {
			if s != "." && s != ".." {
				segs[i] = strings.TrimRight(s, ". ")
			}
		}
		return resolveDots(mergeSlashes(strings.Join(segs, "/"))), true
	}},
	// A router that trims Unicode whitespace around each segment.
	{"trimming", func(raw string) (string, bool) {
		p, err := url.PathUnescape(raw)
		if err != nil {
			return "", false
		}
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i] = strings.TrimFunc(s, unicode.IsSpace)
		}
		return strings.Join(segs, "/"), true
	}},
}

func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// resolveDots is RFC 3986 §5.2.4 remove_dot_segments on an absolute path.
func resolveDots(p string) string {
	var out []string
	segs := strings.Split(p, "/")[1:]
	for i, s := range segs {
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if i == len(segs)-1 {
			out = append(out, "") // a final dot segment leaves a trailing slash
		}
	}
	return "/" + strings.Join(out, "/")
}

// FuzzUpstreamRoutesAlike is the firewall's property: whatever it accepts,
// each modelled upstream reads the forwarded raw path as a path that the
// routing table sends to the same route Portcullis decided on.
func FuzzUpstreamRoutesAlike(f *testing.F) {
	for _, tc := range cleanPathCases {
		f.Add("GET", tc.in)
	}
	for _, tc := range matchCases {
		f.Add(tc.method, tc.path)
	}
	f.Add("GET", "/admin%20")
	f.Add("POST", "/orders%2e/1")
	f.Add("GET", "/public%c0%ae%c0%ae/admin")
	tbl := testTable(f)
	f.Fuzz(func(t *testing.T, method, raw string) {
		p, err := CleanPath(raw)
		if err != nil {
			return
		}
		decided := tbl.Match(method, "admin.example.com", p.Match)
		for _, v := range upstreamViews {
			seen, ok := v.read(p.Raw)
			if !ok {
				t.Fatalf("%s cannot parse the forwarded path %q (from %q)", v.name, p.Raw, raw)
			}
			if got := tbl.Match(method, "admin.example.com", seen); got != decided {
				t.Fatalf("%q: Portcullis decided on %q (route %v), %s reads %q (route %v)", raw, p.Match, name(decided), v.name, seen, name(got))
			}
		}
	})
}

func name(r *Route) string {
	if r == nil {
		return "none"
	}
	return r.Name
}

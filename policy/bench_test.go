package policy

import "testing"

func BenchmarkMatch(b *testing.B) {
	tbl := testTable(b)
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Match("GET", "x", "/api/v1/things") == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkCleanPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = CleanPath("/orders/123/items")
	}
}

func BenchmarkCleanPathEncoded(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = CleanPath("/orders/caf%C3%A9/%61dmin")
	}
}

// BenchmarkParseTarget is the whole request-target check every front door
// runs before matching: method, host, path and query.
func BenchmarkParseTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseTarget("GET", "api.example.com:8443", "/orders/123/items", "page=2&sort=name")
	}
}

func BenchmarkMatchHostRoute(b *testing.B) {
	tbl := testTable(b)
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Match("GET", "Admin.Example.com:8443", "/admin/users") == nil {
			b.Fatal("no match")
		}
	}
}

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

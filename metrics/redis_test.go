package metrics

import "testing"

// TestRedisUpOnlyWhenExported: without Redis there is no redis_up at all,
// so "redis_up == 0" alerts cannot fire on a Redis-less install.
func TestRedisUpOnlyWhenExported(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		export bool
	}{{"without Redis", false}, {"with Redis", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := New()
			if tt.export {
				m.ExportRedisUp()
			}
			m.RedisUp.Set(0) // the limiter sets it either way
			families, err := m.Registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, f := range families {
				got = got || f.GetName() == "redis_up"
			}
			if got != tt.export {
				t.Errorf("redis_up gathered = %v, want %v", got, tt.export)
			}
		})
	}
}

package metrics

// ExportRedisUp adds redis_up to the registry. Call it only when Redis is
// configured: a Redis-less install has no Redis to be down, and a redis_up
// of 0 there would fire every "Redis down" alert forever. Call it once.
func (m *Metrics) ExportRedisUp() {
	m.Registry.MustRegister(m.RedisUp)
}

package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSCertificateExpiry returns tls_certificate_expiry_timestamp_seconds,
// registering it on first use: it is exported only when TLS is configured.
// Calling it again returns the same gauge.
func (m *Metrics) TLSCertificateExpiry() prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tls_certificate_expiry_timestamp_seconds",
		Help: "NotAfter of the serving TLS leaf certificate, as a Unix timestamp.",
	})
	if err := m.Registry.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(prometheus.Gauge)
		}
		panic(err) // a programming error: the name is fixed and valid
	}
	return g
}

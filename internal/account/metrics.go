package account

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the collectors of opening upstream sessions.
type Metrics struct {
	upstreamAuth     *prometheus.CounterVec // result: success, failure
	upstreamAuthTime prometheus.Histogram
}

// NewMetrics registers the collectors with reg; nil leaves them
// unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		upstreamAuth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upstream_auth_total", Help: "Upstream logins (one per session opened) by result (success, failure).",
		}, []string{"result"}),
		upstreamAuthTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "upstream_auth_duration_seconds", Help: "Time to open an upstream session: connect, TLS, EHLO, token, AUTH.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.upstreamAuth, m.upstreamAuthTime)
	}
	return m
}

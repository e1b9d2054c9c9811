package admin

import "github.com/prometheus/client_golang/prometheus"

// metrics are the admin API's own collectors.
type metrics struct {
	// authFailures is admin_auth_failures_total{result}.
	authFailures *prometheus.CounterVec
}

// Values of admin_auth_failures_total's result label.
const (
	resultRefused     = "refused"      // 401: missing or wrong bearer token
	resultRateLimited = "rate_limited" // 429: the address is held back, its token not checked
)

// newMetrics makes the collectors and registers them with reg, unless it
// is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "admin_auth_failures_total",
			Help: "Admin API requests refused for their bearer token, by result: refused (401, missing or wrong), " +
				"rate_limited (429, too many failures from the address; the token is not checked).",
		}, []string{"result"}),
	}
	m.authFailures.WithLabelValues(resultRefused)
	m.authFailures.WithLabelValues(resultRateLimited)
	if reg != nil {
		reg.MustRegister(m.authFailures)
	}
	return m
}

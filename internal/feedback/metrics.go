package feedback

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the collector's counters, by account (opted-in accounts
// only, so the label set is bounded by the configuration).
type Metrics struct {
	reports  *prometheus.CounterVec // account
	bounced  *prometheus.CounterVec // account, class
	failures *prometheus.CounterVec // account
	rates    *prometheus.GaugeVec   // account
}

// NewMetrics registers the collectors with reg; nil leaves them
// unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedback_reports_total", Help: "Delivery status notifications read from the account's mailbox.",
		}, []string{"account"}),
		bounced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedback_bounced_recipients_total", Help: "Failed recipients in the reports, by class (hard, soft, policy).",
		}, []string{"account", "class"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedback_mailbox_read_failures_total", Help: "Mailbox reads that failed (token refused, IMAP off, scope missing, network).",
		}, []string{"account"}),
		rates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedback_bounce_rate", Help: "Hard bounces ÷ recipients accepted over the last 24 h.",
		}, []string{"account"}),
	}
	if reg != nil {
		reg.MustRegister(m.reports, m.bounced, m.failures, m.rates)
	}
	return m
}

func (m *Metrics) report(account string, bs []Bounce) {
	m.reports.WithLabelValues(account).Inc()
	for _, b := range bs {
		m.bounced.WithLabelValues(account, string(b.Class)).Inc()
	}
}

func (m *Metrics) readFailed(account string) { m.failures.WithLabelValues(account).Inc() }

func (m *Metrics) rate(account string, r float64) { m.rates.WithLabelValues(account).Set(r) }

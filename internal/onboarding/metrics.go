package onboarding

import "github.com/prometheus/client_golang/prometheus"

// collector reports the invitations by state at each scrape.
type collector struct {
	m    *Manager
	desc *prometheus.Desc
}

// Collector is the Manager's metric, invitations{state}, for the service's
// registry.
func (m *Manager) Collector() prometheus.Collector {
	return collector{m: m, desc: prometheus.NewDesc("invitations",
		"Onboarding invitations by state (pending, opened, consented, failed, expired).", []string{"state"}, nil)}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counts := c.m.Counts()
	for _, s := range States() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

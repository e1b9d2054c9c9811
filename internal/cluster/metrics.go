package cluster

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the cluster mode's collectors.
type Metrics struct {
	up         prometheus.Gauge
	live       prometheus.Gauge
	slotsHeld  prometheus.Gauge
	slotsLost  prometheus.Counter
	fallbacks  *prometheus.CounterVec // what: admit, session
	reconciled prometheus.Counter
}

// NewMetrics registers the collectors with reg; nil leaves them
// unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cluster_redis_up", Help: "1 while Redis answers, 0 while this proxy runs on local shares.",
		}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cluster_proxies_live", Help: "Proxies whose heartbeat Redis held at the last beat (this one included).",
		}),
		slotsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cluster_session_slots_held", Help: "Session slot leases this proxy holds in Redis now (one per open upstream session).",
		}),
		slotsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cluster_session_slots_lost_total", Help: "Sessions closed because their slot lease could not be renewed in time.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_local_decisions_total", Help: "Decisions taken on the local share because Redis did not answer, by what (admit, session).",
		}, []string{"what"}),
		reconciled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cluster_reconciled_messages_total", Help: "Messages accepted while Redis was unreachable and counted in Redis after it came back.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.live, m.slotsHeld, m.slotsLost, m.fallbacks, m.reconciled)
	}
	return m
}

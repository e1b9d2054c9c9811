package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus collectors. Names the old tool
// exported keep their spelling (COMPAT.md); labels stay bounded, and the
// per-account series exist only when asked for.
type Metrics struct {
	authAttempts    *prometheus.CounterVec // result: success, failure, temporary
	authDuration    prometheus.Histogram
	messages        *prometheus.CounterVec // result: sent, deferred, rejected, ambiguous, aborted
	messageDuration prometheus.Histogram
	messageSize     prometheus.Histogram
	relayedBytes    prometheus.Counter
	concurrent      prometheus.Gauge
	limitExceeded   prometheus.Counter
	upstreamReplies *prometheus.CounterVec // stage: mail, rcpt, data, end; class: 2xx, 3xx, 4xx, 5xx
	acquireWait     prometheus.Histogram
	errors          *prometheus.CounterVec // error_type
	retried         prometheus.Counter
	budgetRefusals  *prometheus.CounterVec // reason
	cooldowns       *prometheus.CounterVec // kind
	perAccount      *prometheus.CounterVec // account, result; nil unless enabled
}

// NewMetrics registers the relay's collectors with reg. perAccount adds
// messages_by_account_total{account,result}, one series per account: only
// for installations whose Prometheus can take that cardinality.
func NewMetrics(reg prometheus.Registerer, perAccount bool) *Metrics {
	fast := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_attempts_total", Help: "Client AUTH attempts by result (success, failure, temporary).",
		}, []string{"result"}),
		authDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "auth_duration_seconds", Help: "Time to check a client AUTH, failure delay included.", Buckets: fast,
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messages_total", Help: "Messages by outcome: sent (upstream 250), deferred (4xx), rejected (5xx), ambiguous (reply lost after the dot), aborted (no DATA).",
		}, []string{"result"}),
		messageDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "messages_duration_seconds", Help: "Time from MAIL to the final reply.", Buckets: fast,
		}),
		messageSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "message_size_bytes", Help: "Size of relayed message bodies.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
		}),
		relayedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relayed_bytes_total", Help: "Message body bytes handed upstream.",
		}),
		concurrent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concurrent_messages", Help: "Transactions in flight.",
		}),
		limitExceeded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concurrent_limit_exceeded", Help: "MAIL commands refused because the account was at max_concurrent_messages.",
		}),
		upstreamReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upstream_replies_total", Help: "Upstream replies by stage (mail, rcpt, data, end) and class (2xx, 3xx, 4xx, 5xx).",
		}, []string{"stage", "class"}),
		acquireWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "upstream_session_acquire_seconds", Help: "Wait for an upstream session at MAIL, dialing included.", Buckets: fast,
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "errors_total", Help: "Failures by error_type: token, token_final, busy, concurrency_refused, rate_refused, source_ip, upstream_auth, connect, timeout, upstream_lost.",
		}, []string{"error_type"}),
		budgetRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "budget_refusals_total", Help: "MAIL/RCPT refused for a budget, by reason: per-minute message budget, hourly message budget, daily message budget, daily recipient budget, recipients per message, cooling_down.",
		}, []string{"reason"}),
		cooldowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "account_cooldowns_total", Help: "Cool-downs started from provider replies, by kind: daily quota exhausted, rate limited, too many logins, too many concurrent sessions.",
		}, []string{"kind"}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "upstream_stale_session_retries_total", Help: "Transactions moved to a fresh session because a pooled one was dead before anything was sent.",
		}),
	}
	cs := []prometheus.Collector{m.authAttempts, m.authDuration, m.messages, m.messageDuration, m.messageSize,
		m.relayedBytes, m.concurrent, m.limitExceeded, m.upstreamReplies,
		m.acquireWait, m.errors, m.retried, m.budgetRefusals, m.cooldowns}
	if perAccount {
		m.perAccount = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messages_by_account_total", Help: "Messages by account and outcome (opt-in: one series per account).",
		}, []string{"account", "result"})
		cs = append(cs, m.perAccount)
	}
	if reg != nil {
		for _, c := range cs {
			reg.MustRegister(c)
		}
	}
	return m
}

func classOf(code int) string {
	switch code / 100 {
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	default:
		return "5xx"
	}
}

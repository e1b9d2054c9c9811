package service

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/relay"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// The service's metrics: the registry /metrics serves, the parts'
// collectors registered with it, and the collectors that read the
// accounts' and the listener's counters at scrape time.

// initMetrics makes the registry and the collectors shared by the parts.
func (s *Service) initMetrics() {
	s.metrics = prometheus.NewRegistry()
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.relayMetrics = relay.NewMetrics(s.metrics, s.opts.Admin.MetricsPerAccount)
	s.accountMetrics = account.NewMetrics(s.metrics)
	tm := newTokenMetrics(s.metrics)
	s.opts.HTTPClient = tm.wrap(s.opts.HTTPClient)
	s.metrics.MustRegister(&poolCollector{s: s}, &smtpCollector{s: s}, &warmupCollector{s: s},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smtp_connections_active", Help: "Open client connections.",
		}, func() float64 {
			if s.srv == nil {
				return 0
			}
			return float64(s.srv.Open())
		}))
}

// Metrics is the registry /metrics serves.
func (s *Service) Metrics() *prometheus.Registry { return s.metrics }

// poolCollector reports upstream sessions over every account's pool.
type poolCollector struct{ s *Service }

var (
	descSessionsOpen = prometheus.NewDesc("upstream_sessions_open", "Upstream sessions open (busy and idle), all accounts.", nil, nil)
	descSessionsBusy = prometheus.NewDesc("upstream_sessions_busy", "Upstream sessions leased to a transaction, all accounts.", nil, nil)
	descSessionsMade = prometheus.NewDesc("upstream_sessions_opened_total", "Upstream sessions opened (each one login) since start.", nil, nil)
	descAccounts     = prometheus.NewDesc("accounts", "Configured accounts by token state.", []string{"token_state"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessionsOpen
	ch <- descSessionsBusy
	ch <- descSessionsMade
	ch <- descAccounts
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.Reg == nil {
		return
	}
	var open, busy int64
	// Opened counts the sessions of replaced runtimes and removed
	// accounts too: a counter never falls.
	made := c.s.Reg.OpenedGone()
	states := map[string]int{}
	for _, a := range c.s.Reg.All() {
		st := a.SessionStats()
		open, busy, made = open+st.Open, busy+st.Busy, made+st.Opened
		states[c.s.TokenStatus(a).State]++
	}
	ch <- prometheus.MustNewConstMetric(descSessionsOpen, prometheus.GaugeValue, float64(open))
	ch <- prometheus.MustNewConstMetric(descSessionsBusy, prometheus.GaugeValue, float64(busy))
	ch <- prometheus.MustNewConstMetric(descSessionsMade, prometheus.CounterValue, float64(made))
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(descAccounts, prometheus.GaugeValue, float64(n), st)
	}
}

// smtpCollector reports the client side from the listener's counters.
type smtpCollector struct{ s *Service }

var (
	descConns    = prometheus.NewDesc("smtp_connections_total", "Client connections by result: accepted, refused_limit (global cap), refused_per_ip, refused_auth_failures (address over its AUTH failure limit), tls_failure, proxy_failure.", []string{"result"}, nil)
	descClosed   = prometheus.NewDesc("smtp_connections_closed_total", "Client connections closed by the proxy, by reason: timeout, too_many_errors, auth_timeout (no AUTH within client_auth_timeout), panic.", []string{"reason"}, nil)
	descCommands = prometheus.NewDesc("smtp_commands_total", "Client commands by command (EHLO, HELO, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT, STARTTLS, VRFY, OTHER).", []string{"command"}, nil)
	descAuthLim  = prometheus.NewDesc("smtp_auth_rate_limited_total", "AUTH attempts refused with 421 over the per-address or per-username failure limits.", nil, nil)
	descTLS      = prometheus.NewDesc("smtp_tls_total", "Client TLS sessions by mode: starttls, implicit.", []string{"mode"}, nil)
	descAuthBusy = prometheus.NewDesc("smtp_auth_deferred_total", "AUTH attempts answered 454 4.7.0: no password check slot within client_auth_queue_timeout.", nil, nil)
	descAuthWait = prometheus.NewDesc("smtp_auth_checks_waiting", "AUTH attempts waiting for a password check slot (max_concurrent_auth_checks).", nil, nil)
)

func (c *smtpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descClosed, descCommands, descAuthLim, descTLS, descAuthBusy, descAuthWait} {
		ch <- d
	}
}

func (c *smtpCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.srv == nil {
		return
	}
	st := c.s.srv.Stats()
	cnt := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	cnt(descConns, st.Accepted, "accepted")
	cnt(descConns, st.RefusedLimit, "refused_limit")
	cnt(descConns, st.RefusedPerIP, "refused_per_ip")
	cnt(descConns, st.RefusedAuthBlocked, "refused_auth_failures")
	cnt(descConns, st.TLSFailures, "tls_failure")
	cnt(descConns, st.ProxyFailures, "proxy_failure")
	cnt(descClosed, st.Timeouts, "timeout")
	cnt(descClosed, st.TooManyErrors, "too_many_errors")
	cnt(descClosed, st.AuthTimeouts, "auth_timeout")
	cnt(descClosed, st.Panics, "panic")
	for i, name := range smtpd.CommandNames {
		cnt(descCommands, st.Commands[i], name)
	}
	cnt(descAuthLim, st.AuthRefused)
	cnt(descAuthBusy, st.AuthBusy)
	ch <- prometheus.MustNewConstMetric(descAuthWait, prometheus.GaugeValue, float64(st.AuthWaiting))
	cnt(descTLS, st.StartTLS, "starttls")
	cnt(descTLS, st.ImplicitTLS, "implicit")
}

// tokenMetrics observe every token endpoint request at the HTTP client.
type tokenMetrics struct {
	total    *prometheus.CounterVec
	duration prometheus.Histogram
}

func newTokenMetrics(reg prometheus.Registerer) *tokenMetrics {
	m := &tokenMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "token_refresh_total", Help: "Token endpoint requests by result: success (2xx), rejected (4xx), error (5xx, network).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "token_refresh_duration_seconds", Help: "Token endpoint request latency.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	reg.MustRegister(m.total, m.duration)
	return m
}

func (m *tokenMetrics) wrap(c *http.Client) *http.Client {
	cp := *c
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := base.RoundTrip(r)
		m.duration.Observe(time.Since(start).Seconds())
		result := "error"
		if err == nil {
			switch resp.StatusCode / 100 {
			case 2:
				result = "success"
			case 4:
				result = "rejected"
			}
		}
		m.total.WithLabelValues(result).Inc()
		return resp, err
	})
	return &cp
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

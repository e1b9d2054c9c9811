package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/relay"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// AdminOptions configure the admin API.
type AdminOptions struct {
	// Listen is the admin address; "" means no admin API. The command
	// line default is 127.0.0.1:9090 (loopback: COMPAT.md defect 3).
	Listen string
	// Token is the bearer token; empty refuses every /admin route.
	Token secret.String
	// Only runs the admin API without the SMTP listener (--admin-only).
	Only bool
	// MetricsPerAccount adds per-account series (cardinality: opt-in).
	MetricsPerAccount bool
	Version           string
}

// minAdminTokenChars is the shortest admin token the service accepts: the
// token lets its holder change every account, so it must not be
// guessable. openssl rand -hex 32 makes one of 64.
const minAdminTokenChars = 32

// check refuses a token short enough to guess. No token is allowed: the
// admin routes are then refused.
func (o AdminOptions) check() error {
	if o.Token.Empty() {
		return nil
	}
	if n := utf8.RuneCountInString(o.Token.Reveal()); n < minAdminTokenChars {
		return fmt.Errorf("admin token is %d characters; it must be at least %d: make one with "+
			"\"openssl rand -hex 32 > admin-token\" (mode 0600) and pass --admin-token-file admin-token", n, minAdminTokenChars)
	}
	return nil
}

// initMetrics makes the registry and the collectors shared by the parts.
func (s *Service) initMetrics() {
	s.metrics = prometheus.NewRegistry()
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.relayMetrics = relay.NewMetrics(s.metrics, s.opts.Admin.MetricsPerAccount)
	s.accountMetrics = account.NewMetrics(s.metrics)
	tm := newTokenMetrics(s.metrics)
	s.opts.HTTPClient = tm.wrap(s.opts.HTTPClient)
	s.metrics.MustRegister(&poolCollector{s: s}, &smtpCollector{s: s},
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

// listenAdmin opens the admin listener when one is configured.
func (s *Service) listenAdmin() error {
	o := s.opts.Admin
	if o.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", o.Listen, err)
	}
	s.adminLn = ln
	return nil
}

// startAdmin serves the admin API when configured; the returned function
// stops it and waits.
func (s *Service) startAdmin() (func(), error) {
	o := s.opts.Admin
	if o.Only {
		s.ready.Store(true)
	}
	if s.adminLn == nil {
		return func() {}, nil
	}
	if o.Token.Empty() {
		s.log.Warn("admin API has no token: /admin routes are refused; set --admin-token-file or XOAUTH2_PROXY_ADMIN_TOKEN")
	}
	ln := s.adminLn
	api := admin.New(s, admin.Options{Token: o.Token, Version: o.Version, Logger: s.log, Gatherer: s.metrics, Registerer: s.metrics})
	// conns counts the connections' serve goroutines, which Serve starts
	// and http.Server never waits for.
	var conns sync.WaitGroup
	hs := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "err", err)
		}
	}()
	s.log.Info("admin API listening", "addr", ln.Addr().String())
	return func() {
		// Last, after the SMTP side: /readyz says "not ready" meanwhile.
		ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			// Shutdown leaves open what is not idle at its deadline: a
			// request still running, or a connection that never sent
			// one, which net/http counts as busy for its first 5 seconds
			// (golang/go#22682) and which http.Transport dials as a spare
			// under concurrent requests. Close them, or their goroutines
			// outlive Run.
			s.log.Warn("admin API shutdown deadline passed; closing its connections", "err", err)
			_ = hs.Close()
		}
		<-done
		conns.Wait()
	}, nil
}

// adminShutdownTimeout bounds the admin API's graceful shutdown.
const adminShutdownTimeout = 5 * time.Second

// AdminAddr is the admin API's address, or nil without one.
func (s *Service) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// The admin.Backend implementation.

// Registry implements admin.Backend.
func (s *Service) Registry() *account.Registry { return s.Reg }

// Ready implements admin.Backend.
func (s *Service) Ready() bool { return s.ready.Load() }

// VerifyCredentials implements admin.Backend: one real token request,
// through a source backed by the token state file, so that a refresh token
// the provider rotates during verification is kept (COMPAT.md defect 6).
func (s *Service) VerifyCredentials(ctx context.Context, c *config.Account) error {
	src, err := s.tokenSource(c, s.Snapshot().Global, nil)
	if err != nil {
		return err
	}
	_, err = src.Token(ctx)
	return err
}

// TokenStatus implements admin.Backend.
func (s *Service) TokenStatus(a *account.Account) admin.TokenStatus {
	tk := a.Tokens()
	if tk == nil {
		return admin.TokenStatus{State: "none"}
	}
	return tokenStatus(tk)
}

// RefreshToken implements admin.Backend.
func (s *Service) RefreshToken(ctx context.Context, a *account.Account) error {
	tk := a.Tokens()
	if tk == nil {
		return errors.New("no token source (dry-run)")
	}
	// An operator's refresh also lifts a needs_consent hold (the
	// credential may have been fixed at the provider).
	tk.Reset()
	tok, _ := tk.Cached()
	_, err := tk.Refresh(ctx, tok.Access)
	return err
}

// Budget implements admin.Backend.
func (s *Service) Budget(a *account.Account) (quota.Status, bool) {
	if s.budgets == nil {
		return quota.Status{}, false
	}
	return s.budgets.Status(a.Cfg.ID, quota.LimitsFor(a.Cfg)), true
}

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
	descConns    = prometheus.NewDesc("smtp_connections_total", "Client connections by result: accepted, refused_limit (global cap), refused_per_ip, tls_failure, proxy_failure.", []string{"result"}, nil)
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

// tokenStatus maps a token source's state for the API.
func tokenStatus(src *token.Source) admin.TokenStatus {
	st := src.Status()
	return admin.TokenStatus{
		State: string(st.State), Expiry: st.Expiry, LastError: st.LastError,
		LastRefresh: st.LastRefresh, NextRefresh: st.NextRefresh, Failures: st.Failures,
		Final: st.State == token.StateNeedsConsent,
	}
}

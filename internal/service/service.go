package service

import (
	"github.com/prometheus/client_golang/prometheus"

	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/onboarding"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/relay"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
)

// Options configure a Service. Zero values take the defaults noted.
type Options struct {
	Load config.LoadOptions
	// Listen is the SMTP listener address; default "127.0.0.1:2525".
	Listen string
	// GlobalConcurrency overrides global_concurrency_limit when > 0.
	GlobalConcurrency int
	// DryRun accepts and discards messages without contacting any provider.
	DryRun bool
	// ShutdownTimeout bounds the graceful shutdown; default 30s.
	ShutdownTimeout time.Duration
	// AuthFailDelay is when a failed AUTH is answered, counted from its
	// credentials (smtpd.Config.AuthFailureDelay); default 1s, negative
	// for none.
	AuthFailDelay time.Duration
	Logger        *slog.Logger
	// UpstreamDial and HTTPClient replace the network for the benchmark
	// and tests (a latency relay, a loopback token endpoint).
	UpstreamDial func(ctx context.Context, network, addr string) (net.Conn, error)
	HTTPClient   *http.Client
	// UpstreamTLS, when set, is the base TLS config for upstream sessions
	// (tests); otherwise the system roots plus upstream_ca_file.
	UpstreamTLS *tls.Config
	// Admin configures the admin API (admin.go) and metrics (metrics.go).
	Admin AdminOptions
	// TLSPort is the implicit TLS listener's port (--tls-port), on the
	// host of Listen; 0 means tls_port from config.json, -1 any free port
	// (tests). listener.go.
	TLSPort int
	// BudgetFlushInterval is how often the budget counters are saved to
	// budgets.json while running: a crash loses at most this much of the
	// counts. Default 10s (budgets.go); they are saved at shutdown too.
	BudgetFlushInterval time.Duration
}

// Service is a running proxy.
type Service struct {
	opts  Options
	log   *slog.Logger
	Snap  *config.Snapshot
	Reg   *account.Registry
	Relay *relay.Relay // nil in dry-run
	srv   *smtpd.Server
	ln    net.Listener
	// Listener TLS (listener.go): the implicit TLS listener, nil without
	// one, and the certificate, nil without TLS.
	tlsLn   net.Listener
	keyPair *smtpd.KeyPair
	fb      *feedbackRuntime // feedback.go; nil in dry-run

	reloadMu     sync.Mutex   // one Reload at a time
	ready        atomic.Bool  // SMTP listener serving (readyz)
	adminLn      net.Listener // nil without an admin API
	metrics      *prometheus.Registry
	relayMetrics *relay.Metrics
	// accountMetrics are shared by every account's session opening.
	accountMetrics *account.Metrics
	budgets        *quota.Book  // nil in dry-run
	snapMu         sync.RWMutex // guards Snap after New
	// localIPs are this host's addresses, for validate_source_ip; nil
	// when validation is off.
	localIPs map[netip.Addr]bool
	// tokens is the token state file and background renewal (tokens.go).
	tokens tokenRuntime
	// shared is the Redis state of cluster mode (shared.go); nil when
	// global.cluster is off.
	shared *sharedState
	// tokenTransport is the token endpoints' transport when New made it
	// (no Options.HTTPClient); Run closes its idle connections last.
	tokenTransport *http.Transport
	// logs aggregates the warnings that the relay and the SMTP server
	// repeat under overload; Run's sweeper flushes it, and Run writes
	// what it still owes at the end.
	logs *logthrottle.Throttle
	// traffic is the messages per minute over the last hour, for the
	// console (console.go); Run's sweeper samples it.
	traffic traffic.Ring
	// onboard is the invitations' manager, nil without an onboarding
	// listener; onboardingAddr is that listener's address (onboarding.go).
	onboard        *onboarding.Manager
	onboardingAddr net.Addr
	// cluster is cluster mode's Redis client and budget (cluster.go).
	cluster clusterRuntime
}

// tokenHTTPClient is the one HTTP client every token source shares
// (global.http_pool). It never follows redirects: a 307 would re-post the
// refresh token elsewhere.
func tokenHTTPClient(p config.HTTPPool) (*http.Client, *http.Transport) {
	d := &net.Dialer{Timeout: p.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		MaxIdleConns:          p.TotalConnections,
		MaxIdleConnsPerHost:   p.ConnectionsPerHost,
		MaxConnsPerHost:       p.ConnectionsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   p.ConnectTimeout,
		ResponseHeaderTimeout: 30 * time.Second,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}

// localAddrs lists the addresses configured on this host's interfaces.
func localAddrs(log *slog.Logger) map[netip.Addr]bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("cannot list local addresses; every ip_address will be refused", "err", err)
		return map[netip.Addr]bool{}
	}
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			m[p.Addr().Unmap()] = true
		}
	}
	return m
}

// New loads the configuration, builds every account and opens the SMTP
// listener. Nothing is contacted upstream until the first message.
func New(opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:2525"
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.BudgetFlushInterval <= 0 {
		opts.BudgetFlushInterval = budgetFlushEvery
	}
	if err := opts.Admin.check(); err != nil { // admin.go
		return nil, err
	}
	log := opts.Logger
	snap, warns, err := config.Load(opts.Load)
	for _, w := range warns {
		log.Warn("config", "warning", w.String())
	}
	if err != nil {
		return nil, err
	}
	log.Info("configuration loaded", "config", snap.ConfigPath, "accounts_file", snap.AccountsPath, "accounts", len(snap.Accounts))

	s := &Service{opts: opts, log: log, Snap: snap, logs: logthrottle.New(logthrottle.Options{Logger: log})}
	if s.opts.HTTPClient == nil {
		s.opts.HTTPClient, s.tokenTransport = tokenHTTPClient(snap.Global.HTTPPool)
	}
	// Metrics before the cluster client and the accounts, which count
	// into them (logins at session opening).
	s.initMetrics()                                  // metrics.go
	if snap, err = s.joinCluster(snap); err != nil { // shared.go
		return nil, err
	}
	s.Snap = snap
	built := false // New succeeded: the cluster client stays open
	defer func() {
		if !built {
			s.closeShared()
		}
	}()
	if g := snap.Global.SMTP; g.UseSourceIPBinding && g.ValidateSourceIP {
		s.localIPs = localAddrs(log)
	}
	build := s.buildAccount
	var budget quota.Budget // nil in dry-run: no budgets
	if opts.DryRun {
		build = dryRunAccount
	} else {
		if err := s.prepareTLS(); err != nil {
			return nil, err
		}
		s.openBudgets()                                         // budgets.go
		if budget, err = s.openCluster(s.budgets); err != nil { // cluster.go
			return nil, err
		}
		defer func() {
			if !built {
				s.closeCluster() // New failed
			}
		}()
	}
	s.Reg, err = account.NewRegistry(snap, build, account.Options{
		Trusted: snap.Global.SMTP.TrustedNetworks,
		Budget:  budget,
		Logger:  log,
	})
	if err != nil {
		return nil, err
	}
	if !opts.DryRun {
		if err := s.setupFeedback(); err != nil { // feedback.go
			return nil, err
		}
	}

	var backend smtpd.Backend
	if opts.DryRun {
		log.Warn("dry-run: messages are accepted and discarded; no provider is contacted")
		backend = relay.NewDryRun(s.Reg, log)
	} else {
		s.Relay = relay.New(s.Reg, relay.Options{
			Metrics:        s.relayMetrics,
			AcquireTimeout: snap.Global.Timeouts.ConnectionAcquire,
			Logger:         log,
			LogThrottle:    s.logs,
		})
		backend = s.Relay
	}
	g := snap.Global
	maxConns := g.Concurrency.GlobalConcurrencyLimit
	if opts.GlobalConcurrency > 0 {
		maxConns = opts.GlobalConcurrency
	}
	scfg := smtpd.Config{
		Hostname:        g.SMTP.ServerHostname,
		MaxMessageBytes: g.SMTP.MaxMessageBytes,
		MaxRecipients:   g.SMTP.MaxRecipients,
		MaxLineBytes:    g.SMTP.MaxLineBytes,
		MaxConnections:  maxConns,
		// Every failed AUTH is answered this long after its credentials.
		AuthFailureDelay: opts.AuthFailDelay,
		Logger:           log,
		LogThrottle:      s.logs,
	}
	if err := s.listenerConfig(&scfg, g); err != nil { // listener.go: TLS, PROXY protocol, limits
		s.Reg.Close()
		return nil, err
	}
	s.srv = smtpd.New(scfg, backend)
	if err := s.listenAdmin(); err != nil { // admin.go
		s.Reg.Close()
		return nil, err
	}
	if opts.Admin.Only {
		built = true
		return s, nil // --admin-only: no SMTP listener
	}
	s.ln, err = net.Listen("tcp", opts.Listen)
	if err != nil {
		s.Reg.Close()
		if s.adminLn != nil {
			s.adminLn.Close()
		}
		return nil, fmt.Errorf("listen %s: %w", opts.Listen, err)
	}
	if err := s.listenTLS(g); err != nil { // listener.go: implicit TLS
		s.ln.Close()
		s.Reg.Close()
		if s.adminLn != nil {
			s.adminLn.Close()
		}
		return nil, err
	}
	built = true
	return s, nil
}

// dryRunAccount builds an account with no token source and no sessions:
// dry-run never contacts a provider.
func dryRunAccount(*config.Account, *account.State, *token.Source) (account.Runtime, error) {
	return account.Runtime{}, nil
}

// prepareTLS builds the upstream TLS base: system roots plus upstream_ca_file.
// Every account's sessions share one TLS session cache, so that a
// replacement session resumes instead of paying a full handshake
// (measured: a full handshake per retired session cost ~12% of the
// proxy's CPU under load).
func (s *Service) prepareTLS() error {
	if s.opts.UpstreamTLS != nil {
		if s.opts.UpstreamTLS.ClientSessionCache == nil {
			c := s.opts.UpstreamTLS.Clone()
			c.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
			s.opts.UpstreamTLS = c
		}
		return nil
	}
	f := s.Snap.Global.SMTP.UpstreamCAFile
	if f == "" {
		s.opts.UpstreamTLS = &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(1024)}
		return nil
	}
	pem, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("upstream_ca_file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("upstream_ca_file %s: no PEM certificates found", f)
	}
	s.opts.UpstreamTLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(1024)}
	return nil
}

// buildAccount makes the runtime of one account: its token source (or
// keep, the one it already has) and its session lease. A token source
// that stops handing out tokens (needs_consent, disabled) drains the
// account's sessions at once.
func (s *Service) buildAccount(c *config.Account, st *account.State, keep *token.Source) (account.Runtime, error) {
	g := s.Snap.Global
	tokens := keep
	if tokens == nil {
		// Every grant type, persisted state, retry and breaker (tokens.go).
		var err error
		tokens, err = s.tokenSource(c, g, func() { st.DrainSessions("token revoked or disabled") })
		if err != nil {
			return account.Runtime{}, err
		}
	}
	sessions := account.NewSessions(c, tokens, account.SessionOptions{
		HeloName:       g.SMTP.ServerHostname,
		TLSConfig:      s.opts.UpstreamTLS,
		BindSourceIP:   g.SMTP.UseSourceIPBinding,
		AllowIPv6:      g.SMTP.UseIPv6,
		LocalIPs:       s.localIPs,
		CommandTimeout: g.Timeouts.SMTP,
		NoChunking:     !g.SMTP.UpstreamChunking,
		Dial:           s.opts.UpstreamDial,
		Metrics:        s.accountMetrics,
		Logger:         s.log,
		Slots:          s.clusterSlots(), // cluster.go; nil on one host
	})
	return account.Runtime{Tokens: tokens, Sessions: sessions}, nil
}

// Addr is the SMTP listener's address.
func (s *Service) Addr() net.Addr {
	if s.ln == nil {
		return nil // --admin-only
	}
	return s.ln.Addr()
}

// Run serves until ctx ends, then shuts down gracefully: the listener
// closes, transactions in flight finish (up to ShutdownTimeout), idle
// upstream sessions are QUIT.
func (s *Service) Run(ctx context.Context) error {
	// After everything, the admin API's credential checks included: the
	// idle keep-alive connections to token endpoints, whose read and
	// write loops would otherwise outlive Run (up to IdleConnTimeout).
	if s.tokenTransport != nil {
		defer s.tokenTransport.CloseIdleConnections()
	}
	var err error
	if s.onboard, err = s.newOnboarding(); err != nil { // onboarding.go
		return err
	}
	stopAdmin, err := s.startAdmin() // admin.go
	if err != nil {
		return err
	}
	defer stopAdmin()
	stopOnboarding, err := s.startOnboarding(s.onboard)
	if err != nil {
		return err
	}
	defer stopOnboarding()
	srvCtx, cancelSrv := context.WithCancel(context.Background())
	defer cancelSrv()
	var wg sync.WaitGroup
	var serveErr error
	if s.ln != nil {
		s.log.Info("listening", "smtp", s.ln.Addr().String(), "dry_run", s.opts.DryRun)
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveErr = s.srv.Serve(srvCtx, s.ln)
		}()
		s.serveTLS(srvCtx, &wg) // listener.go
		s.ready.Store(true)
	}
	wg.Add(1)
	sweepDone := make(chan struct{})
	go func() {
		defer wg.Done()
		sweep := time.NewTicker(5 * time.Second)
		defer sweep.Stop()
		flush := time.NewTicker(s.opts.BudgetFlushInterval)
		defer flush.Stop()
		for {
			select {
			case <-sweep.C:
				s.Reg.Sweep()
				s.sampleTraffic(time.Now()) // console.go
				s.logs.Flush()              // the summaries of bursts that ended
			case <-flush.C:
				s.saveBudgets()
			case <-sweepDone:
				return
			}
		}
	}()
	stopTokens := s.startTokens() // tokens.go: background renewal, pre-warm, state file
	stopShared := s.startShared() // shared.go: the cluster's account set and token re-seeding
	defer s.closeShared()
	stopFeedback := s.startFeedback() // feedback.go: bounce collector and webhook
	<-ctx.Done()
	stopFeedback()
	s.log.Info("shutting down", "timeout", s.opts.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	s.ready.Store(false)
	err = s.srv.Shutdown(sctx)
	cancel()
	cancelSrv()
	close(sweepDone)
	wg.Wait()
	stopShared()
	stopTokens() // after the clients: their token requests end, rotations are saved
	s.Reg.Close()
	s.closeCluster() // cluster.go: after the sessions gave their slots back
	s.saveBudgets()
	if errors.Is(serveErr, smtpd.ErrServerClosed) {
		serveErr = nil
	}
	s.logs.FlushAll() // after the last connection: every count owed
	if err != nil {
		s.log.Warn("shutdown deadline passed; connections closed", "err", err)
	}
	s.log.Info("stopped")
	return serveErr
}

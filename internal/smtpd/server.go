package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Config holds the server's limits. Zero values take the defaults noted.
type Config struct {
	Hostname        string // banner and EHLO name; default "xoauth2-proxy"
	MaxMessageBytes int64  // SIZE; default 50 MiB
	MaxRecipients   int    // per message; default 1000
	MaxLineBytes    int    // body line length, CRLF excluded; default 10000
	MaxCommandBytes int    // command line; default 2048 (RFC 5321 §4.5.3.1.4 allows 512, clients send more)
	MaxAuthBytes    int    // AUTH lines, which carry long tokens; default 12288
	MaxConnections  int    // open client connections; over it: 421 4.7.0 and close. Default 10000
	// MaxConnectionsPerIP caps the open connections of one client address
	// (IPv6: one /64), counted after the PROXY header; over it: 421 4.7.0
	// and close. Clients in Trusted are exempt, as Postfix exempts
	// $mynetworks from its connection limits: the local MTA opens one
	// connection per virtual MTA and session (MaxConnections still
	// holds). Default 1000.
	MaxConnectionsPerIP int
	MaxBadCommands      int // unknown, invalid or out-of-sequence commands per connection before 421; default 20
	// MaxAuthFailuresPerIP and MaxAuthFailuresPerUser are the failed AUTH
	// attempts (535) allowed in one minute per client address (IPv6: /64)
	// and per username; beyond them AUTH gets 421 4.7.0 and the
	// connection closes, before any password is checked. Successful AUTH
	// does not count. An attempt whose password is being checked holds a
	// place until it is answered; while failures and such attempts fill a
	// limit, further attempts wait, so parallel guesses cannot pass it.
	// The username counts by account when the Backend is an AuthKeyer,
	// so an account's second name is not a second budget. Default 10
	// each.
	MaxAuthFailuresPerIP   int
	MaxAuthFailuresPerUser int
	// TrustedAuthFailuresPerIP and TrustedAuthFailuresPerUser are the
	// same limits for clients in Trusted: more generous, so that a local
	// MTA with one wrong password is not refused for its other accounts,
	// but there, so that a local process cannot guess without end.
	// Their attempts in flight do not hold back others from the same
	// address, which is shared. Default 300 and 30.
	TrustedAuthFailuresPerIP   int
	TrustedAuthFailuresPerUser int
	// AuthFailureDelay is when every failed AUTH (535) is answered,
	// counted from the moment its credentials arrived, whatever failed:
	// an unknown name, a wrong password, a bcrypt or a plain-text one.
	// The wait pads the check instead of following it, so the answer's
	// timing tells nothing. Default 1s; negative: none.
	AuthFailureDelay time.Duration
	// MaxAuthChecks bounds the password checks (Backend.Login) running at
	// once over the whole server; further AUTHs queue, those of clients
	// with the fewest recent failures first. Default GOMAXPROCS, at
	// least 2.
	MaxAuthChecks int
	// AuthQueueTimeout bounds an AUTH's wait in that queue; beyond it the
	// client gets 454 4.7.0 and may try again. Default 10s.
	AuthQueueTimeout time.Duration
	// AuthTimeout is how long a connection may stay without completing
	// AUTH, from its greeting; then 421 4.7.0 and close, whatever it
	// sends meanwhile. Default 60s; negative: no limit.
	AuthTimeout time.Duration
	// CommandTimeout bounds the wait for the greeting's first command and
	// every later one, and each write to the client; default 5m (RFC 5321
	// §4.5.3.2.7).
	CommandTimeout time.Duration
	// DataBlockTimeout bounds each wait for more of the message body;
	// default 3m (RFC 5321 §4.5.3.2.5).
	DataBlockTimeout time.Duration
	// DataTimeout bounds the whole DATA phase, body and the upstream's
	// final reply; default 10m (RFC 5321 §4.5.3.2.6).
	DataTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake (implicit TLS and STARTTLS)
	// and the wait for a PROXY header; default 1m.
	HandshakeTimeout time.Duration
	// TLSConfig enables STARTTLS and ServeTLS. Use one with
	// GetCertificate (KeyPair.TLSConfig) so certificates can be replaced
	// without a restart. nil: no STARTTLS; AUTH only from Trusted.
	TLSConfig *tls.Config
	// Trusted networks may AUTH without TLS, have their own AUTH failure
	// limits and no per-address connection cap. nil means loopback
	// (127.0.0.0/8, ::1); an empty, non-nil slice trusts no network.
	Trusted []netip.Prefix
	// ProxyProtocol lists the load balancers whose connections start with
	// a PROXY protocol header (v1 or v2); the client address in it then
	// counts for Trusted and the limits. Connections from other addresses
	// are served as direct ones, a header from them being an unknown
	// command. Empty: PROXY protocol off.
	ProxyProtocol []netip.Prefix
	// Now is the clock of the AUTH failure limits; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil: discard
	// LogThrottle aggregates the warnings a flood of connections repeats
	// (caps, AUTH limits, bad PROXY headers); its owner flushes it. nil:
	// one of the server's own, over Logger, whose summaries only the next
	// event of their key writes.
	LogThrottle *logthrottle.Throttle
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "xoauth2-proxy"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 50 << 20
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 1000
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 10000
	}
	if c.MaxCommandBytes == 0 {
		c.MaxCommandBytes = 2048
	}
	if c.MaxAuthBytes == 0 {
		c.MaxAuthBytes = 12288
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 10000
	}
	if c.MaxConnectionsPerIP == 0 {
		c.MaxConnectionsPerIP = 1000
	}
	if c.MaxBadCommands == 0 {
		c.MaxBadCommands = 20
	}
	if c.MaxAuthFailuresPerIP == 0 {
		c.MaxAuthFailuresPerIP = 10
	}
	if c.MaxAuthFailuresPerUser == 0 {
		c.MaxAuthFailuresPerUser = 10
	}
	if c.TrustedAuthFailuresPerIP == 0 {
		c.TrustedAuthFailuresPerIP = 300
	}
	if c.TrustedAuthFailuresPerUser == 0 {
		c.TrustedAuthFailuresPerUser = 30
	}
	if c.AuthFailureDelay == 0 {
		c.AuthFailureDelay = time.Second
	}
	if c.MaxAuthChecks == 0 {
		c.MaxAuthChecks = max(2, runtime.GOMAXPROCS(0))
	}
	if c.AuthQueueTimeout == 0 {
		c.AuthQueueTimeout = 10 * time.Second
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = time.Minute
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 5 * time.Minute
	}
	if c.DataBlockTimeout == 0 {
		c.DataBlockTimeout = 3 * time.Minute
	}
	if c.DataTimeout == 0 {
		c.DataTimeout = 10 * time.Minute
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = time.Minute
	}
	if c.Trusted == nil {
		c.Trusted = loopback
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LogThrottle == nil {
		c.LogThrottle = logthrottle.New(logthrottle.Options{Logger: c.Logger})
	}
}

// warn logs an event that a flood of connections repeats: the first of
// its reason in full, then a count (Config.LogThrottle). Stats count each.
func (s *Server) warn(log *slog.Logger, reason, msg string, args ...any) {
	s.cfg.LogThrottle.Warn(log, logthrottle.Key{Reason: reason}, msg, args...)
}

// Stats are the server's counters since New.
type Stats struct {
	Open         int64 // open client connections now
	Accepted     int64 // connections served (past the caps)
	RefusedLimit int64 // refused over MaxConnections
	RefusedPerIP int64 // refused over MaxConnectionsPerIP
	// RefusedAuthBlocked counts connections refused at once because
	// their address (outside Trusted) is over its AUTH failure limit.
	RefusedAuthBlocked int64
	AuthRefused        int64 // AUTH refused with 421 over the failure limits
	AuthBusy           int64 // AUTH answered 454: no password check slot within AuthQueueTimeout
	AuthWaiting        int64 // AUTHs waiting for a password check slot now
	AuthTimeouts       int64 // connections closed for not completing AUTH within AuthTimeout
	Timeouts           int64 // connections closed for a timeout
	TooManyErrors      int64 // connections closed over MaxBadCommands
	TLSFailures        int64 // failed TLS handshakes (implicit and STARTTLS)
	ProxyFailures      int64 // connections from a load balancer without a valid PROXY header
	Panics             int64 // connections ended by a recovered panic
	AuthFailures       int64 // AUTH attempts answered 535
	StartTLS           int64 // successful STARTTLS
	ImplicitTLS        int64 // successful implicit TLS handshakes
	ProxiedClients     int64 // connections whose client address came from a PROXY header
	// Commands counts commands received, by CommandNames index.
	Commands [len(CommandNames)]int64
}

type counters struct {
	accepted, refusedLimit, refusedPerIP, authRefused, timeouts, tooManyErrors atomic.Int64
	tlsFailures, proxyFailures, panics, authFailures, startTLS, implicitTLS    atomic.Int64
	proxied, authBusy, authTimeouts, refusedAuthBlocked                        atomic.Int64
	commands                                                                   [len(CommandNames)]atomic.Int64
}

// CommandNames are the commands counted by name in Stats.Commands; any
// other verb counts as "OTHER". A fixed list keeps metric labels bounded.
var CommandNames = [...]string{"EHLO", "HELO", "AUTH", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "STARTTLS", "VRFY", "OTHER"}

func (c *counters) countCommand(verb string) {
	for i, n := range CommandNames[:len(CommandNames)-1] {
		if n == verb {
			c.commands[i].Add(1)
			return
		}
	}
	c.commands[len(CommandNames)-1].Add(1)
}

// Server accepts client connections and serves SMTP on them.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	stats   counters
	auth    *authLimiter
	gate    *authGate
	perIP   ipCounter

	open   atomic.Int64 // open connections
	nextID atomic.Uint64

	// buffers lends connections their read and write buffers, taken back
	// while a connection waits for its client (idle.go).
	buffers connBuffers

	mu        sync.Mutex // guards listeners, conns, closing
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup // connection goroutines and Serve loops
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpd: server closed")

// ErrNoTLS is returned by ServeTLS when Config.TLSConfig is nil.
var ErrNoTLS = errors.New("smtpd: ServeTLS needs Config.TLSConfig")

// New returns a server using backend for AUTH and relaying.
func New(cfg Config, backend Backend) *Server {
	cfg.setDefaults()
	lim := newAuthLimiter(cfg.Now)
	return &Server{
		cfg:       cfg,
		backend:   backend,
		log:       cfg.Logger,
		auth:      lim,
		gate:      newAuthGate(cfg.MaxAuthChecks, lim),
		perIP:     ipCounter{n: make(map[netip.Prefix]int)},
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
}

// Open returns the number of open client connections.
func (s *Server) Open() int64 { return s.open.Load() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Open:               s.open.Load(),
		Accepted:           c.accepted.Load(),
		RefusedLimit:       c.refusedLimit.Load(),
		RefusedPerIP:       c.refusedPerIP.Load(),
		RefusedAuthBlocked: c.refusedAuthBlocked.Load(),
		AuthRefused:        c.authRefused.Load(),
		AuthBusy:           c.authBusy.Load(),
		AuthWaiting:        int64(s.gate.waitingNow()),
		AuthTimeouts:       c.authTimeouts.Load(),
		Timeouts:           c.timeouts.Load(),
		TooManyErrors:      c.tooManyErrors.Load(),
		TLSFailures:        c.tlsFailures.Load(),
		ProxyFailures:      c.proxyFailures.Load(),
		Panics:             c.panics.Load(),
		AuthFailures:       c.authFailures.Load(),
		StartTLS:           c.startTLS.Load(),
		ImplicitTLS:        c.implicitTLS.Load(),
		ProxiedClients:     c.proxied.Load(),
	}
	for i := range c.commands {
		st.Commands[i] = c.commands[i].Load()
	}
	return st
}

// Serve accepts connections on ln until Shutdown or ctx ends and serves
// SMTP on them, with STARTTLS when Config.TLSConfig is set. Connection
// contexts derive from ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, false)
}

// ServeTLS is Serve for implicit TLS (RFC 8314, port 465): each
// connection starts with a TLS handshake, after the PROXY header if one is
// expected.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return ErrNoTLS
	}
	return s.serve(ctx, ln, true)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Back off like net/http on temporary accept errors.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.warn(s.log, "accept", "accept", "err", err, "retry_in", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		delay = 0
		s.startConn(ctx, nc, implicitTLS)
	}
}

func (s *Server) startConn(ctx context.Context, nc net.Conn, implicitTLS bool) {
	if s.open.Add(1) > int64(s.cfg.MaxConnections) {
		s.open.Add(-1)
		s.stats.refusedLimit.Add(1)
		// Polite overload: say why, then close (RFC 5321 §3.8). A client
		// expecting TLS could not read the reply; it is just closed.
		if !implicitTLS {
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = nc.Write(reply.New(421, "4.7.0", s.cfg.Hostname+" too many connections, try again later").Append(nil))
		}
		_ = nc.Close()
		s.warn(s.log, "connection_limit", "connection refused: limit", "remote", nc.RemoteAddr().String(), "limit", s.cfg.MaxConnections)
		return
	}
	c := newConn(s, nc, "c"+strconv.FormatUint(s.nextID.Add(1), 36), implicitTLS)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.open.Add(-1)
		if !implicitTLS {
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = nc.Write(reply.New(421, "4.3.2", "shutting down").Append(nil))
		}
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.open.Add(-1)
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		c.serve(ctx)
	}()
}

// Shutdown stops accepting, then waits until every connection has ended or
// ctx is done; at that point remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.raw.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

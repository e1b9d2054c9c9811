package smtpd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Config holds the server's limits. Zero values take the defaults noted.
type Config struct {
	Hostname        string        // banner and EHLO name; default "xoauth2-proxy"
	MaxMessageBytes int64         // SIZE; default 50 MiB
	MaxRecipients   int           // per message; default 1000
	MaxLineBytes    int           // body line length, CRLF excluded; default 10000
	MaxCommandBytes int           // command line; default 2048 (RFC 5321 §4.5.3.1.4 allows 512, clients send more)
	MaxAuthBytes    int           // AUTH lines, which carry long tokens; default 12288
	MaxConnections  int           // open client connections; over it: 421 4.7.0 and close. Default 10000
	MaxBadCommands  int           // unknown or invalid commands per connection before 421; default 20
	CommandTimeout  time.Duration // wait for a command; default 5m (RFC 5321 §4.5.3.2.7)
	DataTimeout     time.Duration // whole DATA body; default 10m
	Logger          *slog.Logger  // nil: discard
}

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
	if c.MaxBadCommands == 0 {
		c.MaxBadCommands = 20
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 5 * time.Minute
	}
	if c.DataTimeout == 0 {
		c.DataTimeout = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server accepts client connections and serves SMTP on them.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger

	open   atomic.Int64 // open connections
	nextID atomic.Uint64

	mu        sync.Mutex // guards listeners, conns, closing
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup // connection goroutines and Serve loops
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpd: server closed")

// New returns a server using backend for AUTH and relaying.
func New(cfg Config, backend Backend) *Server {
	cfg.setDefaults()
	return &Server{
		cfg:       cfg,
		backend:   backend,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
}

// Open returns the number of open client connections.
func (s *Server) Open() int64 { return s.open.Load() }

// Serve accepts connections on ln until Shutdown or ctx ends. Connection
// contexts derive from ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
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
				s.log.Warn("accept", "err", err, "retry_in", delay)
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
		s.startConn(ctx, nc)
	}
}

func (s *Server) startConn(ctx context.Context, nc net.Conn) {
	if s.open.Add(1) > int64(s.cfg.MaxConnections) {
		s.open.Add(-1)
		// Polite overload: say why, then close (RFC 5321 §3.8).
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = nc.Write(reply.New(421, "4.7.0", s.cfg.Hostname+" too many connections, try again later").Append(nil))
		_ = nc.Close()
		s.log.Warn("connection refused: limit", "remote", nc.RemoteAddr().String(), "limit", s.cfg.MaxConnections)
		return
	}
	c := newConn(s, nc, "c"+strconv.FormatUint(s.nextID.Add(1), 36))
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.open.Add(-1)
		_, _ = nc.Write(reply.New(421, "4.3.2", "shutting down").Append(nil))
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
			c.nc.Close()
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
	return ap
}

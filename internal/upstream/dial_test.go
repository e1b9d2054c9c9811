package upstream_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// checkDialErr checks that err is an *upstream.Error of stage with the
// given reply code (0: no reply) and, when is is set, wrapping is.
func checkDialErr(t *testing.T, err error, stage string, code int, is error) {
	t.Helper()
	var e *upstream.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *upstream.Error", err, err)
	}
	if e.Stage != stage {
		t.Errorf("Stage = %q, want %q (err %v)", e.Stage, stage, err)
	}
	switch {
	case code == 0 && e.Reply != nil:
		t.Errorf("Reply = %v, want none", e.Reply)
	case code != 0 && (e.Reply == nil || e.Reply.Code != code):
		t.Errorf("Reply = %v, want code %d", e.Reply, code)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %v does not wrap %v", err, is)
	}
}

func TestDial_greetingAndEHLO(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		stage  string // "" for success
		code   int
		is     error
		check  func(t *testing.T, c *upstream.Client)
	}{
		{
			name: "multi-line greeting and EHLO",
			script: `
				S: 220-fake.test first line
				S: 220-second line
				S: 220 third line
				C: EHLO test.local
				S: 250-fake.test at your service
				S: 250-SIZE 35882577
				S: 250-8BITMIME
				S: 250-AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER
				S: 250-ENHANCEDSTATUSCODES
				S: 250-PIPELINING
				S: 250 SMTPUTF8
				C: QUIT
				S: 221 2.0.0 bye`,
			check: func(t *testing.T, c *upstream.Client) {
				if p, ok := c.Extension("auth"); !ok || p != "LOGIN PLAIN XOAUTH2 OAUTHBEARER" {
					t.Errorf("Extension(auth) = %q, %v", p, ok)
				}
				if _, ok := c.Extension("Pipelining"); !ok {
					t.Error("PIPELINING not seen")
				}
				if _, ok := c.Extension("STARTTLS"); ok {
					t.Error("STARTTLS seen but not offered")
				}
				if got := c.MaxSize(); got != 35882577 {
					t.Errorf("MaxSize = %d", got)
				}
			},
		},
		{
			name: "EHLO refused falls back to HELO",
			script: `
				S: 220 old.test SMTP
				C: EHLO test.local
				S: 502 5.5.1 command not recognized
				C: HELO test.local
				S: 250 old.test
				C: QUIT
				S: 221 bye`,
			check: func(t *testing.T, c *upstream.Client) {
				if _, ok := c.Extension("PIPELINING"); ok || c.MaxSize() != 0 {
					t.Error("extensions after HELO")
				}
			},
		},
		{
			name: "HELO refused too",
			script: `
				S: 220 old.test SMTP
				C: EHLO test.local
				S: 500 no
				C: HELO test.local
				S: 550 5.7.1 go away`,
			stage: "ehlo", code: 550,
		},
		{
			name: "EHLO temporary failure is not retried as HELO",
			script: `
				S: 220 fake.test
				C: EHLO test.local
				S: 421 4.3.0 too busy`,
			stage: "ehlo", code: 421,
		},
		{
			name:   "greeting refused",
			script: `S: 554 5.7.1 no service for you`,
			stage:  "greeting", code: 554,
		},
		{
			name:   "malformed greeting",
			script: `S: hello there`,
			stage:  "greeting", is: upstream.ErrMalformedReply,
		},
		{
			name:   "greeting line too long",
			script: "S: 220 " + strings.Repeat("x", 5000),
			stage:  "greeting", is: upstream.ErrMalformedReply,
		},
		{
			name:   "closed before greeting",
			script: `close`,
			stage:  "greeting",
		},
		{
			name: "closed during EHLO reply",
			script: `
				S: 220 fake.test
				C: EHLO test.local
				S: 250-fake.test
				close`,
			stage: "ehlo",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tc.script)
			c, err := dial(t, s, nil)
			if tc.stage != "" {
				if c != nil {
					t.Fatal("Dial returned a client with an error")
				}
				checkDialErr(t, err, tc.stage, tc.code, tc.is)
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			tc.check(t, c)
			if err := c.Quit(context.Background()); err != nil {
				t.Errorf("Quit: %v", err)
			}
			s.wait(t)
		})
	}
}

func TestDial_TLS(t *testing.T) {
	t.Parallel()
	const startTLS = `
		S: 220 fake.test ESMTP
		C: EHLO test.local
		S: 250-fake.test
		S: 250-PIPELINING
		S: 250 STARTTLS
		C: STARTTLS`
	const afterTLS = `
		C: EHLO test.local
		S: 250-fake.test
		S: 250-AUTH LOGIN XOAUTH2
		S: 250 PIPELINING
		C: QUIT
		S: 221 bye`
	tests := []struct {
		name   string
		mode   upstream.TLSMode
		tls    func(t testing.TB) *tls.Config
		script string
		stage  string // "" for success
		code   int
		is     error
	}{
		{
			name: "starttls with a trusted certificate",
			mode: upstream.TLSStartTLS, tls: trusting,
			script: startTLS + `
				S: 220 2.0.0 ready to start TLS
				tls` + afterTLS,
		},
		{
			name: "starttls is the default mode",
			mode: "", tls: trusting,
			script: startTLS + `
				S: 220 2.0.0 ready to start TLS
				tls` + afterTLS,
		},
		{
			name: "starttls with an untrusted certificate",
			mode: upstream.TLSStartTLS,
			script: startTLS + `
				S: 220 2.0.0 ready to start TLS
				tls`,
			stage: "tls",
		},
		{
			name: "starttls not offered",
			mode: upstream.TLSStartTLS, tls: trusting,
			script: `
				S: 220 fake.test ESMTP
				C: EHLO test.local
				S: 250-fake.test
				S: 250 PIPELINING`,
			stage: "starttls", is: upstream.ErrNoStartTLS,
		},
		{
			name: "starttls refused",
			mode: upstream.TLSStartTLS, tls: trusting,
			script: startTLS + `
				S: 454 4.7.0 TLS not available`,
			stage: "starttls", code: 454,
		},
		{
			name: "cleartext injected after the starttls reply",
			mode: upstream.TLSStartTLS, tls: trusting,
			script: startTLS + `
				raw: 220 2.0.0 go ahead\r\n250 injected\r\n`,
			stage: "starttls", is: upstream.ErrMalformedReply,
		},
		{
			name: "implicit TLS",
			mode: upstream.TLSImplicit, tls: trusting,
			script: `
				tls
				S: 220 fake.test ESMTP` + afterTLS,
		},
		{
			name: "implicit TLS with the wrong server name",
			mode: upstream.TLSImplicit,
			tls: func(t testing.TB) *tls.Config {
				tc := trusting(t)
				tc.ServerName = "other.example"
				return tc
			},
			script: `tls`,
			stage:  "tls",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tc.script)
			c, err := dial(t, s, func(cfg *upstream.Config) {
				cfg.TLS = tc.mode
				if tc.tls != nil {
					cfg.TLSConfig = tc.tls(t)
				}
			})
			if tc.stage != "" {
				checkDialErr(t, err, tc.stage, tc.code, tc.is)
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if p, ok := c.Extension("AUTH"); !ok || p != "LOGIN XOAUTH2" {
				t.Errorf("Extension(AUTH) after TLS = %q, %v", p, ok)
			}
			if _, ok := c.Extension("STARTTLS"); ok {
				t.Error("extensions from before TLS kept")
			}
			if err := c.Quit(context.Background()); err != nil {
				t.Errorf("Quit: %v", err)
			}
			s.wait(t)
		})
	}
}

// remoteAddrConn reports a remote address of our choosing.
type remoteAddrConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteAddrConn) RemoteAddr() net.Addr { return c.remote }

func TestDial_cleartextOnlyToLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		addr   string
		landed string // remote address the dialer reports; "" to fail if dialed
	}{
		{name: "IPv4", addr: "192.0.2.1:25"},
		{name: "IPv6", addr: "[2001:db8::1]:25"},
		{name: "name", addr: "smtp.gmail.com:587"},
		{name: "localhost resolving elsewhere", addr: "localhost:25", landed: "192.0.2.1:25"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(tc.addr)
			cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if tc.landed == "" {
					t.Error("dialed a non-loopback host in cleartext")
					return nil, errors.New("no")
				}
				a, b := net.Pipe()
				b.Close()
				return remoteAddrConn{Conn: a, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.landed))}, nil
			}
			c, err := upstream.Dial(context.Background(), cfg)
			if c != nil {
				c.Close()
			}
			checkDialErr(t, err, "connect", 0, upstream.ErrCleartext)
		})
	}
}

func TestDial_refusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*upstream.Config)
	}{
		{"no port", func(c *upstream.Config) { c.Addr = "127.0.0.1" }},
		{"bad port", func(c *upstream.Config) { c.Addr = "127.0.0.1:smtp" }},
		{"port out of range", func(c *upstream.Config) { c.Addr = "127.0.0.1:70000" }},
		{"unknown TLS mode", func(c *upstream.Config) { c.TLS = "ssl" }},
		{"space in HELO name", func(c *upstream.Config) { c.HeloName = "a b" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig("127.0.0.1:25")
			cfg.Dial = func(context.Context, string, string) (net.Conn, error) {
				t.Error("dialed despite a bad config")
				return nil, errors.New("no")
			}
			tc.mod(&cfg)
			_, err := upstream.Dial(context.Background(), cfg)
			checkDialErr(t, err, "connect", 0, upstream.ErrUsage)
		})
	}
}

func TestDial_localAddr(t *testing.T) {
	t.Parallel()
	t.Run("bound to a loopback source", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPlain+`
			C: QUIT
			S: 221 bye`)
		c := mustDial(t, s, func(cfg *upstream.Config) { cfg.LocalAddr = netip.MustParseAddr("127.0.0.2") })
		c.Quit(context.Background())
		s.wait(t)
		s.mu.Lock()
		peer := s.peer
		s.mu.Unlock()
		if !strings.HasPrefix(peer, "127.0.0.2:") {
			t.Errorf("server saw the client at %s, want 127.0.0.2", peer)
		}
	})
	t.Run("address not on this host fails", func(t *testing.T) {
		t.Parallel()
		// Nobody connects; the listener only gives the test a port.
		s := newServer(t, ``)
		_, err := dial(t, s, func(cfg *upstream.Config) { cfg.LocalAddr = netip.MustParseAddr("192.0.2.77") })
		checkDialErr(t, err, "connect", 0, nil)
	})
	t.Run("with a custom dialer is refused, not ignored", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, ``)
		var dialed atomic.Bool
		_, err := dial(t, s, func(cfg *upstream.Config) {
			cfg.LocalAddr = netip.MustParseAddr("127.0.0.2")
			cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialed.Store(true)
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
		})
		checkDialErr(t, err, "connect", 0, upstream.ErrUsage)
		if err != nil && !strings.Contains(err.Error(), "source address binding needs the built-in dialer") {
			t.Errorf("error %q does not say why", err)
		}
		if dialed.Load() {
			t.Error("the custom dialer was called: the session would have come from another address")
		}
	})
}

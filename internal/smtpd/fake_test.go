package smtpd_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// fakeBackend accepts alice/pw, refuses others, and relays into memory.
// Senders and recipients whose local part starts with "bad" are refused
// with 550.
type fakeBackend struct {
	mu         sync.Mutex
	batches    [][]smtpd.Command
	messages   [][]byte
	beginErr   error
	logins     []smtpd.ConnInfo // every Login's connection, in order
	dataErrors int              // bodies whose reading failed
}

func (b *fakeBackend) Login(_ context.Context, c *smtpd.ConnInfo, user, pass string) (smtpd.Sender, error) {
	b.mu.Lock()
	b.logins = append(b.logins, *c)
	b.mu.Unlock()
	switch {
	case user == "alice" && pass == "pw":
		return &fakeSender{b: b}, nil
	case user == "temp":
		return nil, reply.New(454, "4.7.0", "token endpoint unavailable")
	case user == "oops":
		return nil, errors.New("internal detail /etc/secret")
	}
	return nil, reply.New(535, "5.7.8", "Authentication credentials invalid")
}

type fakeSender struct{ b *fakeBackend }

func (s *fakeSender) Name() string { return "alice" }
func (s *fakeSender) Begin(context.Context, *smtpd.ConnInfo) (smtpd.Txn, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.b.beginErr != nil {
		return nil, s.b.beginErr
	}
	return &fakeTxn{b: s.b}, nil
}

type fakeTxn struct {
	b      *fakeBackend
	ok     int
	closed bool
}

func (t *fakeTxn) Envelope(_ context.Context, cmds []smtpd.Command) []reply.Reply {
	t.b.mu.Lock()
	t.b.batches = append(t.b.batches, append([]smtpd.Command(nil), cmds...))
	t.b.mu.Unlock()
	out := make([]reply.Reply, len(cmds))
	for i, c := range cmds {
		switch c.Verb {
		case smtpd.VerbMail:
			if strings.HasPrefix(c.Addr, "bad") {
				out[i] = reply.New(550, "5.7.1", "sender refused upstream")
			} else {
				out[i] = reply.New(250, "2.1.0", "OK from upstream")
			}
		case smtpd.VerbRcpt:
			if strings.HasPrefix(c.Addr, "bad") {
				out[i] = reply.New(550, "5.1.1", "no such user upstream")
			} else {
				t.ok++
				out[i] = reply.New(250, "2.1.5", "OK")
			}
		case smtpd.VerbData:
			if t.ok == 0 {
				out[i] = reply.New(554, "5.5.1", "no valid recipients upstream")
			} else {
				out[i] = reply.New(354, "", "Go ahead")
			}
		}
	}
	return out
}

func (t *fakeTxn) Data(_ context.Context, r io.Reader) reply.Reply {
	b, err := io.ReadAll(r)
	if err != nil {
		t.b.mu.Lock()
		t.b.dataErrors++
		t.b.mu.Unlock()
		return reply.FromError(err, "x")
	}
	t.b.mu.Lock()
	t.b.messages = append(t.b.messages, b)
	t.b.mu.Unlock()
	return reply.New(250, "2.0.0", "OK queued upstream")
}

func (t *fakeTxn) Close() {
	if t.closed {
		panic("Txn closed twice")
	}
	t.closed = true
}

// lastLogin returns the connection of the latest Login.
func (b *fakeBackend) lastLogin() smtpd.ConnInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.logins) == 0 {
		return smtpd.ConnInfo{}
	}
	return b.logins[len(b.logins)-1]
}

// startServer runs a server on loopback and returns its address.
func startServer(t *testing.T, cfg smtpd.Config, b smtpd.Backend) string {
	t.Helper()
	_, addr, _ := startServers(t, cfg, b, false)
	return addr
}

// startServers runs a server with a plain listener and, with implicitTLS,
// a second one for ServeTLS (tlsAddr is "" without). Both listen on
// 127.0.0.1 and accept from any loopback address. At the end the server
// is shut down and must not have recovered from a panic (the fakes panic
// on misuse).
func startServers(t *testing.T, cfg smtpd.Config, b smtpd.Backend, implicitTLS bool) (srv *smtpd.Server, addr, tlsAddr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AuthFailureDelay == 0 {
		cfg.AuthFailureDelay = -1 // the tests of the delay set their own
	}
	srv = smtpd.New(cfg, b)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ctx, ln) })
	if implicitTLS {
		tln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tlsAddr = tln.Addr().String()
		wg.Go(func() {
			if err := srv.ServeTLS(ctx, tln); !errors.Is(err, smtpd.ErrServerClosed) {
				t.Errorf("ServeTLS: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = srv.Shutdown(sctx)
		cancel()
		wg.Wait()
		if n := srv.Stats().Panics; n > 0 {
			t.Errorf("server recovered from %d panics", n)
		}
	})
	return srv, ln.Addr().String(), tlsAddr
}

// client is a raw SMTP client for dialog tests.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client { return dialFrom(t, addr, "") }

// dialFrom connects from the loopback address src ("" for any).
func dialFrom(t *testing.T, addr, src string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readReply reads one (possibly multi-line) reply and returns its lines.
func (c *client) readReply() []string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply (have %q): %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// expect reads one reply and checks that its last line starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	lines := c.readReply()
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("got %q, want prefix %q", lines, prefix)
	}
	return last
}

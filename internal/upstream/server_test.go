package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// fakeServer is a scripted SMTP server on a loopback port. It accepts one
// connection and plays its script, one step per line:
//
//	S: text    send "text\r\n"
//	C: text    expect the client line "text" ("text*" matches a prefix)
//	raw: text  send text as is, with \r and \n written as escapes
//	slow: text send "text\r\n" one byte every 100ms
//	tls        TLS handshake as the server
//	body       read DATA up to the "." line and keep it (still stuffed)
//	read N     read N bytes and drop them
//	eof        read everything until the client closes and keep it
//	close      close the connection (also done when the script ends)
//
// Any mismatch is reported as a test error when the test ends.
type fakeServer struct {
	addr   string
	peer   string // the client's address
	ln     net.Listener
	script []string
	done   chan struct{}

	mu     sync.Mutex
	errs   []string
	lines  []string // client lines received by C: steps
	bodies []string // data received by body steps
	rest   []byte   // data received by the eof step
}

// Common openings: greeting and EHLO for a cleartext loopback session.
const (
	openPipelining = `
		S: 220 fake.test ESMTP ready
		C: EHLO test.local
		S: 250-fake.test hello
		S: 250-PIPELINING
		S: 250-SIZE 35882577
		S: 250-8BITMIME
		S: 250 ENHANCEDSTATUSCODES`
	openPlain = `
		S: 220 fake.test ESMTP ready
		C: EHLO test.local
		S: 250-fake.test hello
		S: 250 8BITMIME`
	openData = openPipelining + `
		C: MAIL FROM:<a@example.org>
		C: RCPT TO:<b@example.net>
		C: DATA
		S: 250 2.1.0 ok
		S: 250 2.1.5 ok
		S: 354 go ahead`
)

// newServer starts a fake server playing script.
func newServer(t testing.TB, script string) *fakeServer {
	t.Helper()
	return newServerWith(t, func(string) string { return script })
}

// newServerWith starts a fake server whose script depends on its address
// (OAUTHBEARER carries the port).
func newServerWith(t testing.TB, script func(addr string) string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{addr: ln.Addr().String(), ln: ln, done: make(chan struct{})}
	for _, l := range strings.Split(script(s.addr), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			s.script = append(s.script, l)
		}
	}
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.errs {
			t.Errorf("fake server: %s", e)
		}
	})
	return s
}

func (s *fakeServer) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

func (s *fakeServer) serve() {
	defer close(s.done)
	conn, err := s.ln.Accept()
	if err != nil {
		return // the test never connected
	}
	s.ln.Close()
	s.mu.Lock()
	s.peer = conn.RemoteAddr().String()
	s.mu.Unlock()
	// A safety net: a test that forgets to close its client still ends.
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	defer func() { conn.Close() }()
	br := bufio.NewReader(conn)
	for _, step := range s.script {
		verb, arg, _ := strings.Cut(step, " ")
		switch verb {
		case "S:":
			if _, err := io.WriteString(conn, arg+"\r\n"); err != nil {
				s.fail("send %q: %v", arg, err)
				return
			}
		case "raw:":
			arg = strings.NewReplacer(`\r`, "\r", `\n`, "\n").Replace(arg)
			if _, err := io.WriteString(conn, arg); err != nil {
				s.fail("send %q: %v", arg, err)
				return
			}
		case "slow:":
			for _, b := range []byte(arg + "\r\n") {
				if _, err := conn.Write([]byte{b}); err != nil {
					return // the client gave up, as it should
				}
				time.Sleep(100 * time.Millisecond)
			}
		case "C:":
			l, err := br.ReadString('\n')
			if err != nil {
				s.fail("expecting %q: %v", arg, err)
				return
			}
			l = strings.TrimSuffix(l, "\r\n")
			s.mu.Lock()
			s.lines = append(s.lines, l)
			s.mu.Unlock()
			if p, ok := strings.CutSuffix(arg, "*"); ok && strings.HasPrefix(l, p) || l == arg {
				continue
			}
			s.fail("got %q, want %q", l, arg)
			return
		case "tls":
			tc := tls.Server(conn, serverTLS())
			if err := tc.Handshake(); err != nil {
				return // the client refused the certificate; the test checks its side
			}
			conn = tc
			br = bufio.NewReader(conn)
		case "body":
			var data []byte
			for {
				l, err := br.ReadBytes('\n')
				if err != nil {
					s.fail("body: %v", err)
					return
				}
				if string(l) == ".\r\n" {
					break
				}
				data = append(data, l...)
			}
			s.mu.Lock()
			s.bodies = append(s.bodies, string(data))
			s.mu.Unlock()
		case "read":
			n, _ := strconv.Atoi(arg)
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				s.fail("read: %v", err)
				return
			}
		case "eof":
			// A reset (the client closed with data unread) is an end too.
			data, _ := io.ReadAll(br)
			s.mu.Lock()
			s.rest = data
			s.mu.Unlock()
		case "close":
			return
		default:
			s.fail("bad script step %q", step)
			return
		}
	}
}

// wait returns once the server has finished its script.
func (s *fakeServer) wait(t testing.TB) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("fake server did not finish its script")
	}
}

func (s *fakeServer) received() (lines, bodies []string, rest []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...), append([]string(nil), s.bodies...), bytes.Clone(s.rest)
}

// writeCounter counts the client's writes on its connection.
type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (w writeCounter) Write(p []byte) (int, error) {
	w.n.Add(1)
	return w.Conn.Write(p)
}

// baseConfig is a cleartext loopback session with short, test-sized
// timeouts.
func baseConfig(addr string) upstream.Config {
	return upstream.Config{
		Addr:           addr,
		TLS:            upstream.TLSNone,
		HeloName:       "test.local",
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
	}
}

// dial connects to s with baseConfig changed by mod (may be nil).
func dial(t testing.TB, s *fakeServer, mod func(*upstream.Config)) (*upstream.Client, error) {
	t.Helper()
	cfg := baseConfig(s.addr)
	if mod != nil {
		mod(&cfg)
	}
	c, err := upstream.Dial(context.Background(), cfg)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// mustDial is dial for tests that are not about dialing.
func mustDial(t testing.TB, s *fakeServer, mod func(*upstream.Config)) *upstream.Client {
	t.Helper()
	c, err := dial(t, s, mod)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}

// countWrites makes the client's connection count its writes into n.
func countWrites(n *atomic.Int64) func(*upstream.Config) {
	return func(cfg *upstream.Config) {
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return writeCounter{Conn: c, n: n}, nil
		}
	}
}

// testCert is a self-signed certificate for 127.0.0.1 and localhost, made
// once per run.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake.test"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

func serverTLS() *tls.Config {
	cert, err := testCert()
	if err != nil {
		panic(err) // cannot happen with a working crypto/rand
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// trusting is a client TLS config whose only root is the test certificate.
func trusting(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{RootCAs: pool}
}

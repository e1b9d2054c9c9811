package service_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

const password = "s3cret-pw"

// env is a proxy in front of a fake provider, both on loopback.
type env struct {
	fp   *fakeprovider.Provider
	svc  *service.Service
	addr string
	// tlsAddr is the implicit TLS listener; roots trusts the certificate
	// of both listeners (and of the fake provider).
	tlsAddr string
	roots   *x509.CertPool
	dir     string           // where config.json and accounts.json live
	accts   []map[string]any // the accounts as written
	// stop shuts the proxy down gracefully (as SIGTERM does) and returns
	// Run's result; tests may call it, Cleanup always does.
	stop func() error
}

// writeAccounts rewrites accounts.json (for reload tests).
func (e *env) writeAccounts(t *testing.T, accts []map[string]any) {
	t.Helper()
	writeJSON(t, filepath.Join(e.dir, "accounts.json"), map[string]any{"accounts": accts})
}

type envOptions struct {
	provider fakeprovider.Options
	dryRun   bool
	logger   *slog.Logger
	admin    service.AdminOptions
	// upstreamDial replaces the network dialer towards providers.
	upstreamDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// edit may change the generated config and accounts before loading.
	edit func(cfg map[string]any, accts []map[string]any)
	// budgetFlush is Options.BudgetFlushInterval; 0 for the default.
	budgetFlush time.Duration
	// authFailDelay is Options.AuthFailDelay; 0 for none.
	authFailDelay time.Duration
}

var hash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// Accounts every env has.
const (
	userA     = "alice@example.com"  // bcrypt password
	userNoPW  = "nopw@example.com"   // no smtp_password
	userOne   = "onemsg@example.com" // sessions carry one message each
	userPlain = "plain@example.com"  // plain-text password
	userBound = "bound@example.com"  // ip_address 127.0.0.1
	userBadIP = "badip@example.com"  // ip_address not on this host
)

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	tlsCfg, roots, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if o.provider.TLSConfig == nil {
		o.provider.TLSConfig = tlsCfg
	}
	fp, err := fakeprovider.Start(o.provider)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeKeyPair(t, dir, tlsCfg.Certificates[0]) // the listener's
	mk := func(id, email string) map[string]any {
		fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-" + id})
		return map[string]any{
			"account_id": id, "email": email, "provider": "gmail",
			"client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-" + id,
			"oauth_token_url": fp.TokenURL(), "oauth_endpoint": fp.SMTPAddr(),
		}
	}
	a := mk("alice", userA)
	a["smtp_password"] = hash
	nopw := mk("nopw", userNoPW)
	one := mk("one", userOne)
	one["smtp_password"] = hash
	one["connection_settings"] = map[string]any{"max_messages_per_connection": 1}
	plain := mk("plain", userPlain)
	plain["smtp_password"] = password
	bound := mk("bound", userBound)
	bound["smtp_password"] = hash
	bound["ip_address"] = "127.0.0.1"
	badIP := mk("badip", userBadIP)
	badIP["smtp_password"] = hash
	badIP["ip_address"] = "192.0.2.55" // TEST-NET-1: never on this host
	accts := []map[string]any{a, nopw, one, plain, bound, badIP}
	cfg := map[string]any{
		"global": map[string]any{
			"smtp": map[string]any{
				"server_hostname":  "proxy.test",
				"upstream_ca_file": ca,
				"max_message_size": 60 << 20,
				"tls_cert_file":    certFile,
				"tls_key_file":     keyFile,
			},
		},
	}
	if o.edit != nil {
		o.edit(cfg, accts)
	}
	writeJSON(t, filepath.Join(dir, "config.json"), cfg)
	writeJSON(t, filepath.Join(dir, "accounts.json"), map[string]any{"accounts": accts})
	svc, err := service.New(service.Options{
		Load: config.LoadOptions{
			ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"),
			ConfigExplicit: true, SearchDirs: []string{},
		},
		Listen:              "127.0.0.1:0",
		TLSPort:             -1,
		DryRun:              o.dryRun,
		Logger:              o.logger,
		Admin:               o.admin,
		AuthFailDelay:       cmp.Or(o.authFailDelay, -1),
		UpstreamDial:        o.upstreamDial,
		BudgetFlushInterval: o.budgetFlush,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runService(t, svc)
	return &env{fp: fp, svc: svc, addr: svc.Addr().String(), tlsAddr: svc.TLSAddr().String(), roots: roots,
		dir: dir, accts: accts, stop: stop}
}

// writeKeyPair writes c as the listener's certificate and key files.
func writeKeyPair(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := fakeprovider.WriteKeyPair(dir, "listener-cert.pem", "listener-key.pem", c)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// oneAccountFile writes an accounts.json with one gmail account, for tests
// of the start that need a valid file and no provider.
func oneAccountFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accounts.json")
	writeJSON(t, path, []map[string]any{{
		"account_id": "a", "email": "a@example.com", "provider": "gmail",
		"client_id": "c", "client_secret": "s", "refresh_token": "r",
	}})
	return path
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// conn is a raw client connection for exact dialogs.
type conn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (e *env) dial(t *testing.T) *conn { return e.dialFrom(t, "") }

// dialFrom connects from a chosen loopback source address.
func (e *env) dialFrom(t *testing.T, src string) *conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &conn{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220 ")
	if kw := c.ehlo(); !strings.Contains(kw, "AUTH ") && strings.Contains(kw, "STARTTLS") {
		// Outside trusted_networks AUTH needs TLS.
		c.cmd("STARTTLS", "220 ")
		tc := tls.Client(nc, &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("STARTTLS handshake: %v", err)
		}
		c.nc, c.br = tc, bufio.NewReader(tc)
		c.ehlo()
	}
	return c
}

// ehlo sends EHLO and returns the reply's lines joined by newlines.
func (c *conn) ehlo() string {
	c.t.Helper()
	c.send("EHLO client.test\r\n")
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("EHLO: %v", err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if !strings.HasPrefix(l, "250") {
			c.t.Fatalf("EHLO: %q", lines)
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect reads a reply and checks the start of its last line.
// runService runs svc until the test ends, or until the returned stop
// (a graceful shutdown, as SIGTERM does) is called; stop returns Run's
// result, and the test fails if Run did not end cleanly.
func runService(t *testing.T, svc *service.Service) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }() // owned by stop
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

// readFinalLine reads one reply, multi-line or not, and returns its last
// line without CRLF.
func readFinalLine(br *bufio.Reader) (string, error) {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n"), nil
		}
	}
}

func (c *conn) expect(prefix string) string {
	c.t.Helper()
	last, err := readFinalLine(c.br)
	if err != nil {
		c.t.Fatalf("read (want %q): %v", prefix, err)
	}
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("got %q, want prefix %q", last, prefix)
	}
	return last
}

func (c *conn) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

func (c *conn) authPlain(user, pass, want string) {
	c.t.Helper()
	c.cmd("AUTH PLAIN "+saslmech.EncodePlain(user, pass), want)
}

func fakeproviderDiscard() fakeprovider.Options {
	return fakeprovider.Options{DiscardBodies: true, MaxMessageBytes: 60 << 20}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deliver sends one pipelined message from → rcpt and requires that it
// is accepted at every step. body is CRLF text without the final dot.
func (c *conn) deliver(from, rcpt, body string) {
	c.t.Helper()
	c.send("MAIL FROM:<" + from + ">\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send(body + ".\r\n")
	c.expect("250")
}

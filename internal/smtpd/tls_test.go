package smtpd_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// writeKeyPair makes a throw-away CA and a certificate for 127.0.0.1
// signed by it, writes the chain and the key as PEM files into dir, and
// returns the file names and a pool trusting the CA.
func writeKeyPair(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	cfg, roots, _, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = fakeprovider.WriteKeyPair(dir, "cert.pem", "key.pem", cfg.Certificates[0])
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, roots
}

// tlsServer starts a server with STARTTLS and an implicit TLS listener,
// trusting only 127.0.0.1 (tests connect from 127.0.0.2 to be outside).
func tlsServer(t *testing.T, cfg smtpd.Config, b smtpd.Backend) (srv *smtpd.Server, addr, tlsAddr string, kp *smtpd.KeyPair, roots *x509.CertPool, dir string) {
	t.Helper()
	dir = t.TempDir()
	certFile, keyFile, roots := writeKeyPair(t, dir)
	kp, err := smtpd.LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig = kp.TLSConfig()
	if cfg.Trusted == nil {
		cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	srv, addr, tlsAddr = startServers(t, cfg, b, true)
	return srv, addr, tlsAddr, kp, roots, dir
}

func clientTLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// startTLS runs STARTTLS and the client handshake.
func (c *client) startTLS(cfg *tls.Config) *tls.Conn {
	c.t.Helper()
	c.send("STARTTLS\r\n")
	c.expect("220 2.0.0")
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	return tc
}

// dialTLS connects to an implicit TLS listener from src.
func dialTLS(t *testing.T, addr, src string, cfg *tls.Config) *client {
	t.Helper()
	c := dialFrom(t, addr, src)
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	return c
}

// ehlo sends EHLO and returns the keywords of the reply.
func (c *client) ehlo() string {
	c.t.Helper()
	c.send("EHLO client.test\r\n")
	lines := c.readReply()
	if !strings.HasPrefix(lines[len(lines)-1], "250 ") {
		c.t.Fatalf("EHLO: %q", lines)
	}
	var kw []string
	for _, l := range lines[1:] {
		kw = append(kw, l[4:])
	}
	return strings.Join(kw, ",")
}

const authAlice = "AUTH PLAIN AGFsaWNlAHB3\r\n" // alice / pw

func TestSTARTTLS_authOnlyAfterTLS(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	srv, addr, _, _, roots, _ := tlsServer(t, smtpd.Config{}, b)
	c := dialFrom(t, addr, "127.0.0.2")
	c.expect("220 ")
	if kw := c.ehlo(); !strings.Contains(kw, "STARTTLS") || strings.Contains(kw, "AUTH") {
		t.Errorf("plain EHLO from an untrusted address offers %q", kw)
	}
	c.send(authAlice)
	c.expect("530 5.7.0 Must issue a STARTTLS command first")
	c.send("MAIL FROM:<a@example.com>\r\n")
	c.expect("530 5.7.0")
	c.send("STARTTLS x\r\n")
	c.expect("501 5.5.4")
	c.startTLS(clientTLS(roots))
	if kw := c.ehlo(); strings.Contains(kw, "STARTTLS") || !strings.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO under TLS offers %q", kw)
	}
	c.send("STARTTLS\r\n")
	c.expect("503 5.5.1 TLS already active")
	c.send(authAlice)
	c.expect("235 ")
	if li := b.lastLogin(); !li.TLS || li.Remote.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("backend saw %+v", li)
	}
	c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: tls\r\n\r\nhello\r\n.\r\n")
	c.expect("250 2.0.0")
	if st := srv.Stats(); st.StartTLS != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSTARTTLS_trustedNetworkMayAuthInClear(t *testing.T) {
	t.Parallel()
	_, addr, _, _, _, _ := tlsServer(t, smtpd.Config{}, &fakeBackend{})
	c := dialFrom(t, addr, "127.0.0.1")
	c.expect("220 ")
	if kw := c.ehlo(); !strings.Contains(kw, "STARTTLS") || !strings.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO from a trusted address offers %q", kw)
	}
	c.send(authAlice)
	c.expect("235 ")
}

func TestSTARTTLS_noTLSConfigured(t *testing.T) {
	t.Parallel()
	addr := startServer(t, smtpd.Config{Trusted: []netip.Prefix{}}, &fakeBackend{})
	c := dial(t, addr)
	c.expect("220 ")
	if kw := c.ehlo(); strings.Contains(kw, "STARTTLS") || strings.Contains(kw, "AUTH") {
		t.Errorf("EHLO offers %q", kw)
	}
	c.send(authAlice)
	c.expect("538 5.7.11")
	c.send("STARTTLS\r\n")
	c.expect("502 5.5.1")
}

// TestSTARTTLS_pipelinedPlaintextDiscarded: commands sent in clear after
// STARTTLS, before the handshake, are not executed under TLS (RFC 3207
// §4.2, CVE-2011-0411).
func TestSTARTTLS_pipelinedPlaintextDiscarded(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	_, addr, _, _, roots, _ := tlsServer(t, smtpd.Config{}, b)
	c := dialFrom(t, addr, "127.0.0.1")
	c.expect("220 ")
	c.ehlo()
	c.send("STARTTLS\r\n" + authAlice + "MAIL FROM:<injected@example.com>\r\n")
	c.expect("220 2.0.0")
	tc := tls.Client(c.nc, clientTLS(roots))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	c.send("MAIL FROM:<a@example.com>\r\n")
	c.expect("530 5.7.0") // the injected AUTH did not happen
	if li := b.lastLogin(); li.ID != "" {
		t.Errorf("injected AUTH ran: %+v", li)
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	srv, _, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{}, b)
	c := dialTLS(t, tlsAddr, "127.0.0.2", clientTLS(roots))
	c.expect("220 ")
	if kw := c.ehlo(); strings.Contains(kw, "STARTTLS") || !strings.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO offers %q", kw)
	}
	c.send(authAlice)
	c.expect("235 ")
	if !b.lastLogin().TLS {
		t.Error("backend was told the connection is not TLS")
	}
	if st := srv.Stats(); st.ImplicitTLS != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTLS_oldVersionsRefused(t *testing.T) {
	t.Parallel()
	_, _, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{}, &fakeBackend{})
	c := dialFrom(t, tlsAddr, "127.0.0.2")
	cfg := clientTLS(roots)
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := tls.Client(c.nc, cfg).Handshake(); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

// TestTLS_certificateReloadKeepsConnections: after Reload, new handshakes
// get the new certificate and an established session goes on.
func TestTLS_certificateReloadKeepsConnections(t *testing.T) {
	t.Parallel()
	_, addr, tlsAddr, kp, roots1, dir := tlsServer(t, smtpd.Config{}, &fakeBackend{})
	old := dialTLS(t, tlsAddr, "127.0.0.2", clientTLS(roots1))
	old.expect("220 ")
	old.ehlo()

	_, _, roots2 := writeKeyPair(t, dir) // overwrites cert.pem and key.pem
	if err := kp.Reload(); err != nil {
		t.Fatal(err)
	}
	old.send("NOOP\r\n")
	old.expect("250 ")
	old.send(authAlice)
	old.expect("235 ")

	c := dialFrom(t, tlsAddr, "127.0.0.2")
	if err := tls.Client(c.nc, clientTLS(roots1)).Handshake(); err == nil {
		t.Error("new connection still got the old certificate")
	}
	fresh := dialTLS(t, tlsAddr, "127.0.0.2", clientTLS(roots2))
	fresh.expect("220 ")
	st := dialFrom(t, addr, "127.0.0.2")
	st.expect("220 ")
	st.ehlo()
	st.startTLS(clientTLS(roots2))

	// A broken file keeps the current certificate.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kp.Reload(); err == nil {
		t.Error("Reload accepted a broken key")
	}
	again := dialTLS(t, tlsAddr, "127.0.0.2", clientTLS(roots2))
	again.expect("220 ")
}

// TestTLS_garbage: junk instead of a handshake closes that connection and
// nothing else.
func TestTLS_garbage(t *testing.T) {
	t.Parallel()
	srv, addr, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{HandshakeTimeout: 2 * time.Second}, &fakeBackend{})
	junk := make([]byte, 4096)
	_, _ = rand.Read(junk)
	cases := map[string]func() *client{
		"random bytes on the TLS port": func() *client {
			c := dialFrom(t, tlsAddr, "127.0.0.2")
			c.send(string(junk))
			return c
		},
		"SMTP on the TLS port": func() *client {
			c := dialFrom(t, tlsAddr, "127.0.0.2")
			c.send("EHLO client.test\r\n")
			return c
		},
		"a TLS record header promising more than it sends": func() *client {
			c := dialFrom(t, tlsAddr, "127.0.0.2")
			c.send("\x16\x03\x01\xff\xff\x01")
			return c
		},
		"random bytes after STARTTLS": func() *client {
			c := dialFrom(t, addr, "127.0.0.2")
			c.expect("220 ")
			c.ehlo()
			c.send("STARTTLS\r\n")
			c.expect("220 ")
			c.send(string(junk))
			return c
		},
	}
	for name, open := range cases {
		c := open()
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c.nc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection still open after the handshake timeout", name)
		}
		if bytes.Contains(b, []byte("220 ")) && !strings.HasPrefix(name, "random bytes after") {
			t.Errorf("%s: got a greeting %q", name, b)
		}
	}
	if st := srv.Stats(); st.TLSFailures < int64(len(cases)) {
		t.Errorf("TLS failures counted: %d, want %d", st.TLSFailures, len(cases))
	}
	ok := dialTLS(t, tlsAddr, "127.0.0.2", clientTLS(roots))
	ok.expect("220 ")
}

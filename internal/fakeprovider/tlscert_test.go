package fakeprovider_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

func clientTLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func TestSelfSignedTLS_verifiesForLoopbackNames(t *testing.T) {
	t.Parallel()
	server, roots, pemCA, err := fakeprovider.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	leaf := server.Certificates[0].Leaf
	for _, name := range []string{"127.0.0.1", "localhost", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify %s: %v", name, err)
		}
	}
	block, _ := pem.Decode(pemCA)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("pemCA %q", pemCA)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		t.Errorf("CA: %v %v", ca, err)
	}
}

func TestSelfSignedTLS_customHosts(t *testing.T) {
	t.Parallel()
	server, roots, _, err := fakeprovider.SelfSignedTLS("smtp.example.test", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	leaf := server.Certificates[0].Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "smtp.example.test"}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err == nil {
		t.Error("localhost verified for a custom host list")
	}
}

func TestSMTP_startTLS(t *testing.T) {
	t.Parallel()
	server, roots, _, err := fakeprovider.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, fakeprovider.Options{TLSConfig: server})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.ehlo()
	c.do("STARTTLS now", 501, "5.5.4")
	c.startTLS(clientTLS(roots))
	c.do("MAIL FROM:<a@example.com>", 503, "5.5.1 EHLO/HELO first.") // RFC 3207 §4.2: state is reset
	c.login("a@example.com", tok)
	c.do("STARTTLS", 503, "5.5.1")
	if got := c.send("a@example.com", []string{"r@example.net"}, "hello\r\n.\r\n"); !strings.HasPrefix(got, "250 2.0.0 OK") {
		t.Errorf("after dot: %q", got)
	}
}

func TestSMTP_startTLSDiscardsPipelinedPlaintext(t *testing.T) {
	t.Parallel()
	server, roots, _, err := fakeprovider.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, fakeprovider.Options{TLSConfig: server})
	c := dial(t, p)
	c.ehlo()
	// Injected after STARTTLS in the same packet (CVE-2011-0411 style):
	// the NOOP must not be answered inside TLS.
	c.write("STARTTLS\r\nNOOP\r\n")
	c.expect(220, "2.0.0")
	tc := tls.Client(c.conn, clientTLS(roots))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	// Had the plaintext NOOP been kept, its 250 would come first.
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.do("HELP", 214, "2.0.0")
}

func TestSMTP_noTLSWithoutConfig(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{NoPipelining: true})
	c := dial(t, p)
	ext := strings.Join(c.ehlo(), "\n")
	if strings.Contains(ext, "STARTTLS") || strings.Contains(ext, "PIPELINING") {
		t.Errorf("EHLO: %q", ext)
	}
	c.do("STARTTLS", 502, "5.5.1")
}

func TestSMTP_implicitTLS(t *testing.T) {
	t.Parallel()
	server, roots, _, err := fakeprovider.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, fakeprovider.Options{TLSConfig: server, ImplicitTLS: true, RequireTLSForAuth: true})
	tok := accessToken(t, p, "a@example.com")
	conn, err := tls.Dial("tcp", p.SMTPAddr(), clientTLS(roots))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.expect(220, "fake.provider ESMTP")
	ext := strings.Join(c.ehlo(), "\n")
	if strings.Contains(ext, "STARTTLS") || !strings.Contains(ext, "AUTH XOAUTH2") {
		t.Errorf("EHLO: %q", ext)
	}
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 235, "2.7.0")
}

func TestStart_implicitTLSNeedsConfig(t *testing.T) {
	t.Parallel()
	if p, err := fakeprovider.Start(fakeprovider.Options{ImplicitTLS: true}); err == nil {
		p.Close()
		t.Fatal("Start succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if p, err := fakeprovider.Start(fakeprovider.Options{SMTPAddr: ln.Addr().String()}); err == nil {
		p.Close()
		t.Fatal("Start on a busy port succeeded")
	}
}

func TestSMTP_withoutEightBitMIMEOrSMTPUTF8(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    fakeprovider.Options
		absent  string
		refused string // MAIL parameter answered 555 5.5.4
	}{
		{"no 8BITMIME", fakeprovider.Options{No8BITMIME: true}, "8BITMIME", "BODY=8BITMIME"},
		{"no SMTPUTF8", fakeprovider.Options{NoSMTPUTF8: true}, "SMTPUTF8", "SMTPUTF8"},
		{"neither, nor PIPELINING", fakeprovider.Options{No8BITMIME: true, NoSMTPUTF8: true, NoPipelining: true}, "SMTPUTF8", "BODY=7BIT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, tc.opts)
			tok := accessToken(t, p, "a@example.com")
			c := dial(t, p)
			// readReply in ehlo fails unless only the last line has "250 ".
			if ext := strings.Join(c.ehlo(), "\n"); strings.Contains(ext, tc.absent) {
				t.Errorf("EHLO offers %s: %q", tc.absent, ext)
			}
			c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 235, "2.7.0")
			c.do("MAIL FROM:<a@example.com> "+tc.refused, 555, "5.5.4")
			c.do("MAIL FROM:<a@example.com>", 250, "")
		})
	}
}

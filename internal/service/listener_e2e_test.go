package service_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/proxyproto"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// dialTLS connects to the implicit TLS listener from src, trusting roots,
// and reads the greeting.
func (e *env) dialTLS(t *testing.T, src string, roots *x509.CertPool) *conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := tls.DialWithDialer(&d, "tcp", e.tlsAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &conn{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220 ")
	return c
}

func (c *conn) message(from, rcpt, final string) {
	c.t.Helper()
	c.send("MAIL FROM:<" + from + ">\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: listener\r\n\r\nbody\r\n.\r\n")
	c.expect(final)
}

// TestListener_TLS: STARTTLS and implicit TLS carry mail end to end; an
// untrusted client gets AUTH only under TLS.
func TestListener_TLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, _ []map[string]any) {
		cfg["global"].(map[string]any)["smtp"].(map[string]any)["trusted_networks"] = []string{"127.0.0.1/32"}
	}})
	plain := e.dialFrom(t, "127.0.0.2") // dialFrom runs STARTTLS when AUTH is not offered
	if _, ok := plain.nc.(*tls.Conn); !ok {
		t.Fatal("an untrusted client was offered AUTH in clear")
	}
	plain.authPlain(userA, password, "235")
	plain.message(userA, "starttls@example.net", "250 2.0.0")

	implicit := e.dialTLS(t, "127.0.0.2", e.roots)
	if kw := implicit.ehlo(); strings.Contains(kw, "STARTTLS") || !strings.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO on the TLS port: %q", kw)
	}
	implicit.authPlain(userA, password, "235")
	implicit.message(userA, "implicit@example.net", "250 2.0.0")
	if n := len(e.fp.Messages()); n != 2 {
		t.Errorf("provider has %d messages, want 2", n)
	}

	old := tls.Config{RootCAs: e.roots, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10, ServerName: "127.0.0.1"}
	if nc, err := tls.Dial("tcp", e.tlsAddr, &old); err == nil {
		nc.Close()
		t.Error("TLS 1.1 accepted")
	}
}

// TestListener_reloadTLS: ReloadTLS swaps the certificate for new
// handshakes; sessions already open carry on.
func TestListener_reloadTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	before := e.dialTLS(t, "", e.roots)
	before.ehlo()

	tlsCfg, roots2, _, err := fakeprovider.SelfSignedTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	writeKeyPair(t, e.dir, tlsCfg.Certificates[0]) // same file names as the env's
	if err := e.svc.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	before.authPlain(userA, password, "235")
	before.message(userA, "before@example.net", "250 2.0.0")

	if nc, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}); err == nil {
		nc.Close()
		t.Error("a new connection still got the old certificate")
	}
	after := e.dialTLS(t, "", roots2)
	after.ehlo()
	after.authPlain(userA, password, "235")

	// A broken key file is refused and the current certificate stays.
	if err := os.WriteFile(filepath.Join(e.dir, "listener-key.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ReloadTLS(); err == nil {
		t.Error("ReloadTLS accepted a broken key")
	}
	e.dialTLS(t, "", roots2)
}

// TestListener_proxyProtocolAndLimits: behind a load balancer the PROXY
// header's address decides trust and counts for the per-address limit,
// as config.json says.
func TestListener_proxyProtocolAndLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, _ []map[string]any) {
		smtp := cfg["global"].(map[string]any)["smtp"].(map[string]any)
		smtp["trusted_networks"] = []string{"192.0.2.3/32"}
		smtp["proxy_protocol"] = true
		smtp["proxy_protocol_networks"] = []string{"127.0.0.1/32"}
		smtp["max_connections_per_ip"] = 2
	}})
	via := func(src string) *conn {
		t.Helper()
		nc, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		h := proxyproto.Header{Source: netip.MustParseAddrPort(src), Dest: netip.MustParseAddrPort(e.addr)}
		if _, err := nc.Write(h.AppendV1(nil)); err != nil {
			t.Fatal(err)
		}
		return &conn{t: t, nc: nc, br: bufio.NewReader(nc)}
	}
	trusted := via("192.0.2.3:1000")
	trusted.expect("220 ")
	trusted.ehlo()
	trusted.authPlain(userNoPW, "anything", "235") // no password needed from a trusted network
	trusted.message(userNoPW, "proxied@example.net", "250 2.0.0")

	outsider := via("198.51.100.9:1000")
	outsider.expect("220 ")
	if kw := outsider.ehlo(); strings.Contains(kw, "AUTH") {
		t.Errorf("AUTH offered in clear to an untrusted client behind the balancer: %q", kw)
	}
	via("198.51.100.9:1001").expect("220 ")
	via("198.51.100.9:1002").expect("421 4.7.0")
	via("198.51.100.10:1000").expect("220 ")
	if st := e.svc.Server().Stats(); st.RefusedPerIP != 1 || st.ProxiedClients < 4 {
		t.Errorf("server stats %+v", st)
	}
}

// TestListener_authFailureLimit: max_auth_failures_per_ip from config.json
// stops a guesser, and its log lines carry no password.
func TestListener_authFailureLimit(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnv(t, envOptions{
		logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		edit: func(cfg map[string]any, _ []map[string]any) {
			smtp := cfg["global"].(map[string]any)["smtp"].(map[string]any)
			smtp["trusted_networks"] = []string{"127.0.0.1/32"}
			smtp["max_auth_failures_per_ip"] = 2
		},
	})
	c := e.dialTLS(t, "127.0.0.2", e.roots)
	c.ehlo()
	c.authPlain(userA, "guess-1", "535")
	c.authPlain(userA, "guess-2", "535")
	c.authPlain(userA, password, "421 4.7.0")
	// The address is refused at once now, before any TLS handshake.
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if l, err := readFinalLine(bufio.NewReader(nc)); err != nil || !strings.HasPrefix(l, "421 4.7.0") {
		t.Errorf("greeting to an address over its limit: %q, %v; want 421 4.7.0", l, err)
	}
	c3 := e.dialTLS(t, "127.0.0.3", e.roots)
	c3.ehlo()
	c3.authPlain(userA, password, "235")
	for _, s := range []string{"guess-1", "guess-2", password} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("log contains the password %q", s)
		}
	}
}

// TestListener_tlsPortNeedsCertificate: --tls-port without a certificate
// stops the start with a clear error.
func TestListener_tlsPortNeedsCertificate(t *testing.T) {
	t.Parallel()
	_, err := service.New(service.Options{
		Load:    config.LoadOptions{AccountsPath: oneAccountFile(t), SearchDirs: []string{}},
		Listen:  "127.0.0.1:0",
		TLSPort: -1,
		DryRun:  true,
	})
	if err == nil || !strings.Contains(err.Error(), "tls_cert_file") {
		t.Fatalf("err = %v, want one naming tls_cert_file", err)
	}
}

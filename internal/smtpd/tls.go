package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// KeyPair is the listener's certificate and key, loaded from PEM files and
// replaceable while the server runs: Reload reads the files again and
// swaps the certificate atomically, so handshakes after it use the new
// one and established connections are untouched. Safe for concurrent use.
type KeyPair struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// LoadKeyPair reads a PEM certificate chain and its private key.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	kp := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.Reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Reload reads the files again. On error the current certificate stays.
func (kp *KeyPair) Reload() error {
	c, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		// The error names the files, never key material.
		return fmt.Errorf("load listener certificate %s / key %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert.Store(&c)
	return nil
}

// GetCertificate serves tls.Config.GetCertificate.
func (kp *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return kp.cert.Load(), nil
}

// TLSConfig returns the listener's TLS settings: TLS 1.2 or later, the
// certificate from kp at each handshake.
func (kp *KeyPair) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: kp.GetCertificate,
	}
}

// prefixConn is a net.Conn whose first reads return bytes already taken
// off the connection (after a PROXY header, the start of a ClientHello).
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

var errTLSHandshake = errors.New("tls handshake")

// handshake runs the server side of a TLS handshake over under within
// HandshakeTimeout and makes the TLS connection the one the session
// reads and writes. Anything buffered before it is discarded: plaintext
// pipelined after STARTTLS must not be taken as sent under TLS (RFC 3207
// §4.2, CVE-2011-0411); for implicit TLS the caller puts the buffered
// bytes into under.
func (c *conn) handshake(ctx context.Context, under net.Conn) error {
	cfg := &c.srv.cfg
	tc := tls.Server(under, cfg.TLSConfig)
	_ = c.raw.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		c.srv.stats.tlsFailures.Add(1)
		c.log.Info("tls handshake failed", "err", err)
		return fmt.Errorf("%w: %w", errTLSHandshake, err)
	}
	st := tc.ConnectionState()
	c.log.Debug("tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	c.nc = tc
	c.br.Reset(tc)
	c.info.TLS = true
	return nil
}

// startTLS implements STARTTLS (RFC 3207). All state learnt before it is
// forgotten (§4.2): the EHLO, the AUTH, any transaction.
func (c *conn) startTLS(ctx context.Context, arg string) {
	switch {
	case c.srv.cfg.TLSConfig == nil:
		c.replyBad(replyNoTLS)
		return
	case c.info.TLS:
		c.replyBad(replyTLSActive)
		return
	case arg != "":
		c.replyBad(replyStartTLSSyntax)
		return
	case c.txn != nil:
		c.replyBad(replyStartTLSInTxn)
		return
	}
	c.reply(replyReadyTLS)
	if err := c.flush(); err != nil {
		c.quit = true
		return
	}
	if n := c.br.Buffered(); n > 0 {
		c.log.Info("discarding data pipelined after STARTTLS", "bytes", n)
	}
	if err := c.handshake(ctx, c.raw); err != nil {
		c.quit = true
		return
	}
	c.srv.stats.startTLS.Add(1)
	c.ehlo, c.sender, c.info.Helo = false, nil, ""
	c.log = c.baseLog
}

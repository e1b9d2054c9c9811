package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Dial connects to cfg.Addr and brings the session to the point where AUTH
// can follow: TCP connect (bound to cfg.LocalAddr), TLS first in implicit
// mode, the 220 greeting, EHLO (HELO only when EHLO gets a 5xx), and in
// starttls mode STARTTLS, which must be offered, then EHLO again (RFC 3207
// §4.2). Any failure closes the connection and returns an *Error.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w: address %q: %v", ErrUsage, cfg.Addr, err)}
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w: address %q: bad port", ErrUsage, cfg.Addr)}
	}
	mode := cfg.TLS
	switch mode {
	case "":
		mode = TLSStartTLS
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !isLoopbackHost(host) {
			return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w (host %q)", ErrCleartext, host)}
		}
	default:
		return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w: tls mode %q", ErrUsage, cfg.TLS)}
	}
	helo := cfg.HeloName
	if helo == "" {
		helo = DefaultHeloName
	}
	if strings.ContainsAny(helo, " \r\n") {
		return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w: helo name %q", ErrUsage, helo)}
	}
	commandTimeout, dataTimeout := cfg.CommandTimeout, cfg.DataTimeout
	if commandTimeout <= 0 {
		commandTimeout = DefaultCommandTimeout
	}
	if dataTimeout <= 0 {
		dataTimeout = DefaultDataTimeout
	}

	dial := cfg.Dial
	if dial != nil && cfg.LocalAddr.IsValid() {
		// A custom dialer would connect from wherever it likes; sending
		// from another address than the account's is never acceptable
		// (COMPAT.md: no fallback to another source address).
		return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w: source address binding needs the built-in dialer", ErrUsage)}
	}
	if dial == nil {
		d := &net.Dialer{Timeout: commandTimeout}
		if cfg.LocalAddr.IsValid() {
			a := cfg.LocalAddr.Unmap()
			d.LocalAddr = &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}
		}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, &Error{Stage: "connect", Err: err}
	}
	// "localhost" could resolve anywhere; check where we actually landed.
	if mode == TLSNone {
		if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
			conn.Close()
			return nil, &Error{Stage: "connect", Err: fmt.Errorf("%w (connected to %s)", ErrCleartext, ta)}
		}
	}

	c := newClient(conn, host, port, commandTimeout, dataTimeout)
	c.noChunking = cfg.NoChunking
	if err := c.open(ctx, mode, tlsConfig(cfg.TLSConfig, host), helo); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// open runs the dialogue from TLS/greeting to the last EHLO.
func (c *Client) open(ctx context.Context, mode TLSMode, tc *tls.Config, helo string) error {
	k, err := c.begin(ctx, "connect")
	if err != nil {
		return err
	}
	defer k.end()

	if mode == TLSImplicit {
		if err := c.handshakeTLS(&k, tc); err != nil {
			return err
		}
	}
	if err := k.arm(c.commandTimeout); err != nil {
		return k.fail("greeting", err)
	}
	r, err := c.readReply()
	if err != nil {
		return k.fail("greeting", err)
	}
	if r.Code != 220 {
		return &Error{Stage: "greeting", Reply: &r}
	}
	if err := c.hello(&k, helo); err != nil {
		return err
	}
	if mode != TLSStartTLS {
		return nil
	}

	if _, ok := c.ext["STARTTLS"]; !ok {
		return &Error{Stage: "starttls", Err: ErrNoStartTLS}
	}
	r, err = k.cmd("STARTTLS", "")
	if err != nil {
		return k.fail("starttls", err)
	}
	if r.Code != 220 {
		return &Error{Stage: "starttls", Reply: &r}
	}
	// Anything already buffered was sent before TLS and would be taken as
	// if it came through it (RFC 3207 §6; the CVE-2011-0411 injection).
	if c.br.Buffered() > 0 {
		return k.fail("starttls", fmt.Errorf("%w: data after the STARTTLS reply", ErrMalformedReply))
	}
	if err := c.handshakeTLS(&k, tc); err != nil {
		return err
	}
	// RFC 3207 §4.2: forget what was learned before TLS, ask again.
	return c.hello(&k, helo)
}

// handshakeTLS puts TLS over the TCP connection.
func (c *Client) handshakeTLS(k *call, tc *tls.Config) error {
	if err := k.arm(c.commandTimeout); err != nil {
		return k.fail("tls", err)
	}
	conn := tls.Client(c.raw, tc)
	// Handshake, not HandshakeContext: the deadline and abort already
	// cover the context, without an extra goroutine.
	if err := conn.Handshake(); err != nil {
		return k.fail("tls", err)
	}
	c.conn = conn
	c.br.Reset(conn)
	c.bw.Reset(conn)
	c.dw.Reset(c.bw)
	return nil
}

// hello sends EHLO, or HELO when the server refuses EHLO with a 5xx (RFC
// 5321 §3.2), and records the extensions.
func (c *Client) hello(k *call, name string) error {
	r, err := k.cmd("EHLO", name)
	if err != nil {
		return k.fail("ehlo", err)
	}
	if r.Permanent() {
		r, err = k.cmd("HELO", name)
		if err != nil {
			return k.fail("ehlo", err)
		}
		if r.Code != 250 {
			return &Error{Stage: "ehlo", Reply: &r}
		}
		c.setExtensions(reply.Reply{})
		return nil
	}
	if r.Code != 250 {
		return &Error{Stage: "ehlo", Reply: &r}
	}
	c.setExtensions(r)
	return nil
}

// setExtensions reads an EHLO reply: the first line greets, every other
// line is "KEYWORD [params]" (RFC 5321 §4.1.1.1).
func (c *Client) setExtensions(r reply.Reply) {
	c.ext = make(map[string]string, len(r.Lines))
	c.maxSize = 0
	for i, l := range r.Lines {
		if i == 0 {
			continue
		}
		kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw == "" {
			continue
		}
		c.ext[strings.ToUpper(kw)] = strings.TrimSpace(param)
	}
	_, c.pipelining = c.ext["PIPELINING"]
	if s, ok := c.ext["SIZE"]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			c.maxSize = n
		}
	}
}

// tlsConfig clones base (or starts empty), names the server and requires
// TLS 1.2 or later.
func tlsConfig(base *tls.Config, host string) *tls.Config {
	var tc *tls.Config
	if base != nil {
		tc = base.Clone()
	} else {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	return tc
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

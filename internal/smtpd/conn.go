package smtpd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/proxyproto"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Replies made here for local decisions.
var (
	replyLineTooLong    = reply.New(500, "5.5.2", "Line too long")
	replyNUL            = reply.New(501, "5.5.2", "NUL byte in command")
	replyEightBit       = reply.New(501, "5.5.2", "8-bit data in command")
	replyBadUTF8        = reply.New(501, "5.5.2", "Invalid UTF-8 in command")
	replyUnknown        = reply.New(500, "5.5.2", "Syntax error, command unrecognized")
	replyTooManyErrors  = reply.New(421, "4.7.0", "Too many errors, closing")
	replyNoTLS          = reply.New(502, "5.5.1", "STARTTLS not available")
	replyTLSActive      = reply.New(503, "5.5.1", "TLS already active")
	replyStartTLSSyntax = reply.New(501, "5.5.4", "Syntax: STARTTLS")
	replyStartTLSInTxn  = reply.New(503, "5.5.1", "STARTTLS not allowed during a mail transaction")
	replyReadyTLS       = reply.New(220, "2.0.0", "Ready to start TLS")
)

// conn is one client connection. Only its serve goroutine touches its
// fields, except raw and stopping, which Shutdown uses.
type conn struct {
	srv     *Server
	ctx     context.Context // the connection's context, ended when serve returns
	raw     net.Conn        // the TCP connection: deadlines and Close act here
	nc      net.Conn        // raw, or the TLS connection over it
	br      *bufio.Reader
	bw      *bufio.Writer
	info    ConnInfo
	log     *slog.Logger
	baseLog *slog.Logger // log without the account, for after STARTTLS

	implicitTLS bool         // ServeTLS: handshake before the greeting
	trusted     bool         // the client address is in Config.Trusted
	ipKey       netip.Prefix // the client's unit for per-address limits
	countedIP   bool         // the connection holds a place in Server.perIP
	// authBy is when the connection must have completed AUTH
	// (Config.AuthTimeout); zero for no limit.
	authBy time.Time

	stopping atomic.Bool
	idle     atomic.Bool // waiting for a command between transactions

	ehlo   bool
	sender Sender
	txn    Txn
	utf8   bool // the current MAIL had SMTPUTF8
	rcpts  int  // RCPTs sent in this transaction (accepted or pending)
	okRcpt int  // RCPTs the upstream accepted
	bad    int  // invalid commands so far
	// mailRefused: the last MAIL was refused and no other command came
	// since but RCPTs. A pipelining client sends RCPT and DATA without
	// waiting for MAIL's reply (RFC 2920 §3.1), so their "need MAIL" 503s
	// are not its errors, up to a transaction's worth (excused).
	mailRefused bool
	excused     int // sequence errors excused since mailRefused was set

	batch    []Command
	batchIdx []int // position of each batch command among pending replies
	pending  []reply.Reply
	line     []byte // long-line accumulator
	quit     bool
	werr     error // the first failed write: the client is gone or not reading

	// rawConn waits for the client without reading (idle.go); nil where
	// buffers are kept while waiting (TLS, not a socket, not Linux).
	rawConn  syscall.RawConn
	readable func(fd uintptr) bool // c.peekReadable, bound once
}

var errLineTooLong = errors.New("line too long")

func newConn(s *Server, nc net.Conn, id string, implicitTLS bool) *conn {
	c := &conn{
		srv:         s,
		raw:         nc,
		nc:          nc,
		implicitTLS: implicitTLS,
		info: ConnInfo{
			ID:     id,
			Remote: addrPort(nc.RemoteAddr()),
		},
	}
	c.takeBuffers()
	c.initIdle()
	c.log = s.log.With("conn_id", id, "remote", c.info.Remote.String())
	return c
}

// deadlineWriter writes to the session's current connection, each write
// bounded by CommandTimeout: a client that stops reading cannot hold a
// goroutine forever.
type deadlineWriter struct{ c *conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.raw.SetWriteDeadline(time.Now().Add(w.c.srv.cfg.CommandTimeout))
	n, err := w.c.nc.Write(p)
	if err != nil && w.c.werr == nil {
		w.c.werr = err
	}
	return n, err
}

func (c *conn) shutdown() {
	c.stopping.Store(true)
	if c.idle.Load() {
		// Wake the blocked read; the loop answers 421 and closes.
		_ = c.raw.SetReadDeadline(time.Now())
	}
}

func (c *conn) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.raw.SetDeadline(time.Now()) })
	defer stop()
	defer c.giveBuffers()
	defer c.raw.Close()
	defer c.recoverPanic()
	defer c.endTxn()
	c.ctx = ctx

	if !c.start(ctx) {
		return
	}
	if c.countedIP {
		defer c.srv.perIP.release(c.ipKey)
	}
	if d := c.srv.cfg.AuthTimeout; d > 0 {
		c.authBy = time.Now().Add(d)
	}
	c.srv.stats.accepted.Add(1)
	c.log.Debug("connect", "tls", c.info.TLS, "trusted", c.trusted)
	c.reply(reply.New(220, "", c.srv.cfg.Hostname+" ESMTP xoauth2-proxy ready"))
	for !c.quit {
		if c.stopping.Load() && c.txn == nil {
			c.reply(reply.New(421, "4.3.2", c.srv.cfg.Hostname+" shutting down"))
			_ = c.flush()
			return
		}
		line, err := c.readLine(c.srv.cfg.MaxAuthBytes)
		if err == errLineTooLong {
			c.replyBad(replyLineTooLong)
		} else if err != nil {
			c.readFailed(err)
			return
		} else {
			c.command(ctx, line)
		}
		if c.werr != nil {
			if isTimeout(c.werr) {
				c.srv.stats.timeouts.Add(1)
				c.log.Info("closing: client does not read its replies")
			}
			return
		}
		if c.bad >= c.srv.cfg.MaxBadCommands {
			c.flushBatch(ctx)
			c.srv.stats.tooManyErrors.Add(1)
			c.log.Info("closing: too many errors", "errors", c.bad)
			c.reply(replyTooManyErrors)
			_ = c.flush()
			return
		}
	}
	c.flushBatch(ctx)
	_ = c.flush()
}

// readFailed ends the session after a failed read: 421 on a timeout or a
// shutdown, silence when the client is gone.
func (c *conn) readFailed(err error) {
	switch {
	case c.stopping.Load() && isTimeout(err):
		c.reply(reply.New(421, "4.3.2", c.srv.cfg.Hostname+" shutting down"))
	case isTimeout(err) && c.authExpired():
		c.srv.stats.authTimeouts.Add(1)
		c.log.Info("closing: no AUTH in time", "limit", c.srv.cfg.AuthTimeout)
		c.reply(reply.New(421, "4.7.0", c.srv.cfg.Hostname+" authentication required in time, closing"))
	case isTimeout(err):
		c.srv.stats.timeouts.Add(1)
		c.log.Info("closing: client timeout")
		c.reply(reply.New(421, "4.4.2", c.srv.cfg.Hostname+" timeout, closing"))
	case err != io.EOF:
		c.log.Debug("read", "err", err)
	}
	_ = c.flush()
}

// recoverPanic keeps one connection's bug from ending the process: the
// connection is closed, the stack logged. Replies and logs never carry
// secrets (secret.String redacts itself), so neither does the stack.
func (c *conn) recoverPanic() {
	if v := recover(); v != nil {
		c.srv.stats.panics.Add(1)
		c.srv.cfg.LogThrottle.Error(c.log, logthrottle.Key{Reason: "panic"}, "panic serving connection", "panic", v, "stack", string(debug.Stack()))
	}
}

// start runs what comes before the greeting: the PROXY header from a
// load balancer, the per-address connection cap, and the implicit TLS
// handshake. It reports false when the connection must be closed.
func (c *conn) start(ctx context.Context) bool {
	cfg := &c.srv.cfg
	peer := c.info.Remote
	if len(cfg.ProxyProtocol) > 0 && inNetworks(peer.Addr(), cfg.ProxyProtocol) {
		_ = c.raw.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
		h, err := proxyproto.Read(c.br)
		if err != nil {
			c.srv.stats.proxyFailures.Add(1)
			c.srv.warn(c.log, "proxy_header", "closing: no valid PROXY header from a load balancer", "err", err)
			return false
		}
		if !h.Local {
			c.srv.stats.proxied.Add(1)
			c.info.Remote, c.info.Proxy = h.Source, peer
			c.log = c.srv.log.With("conn_id", c.info.ID, "remote", h.Source.String(), "proxy", peer.String())
		}
	}
	c.baseLog = c.log
	c.trusted = inNetworks(c.info.Remote.Addr(), cfg.Trusted)
	c.ipKey = ipKey(c.info.Remote.Addr())
	// Trusted networks have no per-address cap (issue 16, finding 5):
	// the local MTA is one address with thousands of sessions.
	c.countedIP = !c.trusted
	// An address outside Trusted that has used up its AUTH failures gets
	// nothing more until its window ends: not the greeting, not the TLS
	// handshake it would need to guess again, which would cost more than
	// the refusal of its AUTH.
	if !c.trusted && c.srv.auth.blockedIP(c.ipKey, c.authLimits()) {
		c.srv.stats.refusedAuthBlocked.Add(1)
		c.srv.warn(c.log, "auth_limit_per_address_connect", "connection refused: too many failed AUTH from this address")
		if !c.implicitTLS {
			c.reply(reply.New(421, "4.7.0", cfg.Hostname+" too many failed authentications from your address, try again later"))
			_ = c.flush()
		}
		return false
	}
	if c.countedIP && !c.srv.perIP.acquire(c.ipKey, cfg.MaxConnectionsPerIP) {
		c.srv.stats.refusedPerIP.Add(1)
		c.srv.warn(c.log, "connection_limit_per_address", "connection refused: per-address limit", "limit", cfg.MaxConnectionsPerIP)
		if !c.implicitTLS {
			c.reply(reply.New(421, "4.7.0", cfg.Hostname+" too many connections from your address, try again later"))
			_ = c.flush()
		}
		return false
	}
	if c.implicitTLS {
		// Bytes that came with the PROXY header belong to the handshake.
		pre, _ := c.br.Peek(c.br.Buffered())
		under := &prefixConn{Conn: c.raw, pre: append([]byte(nil), pre...)}
		if err := c.handshake(ctx, under); err != nil {
			if c.countedIP {
				c.srv.perIP.release(c.ipKey)
			}
			return false
		}
		c.srv.stats.implicitTLS.Add(1)
	}
	return true
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// authExpired reports that the connection has had its AuthTimeout
// without completing AUTH.
func (c *conn) authExpired() bool {
	return c.sender == nil && !c.authBy.IsZero() && !time.Now().Before(c.authBy)
}

// flush writes the queued replies.
func (c *conn) flush() error { return c.bw.Flush() }

// readLine returns the next line without its line end. Before blocking it
// flushes pending replies: replies to a pipelined group go out together
// (RFC 2920 §3.2). Lines over max are consumed and reported. The whole
// line must arrive within CommandTimeout, however slowly it trickles in.
func (c *conn) readLine(max int) (string, error) {
	if c.br.Buffered() == 0 {
		c.flushBatch(c.ctx)
		if err := c.flush(); err != nil {
			return "", err
		}
		c.idle.Store(c.txn == nil)
		deadline := time.Now().Add(c.srv.cfg.CommandTimeout)
		if c.sender == nil && !c.authBy.IsZero() && c.authBy.Before(deadline) {
			deadline = c.authBy
		}
		_ = c.raw.SetReadDeadline(deadline)
		if c.stopping.Load() && c.txn == nil {
			_ = c.raw.SetReadDeadline(time.Now())
		}
		if c.txn == nil { // between messages: mid-message the client is about to send more
			if err := c.waitIdle(); err != nil {
				return "", err
			}
		}
	}
	c.line = c.line[:0]
	tooLong := false
	for {
		frag, err := c.br.ReadSlice('\n')
		c.idle.Store(false)
		if err == bufio.ErrBufferFull {
			if len(c.line)+len(frag) > max {
				tooLong = true
				c.line = c.line[:0]
			} else {
				c.line = append(c.line, frag...)
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if tooLong || len(c.line)+len(frag) > max+2 {
			return "", errLineTooLong
		}
		var s string
		if len(c.line) > 0 {
			c.line = append(c.line, frag...)
			s = string(c.line)
		} else {
			s = string(frag)
		}
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
		return s, nil
	}
}

// reply queues r for the client. Replies are flushed before the next
// blocking read, so a pipelined group's replies leave in one write.
func (c *conn) reply(r reply.Reply) {
	buf := c.bw.AvailableBuffer()
	_, _ = c.bw.Write(r.Append(buf))
}

func (c *conn) replyBad(r reply.Reply) {
	c.bad++
	c.flushBatch(c.ctx)
	c.reply(r)
}

func (c *conn) command(ctx context.Context, line string) {
	if strings.IndexByte(line, 0) >= 0 {
		c.replyBad(replyNUL)
		return
	}
	verb, arg := splitVerb(line)
	c.srv.stats.countCommand(verb)
	if verb != "AUTH" && len(line) > c.srv.cfg.MaxCommandBytes {
		c.replyBad(replyLineTooLong)
		return
	}
	if !isASCII(verb) {
		c.replyBad(replyEightBit)
		return
	}
	switch verb {
	case "MAIL", "RCPT", "DATA":
		c.envelope(ctx, verb, arg)
		return
	}
	// Any other command ends the pipelined envelope group first.
	c.flushBatch(ctx)
	c.mailRefused = false
	if !isASCII(arg) {
		// Only MAIL and RCPT may carry UTF-8 (RFC 6531).
		c.replyBad(replyEightBit)
		return
	}
	switch verb {
	case "EHLO", "HELO":
		c.hello(verb, arg)
	case "AUTH":
		c.auth(ctx, arg)
	case "RSET":
		c.idleBeforeAuth()
		c.endTxn()
		c.reply(reply.New(250, "2.0.0", "OK"))
	case "NOOP":
		c.idleBeforeAuth()
		c.reply(reply.New(250, "2.0.0", "OK"))
	case "QUIT":
		c.reply(reply.New(221, "2.0.0", c.srv.cfg.Hostname+" closing connection"))
		c.quit = true
	case "VRFY":
		c.reply(reply.New(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"))
	case "STARTTLS":
		c.startTLS(ctx, arg)
	case "BDAT":
		c.replyBad(reply.New(502, "5.5.1", "CHUNKING not offered"))
	case "HELP":
		c.idleBeforeAuth()
		c.reply(reply.New(214, "2.0.0", "See RFC 5321"))
	default:
		c.replyBad(replyUnknown)
	}
}

// idleBeforeAuth counts a command that does nothing (NOOP, RSET, HELP)
// before AUTH toward MaxBadCommands: a client that only keeps the
// connection open holds a place other clients need (issue 16, finding 4).
func (c *conn) idleBeforeAuth() {
	if c.sender == nil {
		c.bad++
	}
}

// authOffered reports whether AUTH may be used now: under TLS, or from a
// trusted network (the issue "Hostile input": no password in clear text
// across a network).
func (c *conn) authOffered() bool { return c.info.TLS || c.trusted }

func (c *conn) hello(verb, arg string) {
	name := strings.TrimSpace(arg)
	if name == "" {
		c.replyBad(reply.New(501, "5.5.4", "Syntax: "+verb+" hostname"))
		return
	}
	c.endTxn()
	c.ehlo = true
	c.info.Helo = name
	cfg := &c.srv.cfg
	if verb == "HELO" {
		c.reply(reply.New(250, "", cfg.Hostname))
		return
	}
	lines := []string{
		cfg.Hostname + " Hello " + name,
		"PIPELINING",
		"8BITMIME",
		"SMTPUTF8",
		"ENHANCEDSTATUSCODES",
		"SIZE " + itoa(cfg.MaxMessageBytes),
	}
	if cfg.TLSConfig != nil && !c.info.TLS {
		lines = append(lines, "STARTTLS")
	}
	if c.sender == nil && c.authOffered() {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	c.reply(reply.Reply{Code: 250, Lines: lines})
}

// envelope handles MAIL, RCPT and DATA. Valid commands are collected in a
// batch while the client has more input buffered (it pipelined), and the
// batch goes to the Txn at once; local refusals are interleaved in order.
func (c *conn) envelope(ctx context.Context, verb, arg string) {
	if verb == "MAIL" {
		c.mailRefused, c.excused = true, 0 // until the transaction starts
	}
	if !utf8.ValidString(arg) {
		c.replyBadLocal(ctx, replyBadUTF8)
		return
	}
	// Sequence errors count toward MaxBadCommands, as in Postfix's
	// smtpd_hard_error_limit, except those that follow from a refused
	// MAIL: a client that loops on them goes no further.
	switch verb {
	case "MAIL":
		if c.sender == nil {
			c.replyBadLocal(ctx, reply.New(530, "5.7.0", "Authentication required"))
			return
		}
		if c.txn != nil {
			c.mailRefused = false // MAIL was accepted; this one is the error
			c.replyBadLocal(ctx, reply.New(503, "5.5.1", "Nested MAIL command"))
			return
		}
		cmd, opts, rp := parseMail(arg, c.srv.cfg.MaxMessageBytes)
		if rp != nil {
			c.replyBadLocal(ctx, *rp)
			return
		}
		txn, err := c.sender.Begin(ctx, &c.info)
		if err != nil {
			c.replyLocal(ctx, reply.FromError(err, c.info.ID))
			return
		}
		c.txn, c.utf8, c.rcpts, c.okRcpt = txn, opts.smtpUTF8, 0, 0
		c.mailRefused = false
		c.add(cmd)
	case "RCPT":
		if c.txn == nil {
			c.replySequence(ctx, reply.New(503, "5.5.1", "Need MAIL before RCPT"))
			return
		}
		if c.rcpts >= c.srv.cfg.MaxRecipients {
			c.replyLocal(ctx, reply.New(452, "4.5.3", "Too many recipients"))
			return
		}
		cmd, rp := parseRcpt(arg, c.utf8)
		if rp != nil {
			c.replyBadLocal(ctx, *rp)
			return
		}
		c.rcpts++
		c.add(cmd)
	case "DATA":
		if arg != "" {
			c.replyBadLocal(ctx, reply.New(501, "5.5.4", "DATA takes no arguments"))
			return
		}
		if c.txn == nil {
			c.replySequence(ctx, reply.New(503, "5.5.1", "Need MAIL before DATA"))
			c.mailRefused = false // DATA ends a pipelined group
			return
		}
		if c.rcpts == 0 {
			// No RCPT was sent, or each was refused for its syntax.
			c.replyBadLocal(ctx, reply.New(503, "5.5.1", "Need RCPT before DATA"))
			return
		}
		if c.okRcpt == 0 && !c.batchHasRcpt() {
			c.replyLocal(ctx, reply.New(554, "5.5.1", "No valid recipients"))
			c.endTxn()
			return
		}
		c.add(Command{Verb: VerbData})
		c.flushBatch(ctx)
		return
	}
	if c.br.Buffered() == 0 {
		c.flushBatch(ctx)
	}
}

func (c *conn) batchHasRcpt() bool {
	for _, cmd := range c.batch {
		if cmd.Verb == VerbRcpt {
			return true
		}
	}
	return false
}

func (c *conn) add(cmd Command) {
	c.batchIdx = append(c.batchIdx, len(c.pending))
	c.pending = append(c.pending, reply.Reply{})
	c.batch = append(c.batch, cmd)
}

// replyLocal answers a command locally, in order with any batch in flight.
func (c *conn) replyLocal(ctx context.Context, r reply.Reply) {
	if len(c.batch) == 0 {
		c.reply(r)
		return
	}
	c.pending = append(c.pending, r)
}

func (c *conn) replyBadLocal(ctx context.Context, r reply.Reply) {
	c.bad++
	c.replyLocal(ctx, r)
}

// replySequence answers RCPT or DATA without a transaction: the client's
// error, unless its MAIL was refused just before (mailRefused).
func (c *conn) replySequence(ctx context.Context, r reply.Reply) {
	if c.mailRefused && c.excused <= c.srv.cfg.MaxRecipients {
		c.excused++
		c.replyLocal(ctx, r)
		return
	}
	c.replyBadLocal(ctx, r)
}

// flushBatch sends the collected envelope commands to the Txn, writes all
// pending replies in order and, after a 354, relays the body.
func (c *conn) flushBatch(ctx context.Context) {
	if len(c.batch) == 0 {
		return
	}
	batch := c.batch
	replies := c.txn.Envelope(ctx, batch)
	data := false
	mailFailed := false
	for i, cmd := range batch {
		r := replies[i]
		c.pending[c.batchIdx[i]] = r
		switch cmd.Verb {
		case VerbMail:
			mailFailed = !r.Positive()
		case VerbRcpt:
			if r.Positive() {
				c.okRcpt++
			}
		case VerbData:
			data = r.Code == 354
		}
	}
	for _, r := range c.pending {
		c.reply(r)
	}
	c.batch, c.batchIdx, c.pending = c.batch[:0], c.batchIdx[:0], c.pending[:0]
	switch {
	case mailFailed:
		c.endTxn()
		// RCPT and DATA may still come, sent before the refusal was read.
		c.mailRefused, c.excused = batch[len(batch)-1].Verb != VerbData, 0
	case data:
		c.body(ctx)
	}
	if !data && len(batch) > 0 && batch[len(batch)-1].Verb == VerbData {
		// DATA refused: the transaction is over (RFC 5321 §3.3).
		c.endTxn()
	}
}

// body relays the message after a 354. Each wait for more of the body is
// bounded by DataBlockTimeout and the whole phase, the upstream's final
// reply included, by DataTimeout (RFC 5321 §4.5.3.2.5, §4.5.3.2.6).
func (c *conn) body(ctx context.Context) {
	cfg := &c.srv.cfg
	end := time.Now().Add(cfg.DataTimeout)
	dctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	wait := func() error {
		if err := c.flush(); err != nil {
			return err
		}
		dl := time.Now().Add(cfg.DataBlockTimeout)
		if end.Before(dl) {
			dl = end
		}
		return c.raw.SetReadDeadline(dl)
	}
	dr := newDataReader(c.br, wait, cfg.MaxMessageBytes, cfg.MaxLineBytes)
	r := c.txn.Data(dctx, dr)
	if err := dr.drain(); err != nil {
		// The client is gone or too slow; the transaction is abandoned.
		c.quit = true
		c.endTxn()
		if isTimeout(err) {
			c.srv.stats.timeouts.Add(1)
			c.log.Info("closing: client timeout in DATA")
			c.reply(reply.New(421, "4.4.2", cfg.Hostname+" timeout, closing"))
		}
		return
	}
	c.reply(r)
	c.endTxn()
}

func (c *conn) endTxn() {
	if c.txn != nil {
		c.txn.Close()
		c.txn = nil
	}
	c.rcpts, c.okRcpt, c.utf8 = 0, 0, false
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

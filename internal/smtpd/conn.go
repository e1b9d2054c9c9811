package smtpd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// conn is one client connection. Only its serve goroutine touches its
// fields, except stopping, which Shutdown sets.
type conn struct {
	srv  *Server
	ctx  context.Context // the connection's context, ended when serve returns
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	info ConnInfo
	log  *slog.Logger

	stopping atomic.Bool
	idle     atomic.Bool // waiting for a command between transactions

	ehlo   bool
	sender Sender
	txn    Txn
	utf8   bool // the current MAIL had SMTPUTF8
	rcpts  int  // RCPTs sent in this transaction (accepted or pending)
	okRcpt int  // RCPTs the upstream accepted
	bad    int  // invalid commands so far

	batch    []Command
	batchIdx []int // position of each batch command among pending replies
	pending  []reply.Reply
	line     []byte // long-line accumulator
	quit     bool
}

var errLineTooLong = errors.New("line too long")

func newConn(s *Server, nc net.Conn, id string) *conn {
	c := &conn{
		srv: s,
		nc:  nc,
		br:  bufio.NewReaderSize(nc, 4096),
		bw:  bufio.NewWriterSize(nc, 4096),
		info: ConnInfo{
			ID:     id,
			Remote: addrPort(nc.RemoteAddr()),
		},
	}
	c.log = s.log.With("conn_id", id, "remote", c.info.Remote.String())
	return c
}

func (c *conn) shutdown() {
	c.stopping.Store(true)
	if c.idle.Load() {
		// Wake the blocked read; the loop answers 421 and closes.
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

func (c *conn) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Now()) })
	defer stop()
	defer c.nc.Close()
	defer c.endTxn()

	c.log.Debug("connect")
	c.reply(reply.New(220, "", c.srv.cfg.Hostname+" ESMTP xoauth2-proxy ready"))
	c.ctx = ctx
	for !c.quit {
		if c.stopping.Load() && c.txn == nil {
			c.reply(reply.New(421, "4.3.2", c.srv.cfg.Hostname+" shutting down"))
			_ = c.bw.Flush()
			return
		}
		line, err := c.readLine(c.srv.cfg.MaxAuthBytes)
		if err == errLineTooLong {
			c.replyBad(reply.New(500, "5.5.2", "Line too long"))
			continue
		}
		if err != nil {
			if c.stopping.Load() && isTimeout(err) {
				c.reply(reply.New(421, "4.3.2", c.srv.cfg.Hostname+" shutting down"))
			} else if isTimeout(err) {
				c.reply(reply.New(421, "4.4.2", c.srv.cfg.Hostname+" timeout, closing"))
			}
			_ = c.bw.Flush()
			if err != io.EOF && !isTimeout(err) {
				c.log.Debug("read", "err", err)
			}
			return
		}
		c.command(ctx, line)
		if c.bad >= c.srv.cfg.MaxBadCommands {
			c.flushBatch(ctx)
			c.reply(reply.New(421, "4.7.0", "Too many errors, closing"))
			_ = c.bw.Flush()
			return
		}
	}
	c.flushBatch(ctx)
	_ = c.bw.Flush()
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// readLine returns the next line without its line end. Before blocking it
// flushes pending replies: replies to a pipelined group go out together
// (RFC 2920 §3.2). Lines over max are consumed and reported.
func (c *conn) readLine(max int) (string, error) {
	if c.br.Buffered() == 0 {
		c.flushBatch(c.ctx)
		if err := c.bw.Flush(); err != nil {
			return "", err
		}
		c.idle.Store(c.txn == nil)
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.CommandTimeout))
		if c.stopping.Load() && c.txn == nil {
			_ = c.nc.SetReadDeadline(time.Now())
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
		c.replyBad(reply.New(501, "5.5.2", "NUL byte in command"))
		return
	}
	verb, arg := splitVerb(line)
	if verb != "AUTH" && len(line) > c.srv.cfg.MaxCommandBytes {
		c.replyBad(reply.New(500, "5.5.2", "Line too long"))
		return
	}
	if !isASCII(verb) {
		c.replyBad(reply.New(500, "5.5.2", "Syntax error, command unrecognized"))
		return
	}
	switch verb {
	case "MAIL", "RCPT", "DATA":
		c.envelope(ctx, verb, arg)
		return
	}
	// Any other command ends the pipelined envelope group first.
	c.flushBatch(ctx)
	switch verb {
	case "EHLO", "HELO":
		c.hello(verb, arg)
	case "AUTH":
		c.auth(ctx, arg)
	case "RSET":
		c.endTxn()
		c.reply(reply.New(250, "2.0.0", "OK"))
	case "NOOP":
		c.reply(reply.New(250, "2.0.0", "OK"))
	case "QUIT":
		c.reply(reply.New(221, "2.0.0", c.srv.cfg.Hostname+" closing connection"))
		c.quit = true
	case "VRFY":
		c.reply(reply.New(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"))
	case "STARTTLS":
		c.replyBad(reply.New(502, "5.5.1", "STARTTLS not available"))
	case "BDAT":
		c.replyBad(reply.New(502, "5.5.1", "CHUNKING not offered"))
	case "HELP":
		c.reply(reply.New(214, "2.0.0", "See RFC 5321"))
	default:
		c.replyBad(reply.New(500, "5.5.2", "Syntax error, command unrecognized"))
	}
}

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
	if c.sender == nil {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	c.reply(reply.Reply{Code: 250, Lines: lines})
}

// envelope handles MAIL, RCPT and DATA. Valid commands are collected in a
// batch while the client has more input buffered (it pipelined), and the
// batch goes to the Txn at once; local refusals are interleaved in order.
func (c *conn) envelope(ctx context.Context, verb, arg string) {
	switch verb {
	case "MAIL":
		if c.sender == nil {
			c.replyLocal(ctx, reply.New(530, "5.7.0", "Authentication required"))
			return
		}
		if c.txn != nil {
			c.replyLocal(ctx, reply.New(503, "5.5.1", "Nested MAIL command"))
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
		c.add(cmd)
	case "RCPT":
		if c.txn == nil {
			c.replyLocal(ctx, reply.New(503, "5.5.1", "Need MAIL before RCPT"))
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
			c.replyLocal(ctx, reply.New(503, "5.5.1", "Need MAIL before DATA"))
			return
		}
		if c.rcpts == 0 {
			c.replyLocal(ctx, reply.New(503, "5.5.1", "Need RCPT before DATA"))
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
	case data:
		c.body(ctx)
	}
	if !data && len(batch) > 0 && batch[len(batch)-1].Verb == VerbData {
		// DATA refused: the transaction is over (RFC 5321 §3.3).
		c.endTxn()
	}
}

// body relays the message after a 354.
func (c *conn) body(ctx context.Context) {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.DataTimeout))
	dr := newDataReader(c.br, c.bw.Flush, c.srv.cfg.MaxMessageBytes, c.srv.cfg.MaxLineBytes)
	r := c.txn.Data(ctx, dr)
	if err := dr.drain(); err != nil {
		// The client is gone; nothing more to say.
		c.quit = true
		c.endTxn()
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

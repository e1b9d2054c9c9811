package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Defaults for Config's zero values.
const (
	DefaultCommandTimeout = 30 * time.Second
	// DefaultDataTimeout is RFC 5321 §4.5.3.2.6's minimum wait for the
	// reply after the final dot.
	DefaultDataTimeout = 10 * time.Minute
	// DefaultHeloName is sent in EHLO when Config.HeloName is empty.
	DefaultHeloName = "localhost"
)

// Buffer sizes. The writer matches the largest TLS record, so a body goes
// out in full records; the reader's size is also the reply line limit.
const (
	writeBufferBytes = 16 << 10
	readBufferBytes  = maxReplyLine
)

// Config says where and how to connect. The zero value of each field has
// the meaning given in its comment.
type Config struct {
	// Addr is the server's host:port, e.g. "smtp.gmail.com:587". The host
	// is also the TLS server name and OAUTHBEARER's host.
	Addr string
	// TLS is how the session is secured: TLSStartTLS (also when
	// empty), TLSImplicit (TLS from the first byte, port 465), or
	// TLSNone, which is refused unless the host is loopback.
	TLS TLSMode
	// TLSConfig is cloned; its ServerName defaults to Addr's host and its
	// MinVersion is raised to TLS 1.2. Nil means the system roots.
	TLSConfig *tls.Config
	// LocalAddr, when valid, is the source address to bind. Binding fails
	// (and Dial with it) when the address is not on this host; there is no
	// fallback to another address. Setting it together with Dial fails
	// Dial with ErrUsage: a custom dialer cannot be made to bind it.
	LocalAddr netip.Addr
	// HeloName is the name sent in EHLO/HELO; DefaultHeloName when empty.
	HeloName string
	// Dial opens the TCP connection; nil means a net.Dialer bound to
	// LocalAddr. A custom Dial must honour ctx and leaves LocalAddr unset.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// CommandTimeout bounds each command and its reply, the connect and the
	// TLS handshake; DefaultCommandTimeout when zero.
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply after the final dot;
	// DefaultDataTimeout when zero.
	DataTimeout time.Duration
	// NoChunking makes Chunking false whatever the server offers, so
	// bodies go with DATA.
	NoChunking bool
}

// Cmd is one SMTP command of a Batch, e.g. {"MAIL", "FROM:<a@b> BODY=8BITMIME"},
// {"RCPT", "TO:<x@y>"}, {"DATA", ""}, {"RSET", ""}.
type Cmd struct {
	Verb string // upper case by convention
	Arg  string // the rest of the line, without CRLF; empty for none
}

// Client is one upstream SMTP session. See the package comment for the
// order of calls and the concurrency rules.
type Client struct {
	raw  net.Conn // the TCP connection: deadlines and Close act here
	conn net.Conn // raw, or the TLS connection over it
	br   *bufio.Reader
	bw   *bufio.Writer
	dw   DotWriter
	body bodyWriter

	host           string
	port           int
	commandTimeout time.Duration
	dataTimeout    time.Duration
	abortFn        func() // c.abort, bound once so calls do not allocate it

	ext        map[string]string // from the last EHLO, upper-case keywords
	maxSize    int64
	pipelining bool
	noChunking bool // Config.NoChunking
	dataOpen   bool // DATA got 354: only Body may follow

	broken     atomic.Bool
	closed     atomic.Bool
	roundTrips atomic.Int64
}

func newClient(conn net.Conn, host string, port int, commandTimeout, dataTimeout time.Duration) *Client {
	c := &Client{
		raw:            conn,
		conn:           conn,
		br:             bufio.NewReaderSize(conn, readBufferBytes),
		bw:             bufio.NewWriterSize(conn, writeBufferBytes),
		host:           host,
		port:           port,
		commandTimeout: commandTimeout,
		dataTimeout:    dataTimeout,
	}
	c.abortFn = c.abort
	c.dw.Reset(c.bw)
	c.body.c = c
	return c
}

// Batch sends cmds and returns one reply per command, in order. When the
// server offers PIPELINING all commands go out in one write and the replies
// are read afterwards (RFC 2920 §3.1); otherwise each command waits for its
// reply. Every command is sent whatever the earlier replies were: judging
// them is the caller's job. DATA may only be the last command; after a 354
// reply to it, call Body (or Close: nothing else can end the data phase
// without sending a message). Batch is meant for MAIL, RCPT, DATA, RSET
// and NOOP; the session-level commands have their own methods.
//
// On an I/O or protocol failure Batch returns the replies read so far (len
// tells how many commands were answered) and an *Error, and the session is
// broken. A 421 reply also breaks it (the server is closing, RFC 5321 §3.8).
func (c *Client) Batch(ctx context.Context, cmds []Cmd) ([]reply.Reply, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	for i, cmd := range cmds {
		if err := checkCmd(cmd); err != nil {
			return nil, &Error{Stage: stageOf(cmd.Verb), Err: err}
		}
		if i < len(cmds)-1 && strings.EqualFold(cmd.Verb, "DATA") {
			return nil, &Error{Stage: "data", Err: fmt.Errorf("%w: DATA must be the last command of a batch", ErrUsage)}
		}
	}
	stage := stageOf(cmds[0].Verb)
	if c.dataOpen {
		c.broken.Store(true)
		return nil, &Error{Stage: stage, Err: fmt.Errorf("%w: command while DATA is open", ErrUsage)}
	}
	k, err := c.begin(ctx, stage)
	if err != nil {
		return nil, err
	}
	defer k.end()

	replies := make([]reply.Reply, 0, len(cmds))
	if c.pipelining {
		if err := k.arm(c.commandTimeout); err != nil {
			return nil, k.fail(stage, err)
		}
		for _, cmd := range cmds {
			c.writeCmd(cmd.Verb, cmd.Arg)
		}
		if err := c.flush(); err != nil {
			return nil, k.fail(stage, err)
		}
		for i, cmd := range cmds {
			if i > 0 {
				if err := k.arm(c.commandTimeout); err != nil {
					return replies, k.fail(stageOf(cmd.Verb), err)
				}
			}
			r, err := c.readReply()
			if err != nil {
				return replies, k.fail(stageOf(cmd.Verb), err)
			}
			replies = append(replies, r)
			c.noteReply(cmd, r)
		}
		return replies, nil
	}
	for _, cmd := range cmds {
		r, err := k.cmd(cmd.Verb, cmd.Arg)
		if err != nil {
			return replies, k.fail(stageOf(cmd.Verb), err)
		}
		replies = append(replies, r)
		c.noteReply(cmd, r)
	}
	return replies, nil
}

// noteReply tracks the session state a reply implies.
func (c *Client) noteReply(cmd Cmd, r reply.Reply) {
	if r.Code == 354 && strings.EqualFold(cmd.Verb, "DATA") {
		c.dataOpen = true
	}
}

// Reset sends RSET. Anything but 250 breaks the session: its transaction
// state is unknown.
func (c *Client) Reset(ctx context.Context) error {
	rs, err := c.Batch(ctx, []Cmd{{Verb: "RSET"}})
	if err != nil {
		return err
	}
	if r := rs[0]; r.Code != 250 {
		c.broken.Store(true)
		return &Error{Stage: "rset", Reply: &r}
	}
	return nil
}

// Quit sends QUIT, reads the reply and closes the connection. It is best
// effort: a broken session is just closed, and the connection is closed
// whatever happens. The error, if any, is only worth logging.
func (c *Client) Quit(ctx context.Context) error {
	defer c.Close()
	if c.broken.Load() || c.dataOpen {
		return nil
	}
	k, err := c.begin(ctx, "quit")
	if err != nil {
		return err
	}
	defer k.end()
	if _, err := k.cmd("QUIT", ""); err != nil {
		return k.fail("quit", err)
	}
	return nil
}

// Close closes the connection without QUIT and marks the session broken.
// It may be called more than once and from any goroutine.
func (c *Client) Close() error {
	c.broken.Store(true)
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Closing the TCP connection, not the TLS one: a close_notify could
	// block on a peer that stopped reading, and SMTP ends with QUIT anyway.
	return c.raw.Close()
}

// Broken reports whether the session must not be reused: after any I/O or
// protocol error, a cancelled context, an aborted body, a 421, or Close.
// Safe for concurrent use.
func (c *Client) Broken() bool { return c.broken.Load() }

// Extension reports whether the last EHLO reply listed the extension name
// (case-insensitive) and returns its parameters, e.g. "LOGIN XOAUTH2" for
// AUTH.
func (c *Client) Extension(name string) (param string, ok bool) {
	param, ok = c.ext[strings.ToUpper(name)]
	return param, ok
}

// MaxSize is the server's SIZE limit in bytes (RFC 1870), 0 when it
// announced none.
func (c *Client) MaxSize() int64 { return c.maxSize }

// RoundTrips counts how often the client flushed its output and then waited
// for replies; a pipelined transaction needs fewer. Safe for concurrent use.
func (c *Client) RoundTrips() int64 { return c.roundTrips.Load() }

// checkCmd refuses what would corrupt the command stream: a CR or LF in an
// argument would let envelope data inject commands.
func checkCmd(cmd Cmd) error {
	if cmd.Verb == "" || strings.ContainsAny(cmd.Verb, " \r\n") || strings.ContainsAny(cmd.Arg, "\r\n") {
		return fmt.Errorf("%w: bad command %q", ErrUsage, cmd.Verb)
	}
	return nil
}

// stageOf names the Error.Stage of a command.
func stageOf(verb string) string {
	for _, s := range [...]string{"mail", "rcpt", "data", "rset", "quit", "ehlo", "helo", "auth", "starttls"} {
		if strings.EqualFold(verb, s) {
			if s == "helo" {
				return "ehlo"
			}
			return s
		}
	}
	return strings.ToLower(verb)
}

func (c *Client) writeCmd(verb, arg string) {
	// bufio.Writer errors are sticky and come back from Flush.
	c.bw.WriteString(verb)
	if arg != "" {
		c.bw.WriteByte(' ')
		c.bw.WriteString(arg)
	}
	c.bw.WriteString("\r\n")
}

func (c *Client) flush() error {
	c.roundTrips.Add(1)
	return c.bw.Flush()
}

// readReply reads one reply; a 421 means the server is closing the channel
// (RFC 5321 §3.8), so the session is broken.
func (c *Client) readReply() (reply.Reply, error) {
	r, err := readReply(c.br)
	if err == nil && r.Code == 421 {
		c.broken.Store(true)
	}
	return r, err
}

// aLongTimeAgo is a deadline in the past: setting it aborts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// abort runs when a call's context is cancelled: it fails the I/O in
// progress, and the session with it.
func (c *Client) abort() {
	c.broken.Store(true)
	c.raw.SetDeadline(aLongTimeAgo)
}

// call is the context bookkeeping of one public method call.
type call struct {
	c     *Client
	ctx   context.Context
	limit time.Time // the context's deadline; zero when none
	stop  func() bool
}

// begin starts a call. A call on a broken session, or with a context that
// is already done, fails before anything is sent; in the second case the
// session stays usable.
func (c *Client) begin(ctx context.Context, stage string) (call, error) {
	if c.broken.Load() {
		return call{}, &Error{Stage: stage, Err: ErrBroken}
	}
	if err := ctx.Err(); err != nil {
		return call{}, &Error{Stage: stage, Err: err}
	}
	k := call{c: c, ctx: ctx}
	k.limit, _ = ctx.Deadline()
	if ctx.Done() != nil {
		k.stop = context.AfterFunc(ctx, c.abortFn)
	}
	return k, nil
}

// end stops watching the context. If it fired, abort has already broken
// the session.
func (k *call) end() {
	if k.stop != nil {
		k.stop()
	}
}

// arm sets the connection deadline to now+d, or the context's deadline
// when that is sooner.
func (k *call) arm(d time.Duration) error {
	return k.c.setDeadline(k.limit, d)
}

func (c *Client) setDeadline(limit time.Time, d time.Duration) error {
	t := time.Now().Add(d)
	if !limit.IsZero() && limit.Before(t) {
		t = limit
	}
	if err := c.raw.SetDeadline(t); err != nil {
		return err
	}
	// abort may have run between our check and SetDeadline; its deadline
	// must win, so look again after setting ours.
	if c.broken.Load() {
		return ErrBroken
	}
	return nil
}

// cmd sends one command and reads its reply.
func (k *call) cmd(verb, arg string) (reply.Reply, error) {
	if err := k.arm(k.c.commandTimeout); err != nil {
		return reply.Reply{}, err
	}
	k.c.writeCmd(verb, arg)
	return k.await()
}

// await flushes what was written and reads one reply.
func (k *call) await() (reply.Reply, error) {
	if err := k.c.flush(); err != nil {
		return reply.Reply{}, err
	}
	return k.c.readReply()
}

// fail breaks the session and builds the *Error for err. When the context
// ended the call, its error replaces the I/O error it caused.
func (k *call) fail(stage string, err error) *Error {
	k.c.broken.Store(true)
	if cerr := k.ctx.Err(); cerr != nil {
		err = cerr
	} else if !k.limit.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(k.limit) {
		err = context.DeadlineExceeded
	}
	return &Error{Stage: stage, Err: err}
}

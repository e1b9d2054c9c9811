package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// Client is one SMTP client connection. Not safe for concurrent use.
type Client struct {
	raw        net.Conn // the TCP connection, closed to interrupt any call
	nc         net.Conn // raw, or the TLS connection on top of it
	br         *bufio.Reader
	bw         *bufio.Writer
	pipelining bool
	timeout    time.Duration
}

// Dial connects, reads the greeting and sends EHLO.
func Dial(ctx context.Context, addr string, timeout time.Duration) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	c := &Client{raw: nc, nc: nc, br: bufio.NewReaderSize(nc, 8192), bw: bufio.NewWriterSize(nc, 32768), timeout: timeout}
	if r, err := c.read(); err != nil || r.Code != 220 {
		nc.Close()
		return nil, fmt.Errorf("greeting: %v %w", r, err)
	}
	if err := c.ehlo(); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// ehlo sends EHLO and notes whether the server pipelines.
func (c *Client) ehlo() error {
	c.bw.WriteString("EHLO loadgen.test\r\n")
	r, err := c.roundTrip()
	if err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if r.Code != 250 {
		return fmt.Errorf("ehlo: %w", r)
	}
	c.pipelining = false
	for _, l := range r.Lines {
		if strings.EqualFold(l, "PIPELINING") {
			c.pipelining = true
		}
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// Quit sends QUIT and closes.
func (c *Client) Quit() error {
	c.bw.WriteString("QUIT\r\n")
	_, _ = c.roundTrip()
	return c.nc.Close()
}

// Pipelining reports whether Send pipelines MAIL, RCPT and DATA: the server
// advertised PIPELINING and DisablePipelining was not called.
func (c *Client) Pipelining() bool { return c.pipelining }

// DisablePipelining makes Send wait for each command's reply before the
// next, like a client without RFC 2920 support.
func (c *Client) DisablePipelining() { c.pipelining = false }

// StartTLS upgrades the connection (RFC 3207) and sends EHLO again. cfg
// must name the server (ServerName) or skip verification; it is used as is.
func (c *Client) StartTLS(cfg *tls.Config) error {
	c.bw.WriteString("STARTTLS\r\n")
	r, err := c.roundTrip()
	if err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if r.Code != 220 {
		return fmt.Errorf("starttls: %w", r)
	}
	tc := tls.Client(c.nc, cfg)
	_ = tc.SetDeadline(time.Now().Add(c.timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("starttls handshake: %w", err)
	}
	c.nc = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return c.ehlo()
}

// Auth authenticates with AUTH PLAIN.
func (c *Client) Auth(user, pass string) error {
	c.bw.WriteString("AUTH PLAIN " + saslmech.EncodePlain(user, pass) + "\r\n")
	r, err := c.roundTrip()
	if err != nil {
		return err
	}
	if r.Code != 235 {
		return r
	}
	return nil
}

// AuthXOAUTH2 authenticates with AUTH XOAUTH2 as user with an OAuth2
// access token, the way a provider expects it (PROVIDERS.md). A refused
// token gets the provider's base64 JSON 334 challenge; the client answers
// it with an empty line and returns the final refusal.
func (c *Client) AuthXOAUTH2(user, token string) error {
	ir := base64.StdEncoding.EncodeToString(saslmech.XOAUTH2(user, token))
	c.bw.WriteString("AUTH XOAUTH2 " + ir + "\r\n")
	r, err := c.roundTrip()
	if err != nil {
		return err
	}
	if r.Code == 334 {
		c.bw.WriteString("\r\n")
		if r, err = c.roundTrip(); err != nil {
			return err
		}
	}
	if r.Code != 235 {
		return r
	}
	return nil
}

// Result is the outcome of one Send.
type Result struct {
	Mail  reply.Reply
	Rcpts []reply.Reply
	Data  reply.Reply // the DATA command's reply (354 or a refusal)
	Final reply.Reply // the reply after the body; zero when no body was sent
}

// OK reports a message accepted (final 250).
func (r Result) OK() bool { return r.Final.Code == 250 }

// Send runs one transaction: MAIL, RCPTs and DATA in one write when the
// server pipelines, then body (CRLF lines, not dot-stuffed: Send stuffs).
func (c *Client) Send(from string, rcpts []string, body []byte) (Result, error) {
	var res Result
	c.bw.WriteString("MAIL FROM:<" + from + ">\r\n")
	n := 1
	if !c.pipelining {
		r, err := c.roundTrip()
		if err != nil {
			return res, err
		}
		res.Mail, n = r, 0
	}
	for _, rc := range rcpts {
		c.bw.WriteString("RCPT TO:<" + rc + ">\r\n")
		if !c.pipelining {
			r, err := c.roundTrip()
			if err != nil {
				return res, err
			}
			res.Rcpts = append(res.Rcpts, r)
		} else {
			n++
		}
	}
	c.bw.WriteString("DATA\r\n")
	n++
	if err := c.flush(); err != nil {
		return res, err
	}
	for i := 0; i < n; i++ {
		r, err := c.read()
		if err != nil {
			return res, err
		}
		switch {
		case c.pipelining && i == 0:
			res.Mail = r
		case i == n-1:
			res.Data = r
		default:
			res.Rcpts = append(res.Rcpts, r)
		}
	}
	if res.Data.Code != 354 {
		return res, nil
	}
	writeStuffed(c.bw, body)
	c.bw.WriteString(".\r\n")
	r, err := c.roundTrip()
	res.Final = r
	return res, err
}

// Reset sends RSET.
func (c *Client) Reset() error {
	c.bw.WriteString("RSET\r\n")
	r, err := c.roundTrip()
	if err == nil && r.Code != 250 {
		err = r
	}
	return err
}

func writeStuffed(w *bufio.Writer, body []byte) {
	start := true
	for len(body) > 0 {
		if start && body[0] == '.' {
			w.WriteByte('.')
		}
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			w.Write(body)
			w.WriteString("\r\n")
			return
		}
		w.Write(body[:i+1])
		body = body[i+1:]
		start = true
	}
}

func (c *Client) flush() error {
	_ = c.nc.SetDeadline(time.Now().Add(c.timeout))
	return c.bw.Flush()
}

func (c *Client) roundTrip() (reply.Reply, error) {
	if err := c.flush(); err != nil {
		return reply.Reply{}, err
	}
	return c.read()
}

var errBadReply = errors.New("malformed reply")

func (c *Client) read() (reply.Reply, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	var r reply.Reply
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return r, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return r, errBadReply
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, errBadReply
		}
		r.Code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		enh, rest := reply.SplitEnhanced(code, text)
		if enh != "" {
			r.Enhanced = enh
		}
		r.Lines = append(r.Lines, rest)
		if len(line) == 3 || line[3] != '-' {
			return r, nil
		}
	}
}

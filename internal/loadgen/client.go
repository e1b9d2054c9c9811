package loadgen

import (
	"bufio"
	"bytes"
	"context"
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
	nc         net.Conn
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
	c := &Client{nc: nc, br: bufio.NewReaderSize(nc, 8192), bw: bufio.NewWriterSize(nc, 32768), timeout: timeout}
	if r, err := c.read(); err != nil || r.Code != 220 {
		nc.Close()
		return nil, fmt.Errorf("greeting: %v %w", r, err)
	}
	c.bw.WriteString("EHLO loadgen.test\r\n")
	r, err := c.roundTrip()
	if err != nil || r.Code != 250 {
		nc.Close()
		return nil, fmt.Errorf("ehlo: %v %w", r, err)
	}
	for _, l := range r.Lines {
		if strings.EqualFold(l, "PIPELINING") {
			c.pipelining = true
		}
	}
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// Quit sends QUIT and closes.
func (c *Client) Quit() error {
	c.bw.WriteString("QUIT\r\n")
	_, _ = c.roundTrip()
	return c.nc.Close()
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

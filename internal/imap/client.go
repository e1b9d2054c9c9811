package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// Client is one IMAP connection.
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	tag  int
	caps map[string]bool
}

// CommandError is a NO or BAD answer to a command.
type CommandError struct {
	Command string // the command's name, e.g. "SELECT"
	Cond    string // NO or BAD
	Code    string // response code, e.g. "AUTHENTICATIONFAILED", "NONEXISTENT"
	Text    string
}

func (e *CommandError) Error() string {
	code := ""
	if e.Code != "" {
		code = "[" + e.Code + "] "
	}
	return fmt.Sprintf("imap %s: %s %s%s", e.Command, e.Cond, code, clip(e.Text))
}

// ErrAuth is wrapped by AuthXOAUTH2's error when the server refused the
// token (or the account's IMAP access): the mailbox cannot be read.
var ErrAuth = errors.New("imap: authentication refused")

// Dialer opens connections.
type Dialer struct {
	// TLS is the client TLS configuration (ServerName is set from the
	// address when empty); nil means plain TCP, for loopback tests only.
	TLS *tls.Config
	// Dial replaces net.Dialer (tests).
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial connects to addr ("host:port"), reads the greeting and the
// capabilities.
func (d Dialer) Dial(ctx context.Context, addr string) (*Client, error) {
	dial := d.NetDial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imap dial %s: %w", addr, err)
	}
	if d.TLS != nil {
		cfg := d.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("imap TLS %s: %w", addr, err)
		}
		nc = tc
	}
	c := &Client{conn: nc, br: bufio.NewReaderSize(nc, 32<<10)}
	stop := c.watch(ctx)
	defer stop()
	greet, err := readResponse(c.br)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("imap greeting %s: %w", addr, err)
	}
	if cond, code, text := greet.status(); greet.Tag != "*" || (cond != "OK" && cond != "PREAUTH") {
		nc.Close()
		return nil, &CommandError{Command: "greeting", Cond: cond, Code: code, Text: text}
	}
	if err := c.capability(); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// watch applies ctx to the connection until stop is called: its deadline
// as the connection's, its cancellation as a close.
func (c *Client) watch(ctx context.Context) (stop func()) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	c.conn.SetDeadline(dl)
	unhook := context.AfterFunc(ctx, func() { c.conn.Close() })
	return func() { unhook() }
}

// Close closes the connection without LOGOUT.
func (c *Client) Close() error { return c.conn.Close() }

// Caps reports whether the server announced capability name.
func (c *Client) Caps(name string) bool { return c.caps[strings.ToUpper(name)] }

// cmd sends one tagged command and reads responses up to its completion.
// onData sees each untagged response; a continuation request is answered
// by cont (nil: the command fails).
func (c *Client) cmd(name, line string, onData func(response), cont func(response) (string, error)) error {
	c.tag++
	tag := "x" + strconv.Itoa(c.tag)
	if _, err := c.conn.Write([]byte(tag + " " + line + "\r\n")); err != nil {
		return fmt.Errorf("imap %s: write: %w", name, err)
	}
	for {
		r, err := readResponse(c.br)
		if err != nil {
			return fmt.Errorf("imap %s: %w", name, err)
		}
		switch r.Tag {
		case "*":
			if cond, code, _ := r.status(); cond == "OK" && strings.HasPrefix(strings.ToUpper(code), "CAPABILITY ") {
				c.setCaps(code[len("CAPABILITY "):])
			} else if cond == "BYE" {
				continue // the tagged answer, or the close, follows
			}
			if onData != nil {
				onData(r)
			}
		case "+":
			if cont == nil {
				return fmt.Errorf("%w: unexpected continuation to %s", ErrMalformed, name)
			}
			next, err := cont(r)
			if err != nil {
				return err
			}
			if _, err := c.conn.Write([]byte(next + "\r\n")); err != nil {
				return fmt.Errorf("imap %s: write: %w", name, err)
			}
		case tag:
			cond, code, text := r.status()
			if cond == "OK" {
				if strings.HasPrefix(strings.ToUpper(code), "CAPABILITY ") {
					c.setCaps(code[len("CAPABILITY "):])
				}
				return nil
			}
			return &CommandError{Command: name, Cond: cond, Code: code, Text: text}
		default:
			return fmt.Errorf("%w: tag %q while waiting for %s", ErrMalformed, clip(r.Tag), tag)
		}
	}
}

func (c *Client) setCaps(list string) {
	c.caps = map[string]bool{}
	for _, f := range strings.Fields(list) {
		c.caps[strings.ToUpper(f)] = true
	}
}

func (c *Client) capability() error {
	return c.cmd("CAPABILITY", "CAPABILITY", func(r response) {
		if name, rest, _ := strings.Cut(r.Text, " "); strings.EqualFold(name, "CAPABILITY") {
			c.setCaps(rest)
		}
	}, nil)
}

// AuthXOAUTH2 authenticates user with an OAuth access token (Gmail's
// and Microsoft's XOAUTH2). A refusal wraps ErrAuth; the server's JSON
// error challenge is answered with an empty line, as the mechanism asks.
func (c *Client) AuthXOAUTH2(ctx context.Context, user, token string) error {
	stop := c.watch(ctx)
	defer stop()
	ir := base64.StdEncoding.EncodeToString(saslmech.XOAUTH2(user, token))
	line := "AUTHENTICATE XOAUTH2"
	sent := false
	if c.Caps("SASL-IR") {
		line += " " + ir
		sent = true
	}
	err := c.cmd("AUTHENTICATE", line, nil, func(response) (string, error) {
		if !sent {
			sent = true
			return ir, nil
		}
		return "", nil // the error challenge: end the exchange
	})
	var ce *CommandError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: %w", ErrAuth, err)
	}
	if err != nil {
		return err
	}
	if len(c.caps) == 0 || !c.Caps("IMAP4REV1") {
		return c.capability()
	}
	return nil
}

// Mailbox is what SELECT reported.
type Mailbox struct {
	UIDValidity uint32
	UIDNext     uint32
	Exists      int
}

// Select opens a mailbox read-write (EXAMINE would forbid the move).
func (c *Client) Select(ctx context.Context, name string) (Mailbox, error) {
	stop := c.watch(ctx)
	defer stop()
	var mb Mailbox
	err := c.cmd("SELECT", "SELECT "+quote(name), func(r response) {
		if _, code, _ := r.status(); code != "" {
			k, v, _ := strings.Cut(code, " ")
			n, _ := strconv.ParseUint(v, 10, 32)
			switch strings.ToUpper(k) {
			case "UIDVALIDITY":
				mb.UIDValidity = uint32(n)
			case "UIDNEXT":
				mb.UIDNext = uint32(n)
			}
			return
		}
		if f := fields(r.Text); len(f) == 2 && strings.EqualFold(f[1], "EXISTS") {
			mb.Exists, _ = strconv.Atoi(f[0])
		}
	}, nil)
	return mb, err
}

// SearchSince lists the UIDs above after, in ascending order.
func (c *Client) SearchSince(ctx context.Context, after uint32) ([]uint32, error) {
	stop := c.watch(ctx)
	defer stop()
	var uids []uint32
	err := c.cmd("SEARCH", fmt.Sprintf("UID SEARCH UID %d:*", after+1), func(r response) {
		f := fields(r.Text)
		if len(f) == 0 || !strings.EqualFold(f[0], "SEARCH") {
			return
		}
		for _, s := range f[1:] {
			// "n:*" matches the last message even when its UID is
			// below n (RFC 3501 §6.4.8): keep only those above.
			if n, err := strconv.ParseUint(s, 10, 32); err == nil && uint32(n) > after {
				uids = append(uids, uint32(n))
			}
		}
	}, nil)
	slices.Sort(uids)
	return slices.Compact(uids), err
}

// ErrGone is returned by FetchRaw when the message no longer exists.
var ErrGone = errors.New("imap: message gone")

// FetchRaw returns the whole message with the given UID, without
// setting \Seen.
func (c *Client) FetchRaw(ctx context.Context, uid uint32) ([]byte, error) {
	stop := c.watch(ctx)
	defer stop()
	var body []byte
	err := c.cmd("FETCH", fmt.Sprintf("UID FETCH %d BODY.PEEK[]", uid), func(r response) {
		f := fields(r.Text)
		if len(f) < 2 || !strings.EqualFold(f[1], "FETCH") || len(r.Literals) == 0 {
			return
		}
		for i := 2; i+1 < len(f); i++ {
			if strings.EqualFold(f[i], "UID") && f[i+1] == strconv.FormatUint(uint64(uid), 10) {
				body = r.Literals[len(r.Literals)-1]
				return
			}
		}
	}, nil)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, fmt.Errorf("%w: UID %d", ErrGone, uid)
	}
	return body, nil
}

// Create makes a mailbox; one that already exists is no error.
func (c *Client) Create(ctx context.Context, name string) error {
	stop := c.watch(ctx)
	defer stop()
	err := c.cmd("CREATE", "CREATE "+quote(name), nil, nil)
	var ce *CommandError
	if errors.As(err, &ce) && ce.Cond == "NO" {
		return nil // ALREADYEXISTS (RFC 5530), or a server that does not say
	}
	return err
}

// Move moves the message with the given UID to folder: UID MOVE when the
// server has MOVE, else COPY, \Deleted and UID EXPUNGE (UIDPLUS) or
// EXPUNGE.
func (c *Client) Move(ctx context.Context, uid uint32, folder string) error {
	stop := c.watch(ctx)
	defer stop()
	set := strconv.FormatUint(uint64(uid), 10)
	if c.Caps("MOVE") {
		return c.cmd("MOVE", "UID MOVE "+set+" "+quote(folder), nil, nil)
	}
	if err := c.cmd("COPY", "UID COPY "+set+" "+quote(folder), nil, nil); err != nil {
		return err
	}
	if err := c.cmd("STORE", "UID STORE "+set+` +FLAGS.SILENT (\Deleted)`, nil, nil); err != nil {
		return err
	}
	if c.Caps("UIDPLUS") {
		return c.cmd("EXPUNGE", "UID EXPUNGE "+set, nil, nil)
	}
	return c.cmd("EXPUNGE", "EXPUNGE", nil, nil)
}

// Logout ends the session politely and closes the connection.
func (c *Client) Logout(ctx context.Context) error {
	stop := c.watch(ctx)
	err := c.cmd("LOGOUT", "LOGOUT", nil, nil)
	stop()
	c.conn.Close()
	return err
}

// quote makes an IMAP quoted string (RFC 3501 §4.3).
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// FuzzDataReader: for any input the reader never panics and never ends
// the message anywhere but at CRLF "." CRLF; for CRLF-clean content,
// unstuff(stuff(x)) == x.
func FuzzDataReader(f *testing.F) {
	f.Add([]byte("a\r\n.\r\n"), []byte("x\r\n..y\r\n"))
	f.Add([]byte("a\n.\nb\r\n.\r\n"), []byte("\r\n"))
	f.Add([]byte(".\r.\n\r\n.\r\n"), []byte(".\r\n"))
	f.Fuzz(func(t *testing.T, raw, content []byte) {
		// Arbitrary wire bytes: must not panic, must not read past the
		// first CRLF.CRLF terminator.
		br := bufio.NewReaderSize(bytes.NewReader(raw), 16)
		d := newDataReader(br, func() error { return nil }, 1<<20, 0)
		_, _ = io.Copy(io.Discard, d)
		_ = d.drain()
		if d.done {
			end := bytes.Index(append([]byte("\r\n"), raw...), []byte("\r\n.\r\n"))
			if end < 0 {
				t.Fatalf("ended without a terminator in %q", raw)
			}
			rest, _ := io.ReadAll(br)
			if want := raw[end+3:]; !bytes.Equal(rest, want) {
				t.Fatalf("consumed past the terminator: rest %q want %q", rest, want)
			}
		}

		// Round trip for well-formed content.
		c := normalise(content)
		wire := stuffForTest(c) + ".\r\n"
		br = bufio.NewReaderSize(strings.NewReader(wire), 16)
		d = newDataReader(br, func() error { return nil }, 0, 0)
		got, err := io.ReadAll(d)
		if err != nil || string(got) != c {
			t.Fatalf("round trip %q -> %q (%v)", c, got, err)
		}
	})
}

// normalise makes every line end in CRLF, with no bare CR or LF.
func normalise(b []byte) string {
	s := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(b))
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

func stuffForTest(s string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\r\n") {
		if strings.HasPrefix(l, ".") {
			out.WriteByte('.')
		}
		out.WriteString(l)
	}
	return out.String()
}

// FuzzCommands: command parsing never panics, and an accepted path never
// carries a space, CR, LF or NUL to the upstream.
func FuzzCommands(f *testing.F) {
	for _, s := range []string{"FROM:<a@b.c> SIZE=10 BODY=8BITMIME", "FROM:<>", "TO:<x@y>", "FROM: <\"a b\"@c>", "TO:<@r:x@y>", "FROM:<a@b> SMTPUTF8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		splitVerb(arg)
		if c, _, rp := parseMail(arg, 1000); rp == nil {
			if strings.ContainsAny(c.Addr, "\r\n\x00") {
				t.Fatalf("MAIL path %q", c.Addr)
			}
		}
		if c, rp := parseRcpt(arg, true); rp == nil {
			if strings.ContainsAny(c.Addr, "\r\n\x00") || c.Addr == "" {
				t.Fatalf("RCPT path %q", c.Addr)
			}
		}
	})
}

// FuzzSession feeds arbitrary client bytes to a whole session (greeting,
// commands, AUTH decoding, pipelining, DATA): the server never panics,
// writes only well-formed replies, and ends when the client goes away.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nAUTH LOGIN\r\nYQ==\r\nYg==\r\nMAIL FROM:<a@b> SMTPUTF8\r\nRCPT TO:<ö@d>\r\nDATA\r\n.\r\n",
		"HELO x\r\nAUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nBDAT 1 LAST\r\nx\r\nSTARTTLS\r\n",
		"EHLO x\r\nAUTH PLAIN !!!\r\nNO\x00OP\r\n\xff\xfe\r\nMAIL FROM:<\xff>\r\n",
		"EHLO x\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\na\n.\r\nRSET\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := New(Config{
			CommandTimeout: 2 * time.Second, DataBlockTimeout: 2 * time.Second, DataTimeout: 2 * time.Second,
			MaxMessageBytes: 1 << 16, MaxBadCommands: 1000,
		}, acceptAll{})
		client, server := net.Pipe()
		defer client.Close()
		var out bytes.Buffer
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = io.Copy(&out, client) })
		srv.startConn(context.Background(), loopbackConn{server}, false)
		_, _ = client.Write(in)
		client.Close()
		wg.Wait()
		srv.wg.Wait()
		if n := srv.Stats().Panics; n > 0 {
			t.Fatalf("panic serving %q", in)
		}
		for _, l := range strings.SplitAfter(out.String(), "\r\n") {
			if l == "" {
				continue
			}
			if len(l) < 6 || !strings.HasSuffix(l, "\r\n") || l[3] != ' ' && l[3] != '-' ||
				l[0] < '2' || l[0] > '5' || strings.ContainsAny(l[:len(l)-2], "\r\n\x00") {
				t.Fatalf("malformed reply line %q for input %q", l, in)
			}
		}
	})
}

// loopbackConn makes a pipe look like a TCP connection from 127.0.0.1, a
// trusted address, so AUTH is reachable without TLS.
type loopbackConn struct{ net.Conn }

func (loopbackConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// acceptAll is a backend that accepts every login and message.
type acceptAll struct{}

func (acceptAll) Login(context.Context, *ConnInfo, string, string) (Sender, error) {
	return acceptAll{}, nil
}
func (acceptAll) Begin(context.Context, *ConnInfo) (Txn, error) { return acceptAll{}, nil }
func (acceptAll) Name() string                                  { return "any" }
func (acceptAll) Close()                                        {}
func (acceptAll) Envelope(_ context.Context, cmds []Command) []reply.Reply {
	out := make([]reply.Reply, len(cmds))
	for i, c := range cmds {
		out[i] = reply.New(250, "2.0.0", "OK")
		if c.Verb == VerbData {
			out[i] = reply.New(354, "", "Go ahead")
		}
	}
	return out
}
func (acceptAll) Data(_ context.Context, r io.Reader) reply.Reply {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return reply.FromError(err, "fuzz")
	}
	return reply.New(250, "2.0.0", "OK")
}

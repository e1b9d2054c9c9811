package upstream_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// openDataSession dials s (which must start with openData) and opens DATA.
func openDataSession(t *testing.T, s *fakeServer, mod func(*upstream.Config)) *upstream.Client {
	t.Helper()
	c := mustDial(t, s, mod)
	rs, err := c.Batch(context.Background(), []upstream.Cmd{
		{Verb: "MAIL", Arg: "FROM:<a@example.org>"},
		{Verb: "RCPT", Arg: "TO:<b@example.net>"},
		{Verb: "DATA"},
	})
	if err != nil || rs[2].Code != 354 {
		t.Fatalf("Batch = %v, %v", rs, err)
	}
	return c
}

func TestBody_dotStuffing(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100_000)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "Subject: hi\r\n\r\nhello\r\n", "Subject: hi\r\n\r\nhello\r\n"},
		{"empty", "", ""},
		{"dot line", ".\r\n", "..\r\n"},
		{"two dots", "..\r\n", "...\r\n"},
		{"dot text", ".x\r\n", "..x\r\n"},
		{"dots inside", "a\r\n.\r\nb\r\n.x\r\n..\r\nc\r\n", "a\r\n..\r\nb\r\n..x\r\n...\r\nc\r\n"},
		{"dot not at line start", "a.b\r\n x.\r\n", "a.b\r\n x.\r\n"},
		{"missing final CRLF", "a\r\nb", "a\r\nb\r\n"},
		{"ends in a dot", "a\r\n.", "a\r\n..\r\n"},
		{"ends in CR", "a\r", "a\r\r\n"},
		{"8-bit and NUL", "caf\xc3\xa9 \xff\x00\x80\r\n", "caf\xc3\xa9 \xff\x00\x80\r\n"},
		{"100 KB line", long + "\r\n.\r\n", long + "\r\n..\r\n"},
		{"100 KB line without CRLF", long, long + "\r\n"},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"halves", iotest.HalfReader},
	}
	for _, tc := range tests {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				s := newServer(t, openData+`
					body
					S: 250 2.0.0 OK queued`)
				c := openDataSession(t, s, nil)
				r, err := c.Body(context.Background(), rd.wrap(strings.NewReader(tc.in)))
				if err != nil || r.String() != "250 2.0.0 OK queued" {
					t.Fatalf("Body = %v, %v", r, err)
				}
				s.wait(t)
				_, bodies, _ := s.received()
				if len(bodies) != 1 || bodies[0] != tc.want {
					t.Errorf("server got %.200q, want %.200q", bodies, tc.want)
				}
				if c.Broken() {
					t.Error("session broken after a good body")
				}
			})
		}
	}
}

func TestBody_readerErrorAbortsWithoutDot(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("spool read failed")
	tests := []struct {
		name   string
		reader func() io.Reader
	}{
		{"small, writer-to", func() io.Reader {
			return io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial\r\n"), iotest.ErrReader(errDisk))
		}},
		{"large, one byte at a time", func() io.Reader {
			return iotest.OneByteReader(io.MultiReader(&lineReader{left: 40_000}, iotest.ErrReader(errDisk)))
		}},
		{"large, chunks", func() io.Reader {
			return io.MultiReader(&lineReader{left: 1 << 20}, iotest.ErrReader(errDisk))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, openData+`
				eof`)
			c := openDataSession(t, s, nil)
			_, err := c.Body(context.Background(), tc.reader())
			if !errors.Is(err, errDisk) {
				t.Fatalf("Body error = %v, want it to wrap %v", err, errDisk)
			}
			checkDialErr(t, err, "body", 0, errDisk)
			if upstream.Ambiguous(err) {
				t.Error("aborted body reported as ambiguous")
			}
			if !c.Broken() {
				t.Error("session not broken")
			}
			s.wait(t) // the server saw the connection end
			_, _, rest := s.received()
			if strings.Contains(string(rest), "\r\n.\r\n") || strings.HasPrefix(string(rest), ".\r\n") {
				t.Error("the final dot went out")
			}
		})
	}
}

func TestBody_connectionLost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		script    string
		size      int64
		ambiguous bool
		is        error
	}{
		{
			name:   "during the body",
			script: openData + "\nread 1000\nclose",
			size:   64 << 20, // far more than socket buffers hold
		},
		{
			name:      "after the dot",
			script:    openData + "\nbody\nclose",
			size:      10_000,
			ambiguous: true,
		},
		{
			name:      "no reply within DataTimeout",
			script:    openData + "\nbody\neof",
			size:      10_000,
			ambiguous: true,
			is:        os.ErrDeadlineExceeded,
		},
		{
			name:      "malformed final reply",
			script:    openData + "\nbody\nS: 25O ok",
			size:      10_000,
			ambiguous: true,
			is:        upstream.ErrMalformedReply,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tc.script)
			c := openDataSession(t, s, func(cfg *upstream.Config) { cfg.DataTimeout = 200 * time.Millisecond })
			_, err := c.Body(context.Background(), &lineReader{left: tc.size})
			checkDialErr(t, err, "body", 0, tc.is)
			if got := upstream.Ambiguous(err); got != tc.ambiguous {
				t.Errorf("Ambiguous = %v, want %v (err %v)", got, tc.ambiguous, err)
			}
			if !c.Broken() {
				t.Error("session not broken")
			}
			c.Close()
		})
	}
}

func TestBody_requiresOpenData(t *testing.T) {
	t.Parallel()
	s := newServer(t, openPipelining+`
		C: RSET
		S: 250 ok`)
	c := mustDial(t, s, nil)
	if _, err := c.Body(context.Background(), strings.NewReader("x\r\n")); !errors.Is(err, upstream.ErrUsage) {
		t.Errorf("Body without DATA = %v, want ErrUsage", err)
	}
	if c.Broken() {
		t.Error("refused Body broke the session")
	}
	if err := c.Reset(context.Background()); err != nil {
		t.Errorf("Reset: %v", err)
	}
}

func TestBody_cancelDuringBody(t *testing.T) {
	t.Parallel()
	s := newServer(t, openData+`
		read 1000
		eof`)
	c := openDataSession(t, s, func(cfg *upstream.Config) { cfg.CommandTimeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The context ends while the body streams: after 1 MiB of 256.
	r := &cancelReader{r: &lineReader{left: 256 << 20}, after: 1 << 20, cancel: cancel}
	_, err := c.Body(ctx, r)
	if !errors.Is(err, context.Canceled) || upstream.Ambiguous(err) {
		t.Errorf("Body = %v, want context.Canceled, not ambiguous", err)
	}
	c.Close()
	s.wait(t)
}

// cancelReader calls cancel once it has read after bytes.
type cancelReader struct {
	r      io.Reader
	after  int
	cancel func()
}

func (r *cancelReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.after -= n; r.after <= 0 {
		r.cancel()
	}
	return n, err
}

// lineReader yields left bytes of 78-character CRLF lines, some starting
// with a dot, without holding them in memory.
type lineReader struct {
	left int64
	off  int
}

const sampleLine = ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-_=+()\r\n"

func (r *lineReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], sampleLine[r.off:])
		n += k
		r.off = (r.off + k) % len(sampleLine)
	}
	r.left -= int64(n)
	return n, nil
}

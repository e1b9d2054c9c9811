package upstream_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

const openChunked = `
		S: 220 fake.test ESMTP ready
		C: EHLO test.local
		S: 250-fake.test hello
		S: 250-PIPELINING
		S: 250-CHUNKING
		S: 250 ENHANCEDSTATUSCODES
		C: MAIL FROM:<a@example.org>
		C: RCPT TO:<b@example.net>
		S: 250 2.1.0 ok
		S: 250 2.1.5 ok`

// chunkedSession dials s (which must start with openChunked) and sends the
// envelope.
func chunkedSession(t *testing.T, s *fakeServer) *upstream.Client {
	t.Helper()
	c := mustDial(t, s, nil)
	if !c.Chunking() {
		t.Fatal("Chunking() false with CHUNKING and PIPELINING offered")
	}
	rs, err := c.Batch(context.Background(), []upstream.Cmd{
		{Verb: "MAIL", Arg: "FROM:<a@example.org>"},
		{Verb: "RCPT", Arg: "TO:<b@example.net>"},
	})
	if err != nil || rs[1].Code != 250 {
		t.Fatalf("Batch = %v, %v", rs, err)
	}
	return c
}

func TestBodyChunked_oneRoundTrip(t *testing.T) {
	t.Parallel()
	s := newServer(t, openChunked+`
		C: BDAT 25 LAST
		read 25
		S: 250 2.0.0 OK queued`)
	c := chunkedSession(t, s)
	before := c.RoundTrips()
	// No final CRLF in the input: one is added, as Body does.
	rp, err := c.BodyChunked(context.Background(), strings.NewReader("Subject: x\r\n\r\n.dot\r\nend"))
	if err != nil || rp.Code != 250 {
		t.Fatalf("BodyChunked = %v, %v", rp, err)
	}
	if n := c.RoundTrips() - before; n != 1 {
		t.Errorf("round trips %d, want 1", n)
	}
	s.wait(t)
}

// A reader that fails, also with io.ErrUnexpectedEOF (a client gone before
// its final dot), must never end the message: no LAST goes out.
func TestBodyChunked_readerErrorSendsNoLast(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("spool read failed")
	for _, tc := range []struct {
		name string
		err  error
		size int
	}{
		{"small, unexpected EOF", io.ErrUnexpectedEOF, 100},
		{"large, unexpected EOF", io.ErrUnexpectedEOF, 200_000},
		{"large, other error", errDisk, 200_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, openChunked+`
				eof`)
			c := chunkedSession(t, s)
			r := io.MultiReader(strings.NewReader(strings.Repeat("y", tc.size)), iotest.ErrReader(tc.err))
			_, err := c.BodyChunked(context.Background(), r)
			if !errors.Is(err, tc.err) {
				t.Fatalf("BodyChunked error = %v, want it to wrap %v", err, tc.err)
			}
			if upstream.Ambiguous(err) || !c.Broken() {
				t.Errorf("ambiguous %v, broken %v; want false, true", upstream.Ambiguous(err), c.Broken())
			}
			s.wait(t)
			_, _, rest := s.received()
			if strings.Contains(string(rest), "LAST") {
				t.Error("a LAST chunk went out")
			}
		})
	}
}

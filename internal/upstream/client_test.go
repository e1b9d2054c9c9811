package upstream_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

var envelope = []upstream.Cmd{
	{Verb: "MAIL", Arg: "FROM:<a@example.org> BODY=8BITMIME"},
	{Verb: "RCPT", Arg: "TO:<b@example.net>"},
	{Verb: "RCPT", Arg: "TO:<nobody@example.net>"},
	{Verb: "DATA"},
}

const envelopeLines = `
	C: MAIL FROM:<a@example.org> BODY=8BITMIME
	C: RCPT TO:<b@example.net>
	C: RCPT TO:<nobody@example.net>
	C: DATA`

// codes lists the code and enhanced code of each reply.
func codes(rs []reply.Reply) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

func TestBatch_pipelinedGoesOutInOneWrite(t *testing.T) {
	t.Parallel()
	s := newServer(t, openPipelining+envelopeLines+`
		S: 250 2.1.0 sender ok
		S: 250 2.1.5 recipient ok
		S: 550-5.1.1 no such
		S: 550 5.1.1 user
		S: 354 go ahead
		body
		S: 250 2.0.0 queued as 1234
		C: QUIT
		S: 221 bye`)
	var writes atomic.Int64
	c := mustDial(t, s, countWrites(&writes))
	w0, rt0 := writes.Load(), c.RoundTrips()

	rs, err := c.Batch(context.Background(), envelope)
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if got := c.RoundTrips() - rt0; got != 1 {
		t.Errorf("round trips = %d, want 1", got)
	}
	if got := writes.Load() - w0; got != 1 {
		t.Errorf("writes = %d, want 1", got)
	}
	want := []string{"250 2.1.0 sender ok", "250 2.1.5 recipient ok", "550 5.1.1 no such user", "354 go ahead"}
	if got := codes(rs); !slices.Equal(got, want) {
		t.Errorf("replies = %q, want %q", got, want)
	}
	if !slices.Equal(rs[2].Lines, []string{"no such", "user"}) {
		t.Errorf("multi-line reply lines = %q", rs[2].Lines)
	}
	r, err := c.Body(context.Background(), stringsReader("Subject: hi\r\n\r\nhello\r\n"))
	if err != nil || r.Code != 250 {
		t.Fatalf("Body = %v, %v", r, err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	s.wait(t)
}

func TestBatch_withoutPipeliningOneAtATime(t *testing.T) {
	t.Parallel()
	s := newServer(t, openPlain+`
		C: MAIL FROM:<a@example.org> BODY=8BITMIME
		S: 250 sender ok
		C: RCPT TO:<b@example.net>
		S: 250 recipient ok
		C: RCPT TO:<nobody@example.net>
		S: 550 no such user
		C: DATA
		S: 354 go ahead`)
	var writes atomic.Int64
	c := mustDial(t, s, countWrites(&writes))
	w0, rt0 := writes.Load(), c.RoundTrips()
	rs, err := c.Batch(context.Background(), envelope)
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if got := c.RoundTrips() - rt0; got != 4 {
		t.Errorf("round trips = %d, want 4", got)
	}
	if got := writes.Load() - w0; got != 4 {
		t.Errorf("writes = %d, want 4", got)
	}
	want := []string{"250 sender ok", "250 recipient ok", "550 no such user", "354 go ahead"}
	if got := codes(rs); !slices.Equal(got, want) {
		t.Errorf("replies = %q, want %q", got, want)
	}
}

func TestBatch_refusesBadCommandsBeforeSending(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmds []upstream.Cmd
	}{
		{"DATA not last", []upstream.Cmd{{Verb: "MAIL", Arg: "FROM:<a@b>"}, {Verb: "DATA"}, {Verb: "RSET"}}},
		{"CRLF in an argument", []upstream.Cmd{{Verb: "MAIL", Arg: "FROM:<a@b>\r\nRCPT TO:<x@y>"}}},
		{"LF in an argument", []upstream.Cmd{{Verb: "RCPT", Arg: "TO:<x@y>\nDATA"}}},
		{"empty verb", []upstream.Cmd{{Arg: "x"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The session still works afterwards: the next command is the
			// first thing the server sees.
			s := newServer(t, openPipelining+`
				C: RSET
				S: 250 2.0.0 ok`)
			c := mustDial(t, s, nil)
			rs, err := c.Batch(context.Background(), tc.cmds)
			if !errors.Is(err, upstream.ErrUsage) || rs != nil {
				t.Fatalf("Batch = %v, %v; want ErrUsage", rs, err)
			}
			if c.Broken() {
				t.Error("refused batch broke the session")
			}
			if err := c.Reset(context.Background()); err != nil {
				t.Errorf("Reset: %v", err)
			}
			s.wait(t)
		})
	}
}

func TestBatch_connectionLost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		script  string
		answers int
		stage   string
	}{
		{
			name:    "pipelined, before any reply",
			script:  openPipelining + envelopeLines + "\nclose",
			answers: 0, stage: "mail",
		},
		{
			name: "pipelined, before the DATA reply",
			script: openPipelining + envelopeLines + `
				S: 250 ok
				S: 250 ok
				S: 550 no
				close`,
			answers: 3, stage: "data",
		},
		{
			name: "pipelined, inside a multi-line reply",
			script: openPipelining + envelopeLines + `
				S: 250 ok
				S: 250-first
				close`,
			answers: 1, stage: "rcpt",
		},
		{
			name: "one at a time, before the RCPT reply",
			script: openPlain + `
				C: MAIL *
				S: 250 ok
				C: RCPT *
				close`,
			answers: 1, stage: "rcpt",
		},
		{
			name: "malformed reply",
			script: openPipelining + envelopeLines + `
				S: 250 ok
				S: 2x0 what`,
			answers: 1, stage: "rcpt",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tc.script)
			c := mustDial(t, s, nil)
			rs, err := c.Batch(context.Background(), envelope)
			if len(rs) != tc.answers {
				t.Errorf("got %d replies, want %d", len(rs), tc.answers)
			}
			checkDialErr(t, err, tc.stage, 0, nil)
			if !c.Broken() {
				t.Error("session not broken")
			}
			if _, err := c.Batch(context.Background(), envelope[:1]); !errors.Is(err, upstream.ErrBroken) {
				t.Errorf("Batch on a broken session = %v, want ErrBroken", err)
			}
		})
	}
}

func TestBatch_421BreaksSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, openPipelining+`
		C: MAIL FROM:<a@example.org>
		S: 421 4.3.0 closing, too many sessions`)
	c := mustDial(t, s, nil)
	rs, err := c.Batch(context.Background(), []upstream.Cmd{{Verb: "MAIL", Arg: "FROM:<a@example.org>"}})
	if err != nil || len(rs) != 1 || rs[0].Code != 421 {
		t.Fatalf("Batch = %v, %v", rs, err)
	}
	if !c.Broken() {
		t.Error("421 did not break the session")
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	s := newServer(t, openPipelining+`
		C: RSET
		S: 250 2.0.0 flushed
		C: RSET
		S: 500 5.5.1 what`)
	c := mustDial(t, s, nil)
	if err := c.Reset(context.Background()); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	err := c.Reset(context.Background())
	checkDialErr(t, err, "rset", 500, nil)
	if !c.Broken() {
		t.Error("failed RSET did not break the session")
	}
}

func TestQuit(t *testing.T) {
	t.Parallel()
	t.Run("sends QUIT", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPipelining+`
			C: QUIT
			S: 221 2.0.0 bye
			eof`)
		c := mustDial(t, s, nil)
		if err := c.Quit(context.Background()); err != nil {
			t.Errorf("Quit: %v", err)
		}
		s.wait(t) // eof: Quit closed the connection
		if !c.Broken() {
			t.Error("session usable after Quit")
		}
	})
	t.Run("broken session is just closed", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPipelining+`
			C: RSET
			S: 554 no
			eof`)
		c := mustDial(t, s, nil)
		c.Reset(context.Background())
		if err := c.Quit(context.Background()); err != nil {
			t.Errorf("Quit: %v", err)
		}
		s.wait(t)
		if _, _, rest := s.received(); len(rest) != 0 {
			t.Errorf("sent %q on a broken session", rest)
		}
	})
}

// poll checks cond every 5ms until it holds (true) or 10s pass (false).
// Unlike t.Fatal it may be used from any goroutine.
func poll(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

func TestContext(t *testing.T) {
	t.Parallel()
	// CommandTimeout is long: only the context can end these calls quickly.
	long := func(cfg *upstream.Config) { cfg.CommandTimeout, cfg.DataTimeout = time.Minute, time.Minute }

	t.Run("cancel while waiting for a reply", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPipelining+`
			C: MAIL *
			eof`)
		c := mustDial(t, s, long)
		ctx, cancel := context.WithCancel(context.Background())
		// Cancel once the server holds the MAIL command (lines: EHLO, MAIL).
		go func() {
			poll(func() bool { lines, _, _ := s.received(); return len(lines) == 2 })
			cancel()
		}()
		start := time.Now()
		_, err := c.Batch(ctx, envelope[:1])
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Batch = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("cancel took %v", d)
		}
		if !c.Broken() {
			t.Error("cancelled session not broken")
		}
		c.Close()
		s.wait(t)
	})
	t.Run("context deadline bounds a command", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPipelining+`
			C: MAIL *
			eof`)
		c := mustDial(t, s, long)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Batch(ctx, envelope[:1])
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Batch = %v, want context.DeadlineExceeded", err)
		}
		c.Close()
		s.wait(t)
	})
	t.Run("context deadline bounds Dial", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, `eof`) // never greets
		cfg := baseConfig(s.addr)
		long(&cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := upstream.Dial(ctx, cfg)
		checkDialErr(t, err, "greeting", 0, context.DeadlineExceeded)
		s.wait(t)
	})
	t.Run("context done before the call sends nothing", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPipelining+`
			C: RSET
			S: 250 ok`)
		c := mustDial(t, s, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.Batch(ctx, envelope); !errors.Is(err, context.Canceled) {
			t.Errorf("Batch = %v, want context.Canceled", err)
		}
		if c.Broken() {
			t.Error("session broken though nothing was sent")
		}
		if err := c.Reset(context.Background()); err != nil {
			t.Errorf("Reset: %v", err)
		}
	})
}

func TestCommandTimeout_cutsOffSlowServer(t *testing.T) {
	t.Parallel()
	short := func(cfg *upstream.Config) { cfg.CommandTimeout = 200 * time.Millisecond }
	t.Run("greeting", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, `slow: 220 fake.test ESMTP at a snail's pace`)
		start := time.Now()
		_, err := dial(t, s, short)
		checkDialErr(t, err, "greeting", 0, os.ErrDeadlineExceeded)
		// The whole line would take over 4s.
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("cut off after %v", d)
		}
	})
	t.Run("reply", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, openPipelining+`
			C: MAIL *
			slow: 250 2.1.0 sender ok, eventually`)
		c := mustDial(t, s, short)
		_, err := c.Batch(context.Background(), envelope[:1])
		checkDialErr(t, err, "mail", 0, os.ErrDeadlineExceeded)
		if !c.Broken() {
			t.Error("timed-out session not broken")
		}
	})
}

package upstream

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// chunkPool lends the copy buffer of Body, so idle sessions hold none and
// no message allocates one. Only used when the reader has no WriteTo.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Body sends the message after a 354 reply to DATA and returns the server's
// final reply, whatever its code (judging it is the caller's job, as with
// Batch). r yields the message with CRLF line ends, not dot-stuffed; Body
// stuffs it while streaming through bounded buffers, adds CRLF if the data
// did not end with one, sends ".\r\n" and waits up to Config.DataTimeout
// for the reply.
//
// If r fails, the connection is closed without the final dot, so the
// server discards the partial message; the error wraps r's error. If the
// connection fails after the dot was sent and before the reply came,
// Ambiguous(err) is true. Any error breaks the session.
func (c *Client) Body(ctx context.Context, r io.Reader) (reply.Reply, error) {
	if !c.dataOpen {
		return reply.Reply{}, &Error{Stage: "body", Err: fmt.Errorf("%w: Body without a 354 reply to DATA", ErrUsage)}
	}
	k, err := c.begin(ctx, "body")
	if err != nil {
		// The server waits for data we will not send; only closing ends it.
		c.Close()
		return reply.Reply{}, err
	}
	defer k.end()
	c.dataOpen = false

	c.dw.Reset(c.bw)
	c.body.start(k.limit)
	bufp := chunkPool.Get().(*[]byte)
	_, err = io.CopyBuffer(&c.body, r, *bufp)
	chunkPool.Put(bufp)
	if err != nil {
		if c.body.err == nil {
			// r failed: drop the connection before any dot can go out.
			c.Close()
			return reply.Reply{}, &Error{Stage: "body", Err: fmt.Errorf("read message: %w", err)}
		}
		return reply.Reply{}, k.fail("body", err)
	}

	if err := k.arm(c.commandTimeout); err != nil {
		return reply.Reply{}, k.fail("body", err)
	}
	if err := c.dw.Close(); err != nil {
		return reply.Reply{}, k.fail("body", err)
	}
	// A failed write means the dot did not get out whole: not ambiguous.
	if err := c.flush(); err != nil {
		return reply.Reply{}, k.fail("body", err)
	}
	return k.finalReply()
}

// finalReply reads a reply to a message's end (the dot, or a BDAT chunk)
// within DataTimeout. The end is out: a failure now leaves the message's
// fate unknown (Ambiguous).
func (k *call) finalReply() (reply.Reply, error) {
	if err := k.arm(k.c.dataTimeout); err != nil {
		e := k.fail("body", err)
		e.ambiguous = true
		return reply.Reply{}, e
	}
	rep, err := k.c.readReply()
	if err != nil {
		e := k.fail("body", err)
		e.ambiguous = true
		return reply.Reply{}, e
	}
	return rep, nil
}

// bodyWriter feeds the DotWriter, keeps the write deadline moving while a
// long body streams, and remembers its own first error so Body can tell a
// failing connection from a failing reader.
type bodyWriter struct {
	c       *Client
	limit   time.Time // the call's context deadline
	rearmAt time.Time // when to push the deadline forward again
	err     error
}

func (w *bodyWriter) start(limit time.Time) {
	w.limit, w.rearmAt, w.err = limit, time.Time{}, nil
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	// Re-arming costs a timer update, so it happens once per half
	// timeout: each write gets between half and all of CommandTimeout.
	if now := time.Now(); !now.Before(w.rearmAt) {
		if err := w.c.setDeadline(w.limit, w.c.commandTimeout); err != nil {
			w.err = err
			return 0, err
		}
		w.rearmAt = now.Add(w.c.commandTimeout / 2)
	}
	n, err := w.c.dw.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

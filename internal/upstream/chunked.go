package upstream

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Chunking reports whether the server offers BDAT (RFC 3030 CHUNKING) and
// PIPELINING, so that BodyChunked can send a message without waiting for
// a 354 or for the replies to its chunks.
func (c *Client) Chunking() bool {
	_, ok := c.ext["CHUNKING"]
	return ok && c.pipelining && !c.noChunking
}

// BodyChunked sends the message with BDAT instead of DATA, after the
// envelope (MAIL and at least one accepted RCPT) and returns the server's
// final reply, whatever its code. The chunks go out back to back without
// waiting for their replies (RFC 3030 §4.2 allows pipelining them), the
// last one marked LAST, and the replies are read afterwards: a message
// costs one round trip, where DATA costs two (its 354, then the body and
// the dot). BDAT carries the bytes as they are, so nothing is dot-stuffed.
//
// r yields the message with CRLF line ends, not dot-stuffed; as Body does,
// BodyChunked adds a CRLF when the data does not end with one. If r fails,
// the connection is closed before the LAST chunk, so the server discards
// the partial message; the error wraps r's error. If the connection fails
// after the LAST chunk went out and before its reply came, Ambiguous(err)
// is true. Any error breaks the session.
func (c *Client) BodyChunked(ctx context.Context, r io.Reader) (reply.Reply, error) {
	if c.dataOpen || !c.Chunking() {
		return reply.Reply{}, &Error{Stage: "body", Err: fmt.Errorf("%w: BDAT without CHUNKING and PIPELINING, or while DATA is open", ErrUsage)}
	}
	k, err := c.begin(ctx, "body")
	if err != nil {
		return reply.Reply{}, err
	}
	defer k.end()

	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	// The chunk is read whole before it is sent, with two bytes spare for
	// a CRLF the message may lack at its end.
	buf := (*bufp)[:len(*bufp)-2]
	chunks := 0
	var tail [2]byte // the last two bytes of the message so far
	wrote := false
	var hdr [32]byte
	for {
		n, rerr := fill(r, buf)
		last := rerr == io.EOF
		if rerr != nil && !last {
			// r failed: drop the connection before a LAST can go out.
			c.Close()
			return reply.Reply{}, &Error{Stage: "body", Err: fmt.Errorf("read message: %w", rerr)}
		}
		chunk := buf[:n]
		if n > 0 {
			wrote = true
			if n >= 2 {
				tail = [2]byte{chunk[n-2], chunk[n-1]}
			} else {
				tail = [2]byte{tail[1], chunk[0]}
			}
		}
		if last && wrote && tail != [2]byte{'\r', '\n'} {
			chunk = append(chunk, '\r', '\n') // within buf's spare capacity
		}
		h := append(hdr[:0], "BDAT "...)
		h = strconv.AppendInt(h, int64(len(chunk)), 10)
		if last {
			h = append(h, " LAST"...)
		}
		h = append(h, '\r', '\n')
		// Each write gets CommandTimeout: a full buffer blocks on the
		// server's reading, not on a reply.
		if err := k.arm(c.commandTimeout); err != nil {
			return reply.Reply{}, k.fail("body", err)
		}
		c.bw.Write(h)
		if _, err := c.bw.Write(chunk); err != nil {
			return reply.Reply{}, k.fail("body", err)
		}
		chunks++
		if last {
			break
		}
	}
	// A failed write means LAST did not get out whole: not ambiguous.
	if err := k.arm(c.commandTimeout); err != nil {
		return reply.Reply{}, k.fail("body", err)
	}
	if err := c.flush(); err != nil {
		return reply.Reply{}, k.fail("body", err)
	}
	// One reply per chunk. A refused chunk makes the server refuse the
	// rest (RFC 3030 §3), so the first refusal is the message's verdict.
	var verdict reply.Reply
	for i := range chunks {
		rep, err := k.finalReply() // body.go
		if err != nil {
			return reply.Reply{}, err
		}
		if i == 0 || verdict.Positive() {
			verdict = rep // the last reply, unless a chunk was refused before
		}
	}
	return verdict, nil
}

// fill reads into buf until it is full or r ends. Unlike io.ReadFull it
// reports the end of r only as io.EOF: any other error, io.ErrUnexpectedEOF
// from r included (a client gone before its final dot), is r's failure
// and must not end the message as if complete.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

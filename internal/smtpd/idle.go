package smtpd

import (
	"bufio"
	"sync"
	"syscall"
)

// Most of a relay's client connections are idle most of the time: PowerMTA
// keeps its connections open between bursts, and 10,000 of them are
// normal. What an idle connection holds is its goroutine's stack and its
// buffers; the read and write buffers (4 KiB each) are given back while a
// plain TCP connection waits for its client's next command, and taken
// again when bytes arrive, so an idle connection costs about half.
//
// The wait itself must not read (bufio would need its buffer for the
// bytes): syscall.RawConn.Read waits in the runtime's poller until the
// socket is readable, after a MSG_PEEK check, since the poller only
// reports data that arrives after the wait began.

const connBufferBytes = 4096

// connBuffers lends the buffers of a server's connections.
type connBuffers struct {
	readers, writers sync.Pool
}

func (p *connBuffers) reader() *bufio.Reader {
	if r, ok := p.readers.Get().(*bufio.Reader); ok {
		return r
	}
	return bufio.NewReaderSize(nil, connBufferBytes)
}

func (p *connBuffers) writer() *bufio.Writer {
	if w, ok := p.writers.Get().(*bufio.Writer); ok {
		return w
	}
	return bufio.NewWriterSize(nil, connBufferBytes)
}

// takeBuffers gives c its read and write buffers.
func (c *conn) takeBuffers() {
	c.br = c.srv.buffers.reader()
	c.br.Reset(c.nc)
	c.bw = c.srv.buffers.writer()
	c.bw.Reset(deadlineWriter{c})
}

// giveBuffers returns c's buffers; the reader's unread bytes and the
// writer's unsent ones are dropped, so only call it when there are none
// or the connection is over.
func (c *conn) giveBuffers() {
	if c.br == nil {
		return
	}
	c.br.Reset(nil)
	c.bw.Reset(nil)
	c.srv.buffers.readers.Put(c.br)
	c.srv.buffers.writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// initIdle prepares waitIdle for a plain TCP connection.
func (c *conn) initIdle() {
	sc, ok := c.raw.(syscall.Conn)
	if !ok || !peekSupported {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.rawConn = rc
	c.readable = c.peekReadable
}

// waitIdle waits, without buffers, until the client has sent something
// or the read deadline passed (the error is then the deadline's, as a
// read's would be). The caller has flushed and found nothing buffered.
func (c *conn) waitIdle() error {
	if c.rawConn == nil || c.nc != c.raw {
		// After STARTTLS the TLS layer holds bytes of its own: a
		// readable socket says nothing about them.
		return nil
	}
	c.giveBuffers()
	err := c.rawConn.Read(c.readable)
	c.takeBuffers()
	return err
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the relay's buffering, per connection and direction: at most
// relayMaxChunks reads of up to relayChunkBytes each wait for their due
// time. Beyond that the relay stops reading, and TCP flow control pushes
// back on the sender, as a real link's bandwidth-delay product would.
const (
	relayChunkBytes = 16 << 10
	relayMaxChunks  = 64
	relayDialTime   = 5 * time.Second
)

// RelayStats are the relay's counters since Start.
type RelayStats struct {
	Connections int64 // connections relayed
	// RoundTrips counts the times the target sent bytes after receiving
	// bytes from the client since it last sent: each is one reply burst
	// that the client waited for. SMTP replies to a pipelined group count
	// once; TLS handshake flights count as they happen on the wire.
	RoundTrips    int64
	BytesToTarget int64 // bytes forwarded client → target
	BytesToClient int64 // bytes forwarded target → client
}

// LatencyRelay is a TCP relay on loopback that forwards each accepted
// connection to a target and delays every chunk, in each direction, by a
// fixed one-way latency. It does not serialise chunks: each read is
// stamped when it arrives and written when its time is due, while later
// reads go on, so two chunks sent 5 ms apart arrive 5 ms apart, one
// latency later. Both directions run independently. With zero latency it
// forwards at once (and still counts).
type LatencyRelay struct {
	target string
	delay  time.Duration
	ln     net.Listener
	ctx    context.Context // ends at Close; bounds dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and connection handlers

	mu     sync.Mutex
	conns  map[*relayConn]struct{}
	closed bool

	connections, roundTrips, bytesUp, bytesDown atomic.Int64
}

// StartRelay listens on 127.0.0.1 and relays to target with the one-way
// delay given. Close stops it.
func StartRelay(target string, delay time.Duration) (*LatencyRelay, error) {
	if delay < 0 {
		return nil, fmt.Errorf("relay: negative latency %v", delay)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &LatencyRelay{
		target: target, delay: delay, ln: ln, ctx: ctx, cancel: cancel,
		conns: make(map[*relayConn]struct{}),
	}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is the relay's listening host:port.
func (r *LatencyRelay) Addr() string { return r.ln.Addr().String() }

// Stats returns the counters.
func (r *LatencyRelay) Stats() RelayStats {
	return RelayStats{
		Connections:   r.connections.Load(),
		RoundTrips:    r.roundTrips.Load(),
		BytesToTarget: r.bytesUp.Load(),
		BytesToClient: r.bytesDown.Load(),
	}
}

// Close stops accepting, aborts every relayed connection and waits for
// all of the relay's goroutines.
func (r *LatencyRelay) Close() error {
	r.mu.Lock()
	r.closed = true
	conns := make([]*relayConn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	r.cancel()
	err := r.ln.Close()
	for _, c := range conns {
		c.abort()
	}
	r.wg.Wait()
	return err
}

func (r *LatencyRelay) accept() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.ctx.Err() != nil {
				return
			}
			// A transient error such as EMFILE: back off briefly.
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		r.wg.Go(func() { r.handle(in) })
	}
}

// relayConn is one relayed connection: the client side and the target side.
type relayConn struct {
	in    net.Conn
	done  chan struct{} // closed by abort
	once  sync.Once
	spoke atomic.Bool // the client sent bytes since the target last did

	mu  sync.Mutex
	out net.Conn // nil until dialled
}

// abort ends both directions at once, dropping what is queued.
func (c *relayConn) abort() {
	c.once.Do(func() {
		close(c.done)
		c.in.Close()
		c.mu.Lock()
		out := c.out
		c.mu.Unlock()
		if out != nil {
			out.Close()
		}
	})
}

func (r *LatencyRelay) handle(in net.Conn) {
	c := &relayConn{in: in, done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		in.Close()
		return
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	defer func() {
		c.abort()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(r.ctx, relayDialTime)
	d := net.Dialer{}
	out, err := d.DialContext(ctx, "tcp", r.target)
	cancel()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.out = out
	c.mu.Unlock()
	select {
	case <-c.done: // aborted while dialling: abort did not see out
		out.Close()
		return
	default:
	}
	r.connections.Add(1)

	up := &direction{
		src: in, dst: out, delay: r.delay, done: c.done, abort: c.abort,
		// Mark before writing: the target may answer before Write returns.
		beforeWrite: func(n int) {
			r.bytesUp.Add(int64(n))
			c.spoke.Store(true)
		},
	}
	down := &direction{
		src: out, dst: in, delay: r.delay, done: c.done, abort: c.abort,
		onRead: func(int) {
			if c.spoke.Swap(false) {
				r.roundTrips.Add(1)
			}
		},
		beforeWrite: func(n int) { r.bytesDown.Add(int64(n)) },
	}
	var wg sync.WaitGroup
	wg.Go(up.run)
	wg.Go(down.run)
	wg.Wait()
}

// direction forwards one way: src → dst.
type direction struct {
	src, dst net.Conn
	delay    time.Duration
	done     <-chan struct{}
	abort    func()
	// onRead sees each read from src, beforeWrite each write to dst before
	// it starts; either may be nil.
	onRead, beforeWrite func(n int)

	queue chan chunk
	free  chan []byte
	nbuf  int // buffers allocated, ≤ relayMaxChunks
}

// chunk is one read, due for writing at due; eof marks the source's end.
type chunk struct {
	b   []byte
	due time.Time
	eof bool
}

func (d *direction) run() {
	if d.delay == 0 {
		d.copyNow()
		return
	}
	d.queue = make(chan chunk, relayMaxChunks+1) // +1: the eof mark
	d.free = make(chan []byte, relayMaxChunks)
	var wg sync.WaitGroup
	wg.Go(d.write)
	d.read()
	wg.Wait()
}

// copyNow forwards without delay.
func (d *direction) copyNow() {
	buf := make([]byte, relayChunkBytes)
	for {
		n, err := d.src.Read(buf)
		if n > 0 {
			if d.onRead != nil {
				d.onRead(n)
			}
			if d.beforeWrite != nil {
				d.beforeWrite(n)
			}
			if _, werr := d.dst.Write(buf[:n]); werr != nil {
				d.abort()
				return
			}
		}
		if err != nil {
			d.finish(err)
			return
		}
	}
}

// finish passes the source's end on: a clean EOF becomes a half-close, so
// bytes still travelling the other way arrive; a reset or any other error
// aborts both directions.
func (d *direction) finish(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		if cw, ok := d.dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	d.abort()
}

// read stamps each read with its due time and queues it. It waits for a
// free buffer when relayMaxChunks are in flight.
func (d *direction) read() {
	defer close(d.queue)
	for {
		var buf []byte
		select {
		case buf = <-d.free:
		default:
			if d.nbuf < relayMaxChunks {
				d.nbuf++
				buf = make([]byte, relayChunkBytes)
			} else {
				select {
				case buf = <-d.free:
				case <-d.done:
					return
				}
			}
		}
		n, err := d.src.Read(buf)
		due := time.Now().Add(d.delay)
		if n > 0 {
			if d.onRead != nil {
				d.onRead(n)
			}
			// The queue has room for every buffer plus the eof mark.
			d.queue <- chunk{b: buf[:n], due: due}
		} else {
			d.free <- buf
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				d.queue <- chunk{due: due, eof: true}
			} else {
				d.abort()
			}
			return
		}
	}
}

// write sends each chunk when it is due, in order.
func (d *direction) write() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for ch := range d.queue {
		if wait := time.Until(ch.due); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-d.done:
				return
			}
		}
		if ch.eof {
			d.finish(nil)
			return
		}
		if d.beforeWrite != nil {
			d.beforeWrite(len(ch.b))
		}
		if _, err := d.dst.Write(ch.b); err != nil {
			d.abort()
			return
		}
		d.free <- ch.b[:cap(ch.b)]
	}
}

package fakeprovider

import (
	"crypto/tls"
	"io"
	"net"
	"time"
)

// DefaultTrickleInterval is the pause between bytes of a trickled reply.
const DefaultTrickleInterval = time.Second

// sessionFault runs the session fault for stage st, once per session
// unless Fault.Repeat. It reports true when the fault took the stage over:
// the normal reply must not be sent (the session may be closed).
// ActTrickle only slows the output down and reports false.
func (s *session) sessionFault(st Stage) bool {
	f := s.fault
	if f.Stage != st || (s.faulted && !f.Repeat) {
		return false
	}
	s.faulted = true
	s.p.sessionFaults.Add(1)
	s.p.log.Info("session fault", "conn_id", s.id, "stage", st, "action", f.Action)
	switch f.Action {
	case ActDrop:
		s.drop("session fault")
	case ActReset:
		s.reset("session fault")
	case ActStall:
		s.stall("session fault")
	case ActReply:
		s.replyR(f.Reply)
		if st == StageGreeting {
			s.w.Flush()
			s.closed = true
		}
	case ActTrickle:
		s.trickle = true
		return false
	case ActGarbage:
		s.w.Flush()
		_, _ = s.raw.Write([]byte(garbage))
		s.closed = true
		s.raw.Close()
	default:
		return false
	}
	return true
}

// handshakeTLS runs the server side of TLS over the raw connection, with
// the StageTLS fault if there is one. It reports false when the session
// must end.
func (s *session) handshakeTLS() bool {
	under := s.raw
	if s.sessionFault(StageTLS) {
		return false
	}
	if s.trickle {
		under = trickleConn{Conn: s.raw, s: s}
	}
	tc := tls.Server(under, s.p.opts.TLSConfig)
	if err := tc.Handshake(); err != nil {
		s.p.log.Debug("tls handshake", "conn_id", s.id, "err", err)
		return false
	}
	s.conn, s.tls = tc, true
	s.p.tlsHandshakes.Add(1)
	if tc.ConnectionState().DidResume {
		s.p.tlsResumed.Add(1)
	}
	return true
}

// stall stops answering: replies already queued go out, then the session
// reads and discards until the client closes or the provider is closed.
func (s *session) stall(why string) {
	s.p.log.Info("stalling", "conn_id", s.id, "reason", why)
	s.w.Flush()
	_, _ = io.Copy(io.Discard, s.raw)
	s.closed = true
}

// maxFreeze bounds freeze, so a forgotten connection cannot hold a
// goroutine for ever.
const maxFreeze = time.Minute

// freeze stops reading as well as answering, with the smallest receive
// buffer, so the client's writes block once the buffers are full; after
// maxFreeze, or at Close, the connection is closed.
func (s *session) freeze(why string) {
	s.p.log.Info("frozen", "conn_id", s.id, "reason", why)
	if tc, ok := s.raw.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(1) // the kernel's minimum
	}
	s.pause(maxFreeze)
	s.closed = true
	s.raw.Close()
}

// reset closes the connection with a TCP RST instead of a FIN.
func (s *session) reset(why string) {
	s.p.log.Info("connection reset", "conn_id", s.id, "reason", why)
	if tc, ok := s.raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	s.closed = true
	s.raw.Close()
}

// pause waits d, or until Close; it reports false when closing.
func (s *session) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.p.done:
		return false
	}
}

// write sends b on c, one byte per TrickleInterval once trickling.
func (s *session) write(c net.Conn, b []byte) (int, error) {
	if !s.trickle {
		return c.Write(b)
	}
	d := s.p.opts.TrickleInterval
	if d <= 0 {
		d = DefaultTrickleInterval
	}
	for i := range b {
		if !s.pause(d) {
			return i, net.ErrClosed
		}
		if _, err := c.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// sessionWriter is what the session's bufio.Writer writes to: the current
// connection (raw or TLS), trickled when asked.
type sessionWriter struct{ s *session }

func (w sessionWriter) Write(b []byte) (int, error) { return w.s.write(w.s.conn, b) }

// trickleConn trickles the TLS handshake's own writes.
type trickleConn struct {
	net.Conn
	s *session
}

func (c trickleConn) Write(b []byte) (int, error) { return c.s.write(c.Conn, b) }

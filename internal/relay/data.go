package relay

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// countingReader counts the message bytes handed upstream.
type countingReader struct {
	r   io.Reader
	n   int64
	err error         // the first non-EOF error of r
	hdr headerSniffer // the header section, for the Message-ID (msgid.go)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.hdr.add(p[:n])
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// Data implements smtpd.Txn.
func (t *txn) Data(ctx context.Context, r io.Reader) reply.Reply {
	if t.lease == nil || t.state.broken {
		return errLost
	}
	sess := t.lease.Session()
	cr := &countingReader{r: r}
	var rp reply.Reply
	var err error
	if t.state.chunked {
		rp, err = sess.BodyChunked(ctx, cr)
	} else {
		rp, err = sess.Body(ctx, cr)
	}
	t.out.size = cr.n
	t.out.msgID = cr.hdr.messageID()
	switch {
	case cr.err != nil:
		// The client side failed (size limit, line limit, disconnect);
		// the upstream got no final dot and drops the partial message.
		t.state.broken = true
		rp = refusal(t.a.Cfg.Email, cr.err, t.c.ID)
	case err != nil:
		t.state.broken = true
		if upstream.Ambiguous(err) {
			t.state.ambiguous = true
			t.r.Stats.Ambiguous.Add(1)
		}
		rp = refusal(t.a.Cfg.Email, err, t.c.ID)
	}
	t.out.final = &rp
	if rp.Positive() {
		t.lease.Delivered()
	}
	if err == nil && cr.err == nil {
		t.r.m.upstreamReplies.WithLabelValues("end", classOf(rp.Code)).Inc()
		rp = t.r.clientReply(t.a, rp)
		t.out.final = &rp
	}
	t.ticket.Done(rp.Positive())
	t.r.m.messageSize.Observe(float64(cr.n))
	t.r.m.relayedBytes.Add(float64(cr.n))
	return rp
}

// Close implements smtpd.Txn: the session goes back to the pool (after an
// RSET when the transaction was left half-way), or is discarded when broken.
func (t *txn) Close() {
	defer t.a.Done()
	defer t.ticket.Done(false) // no-op after Data's Done
	defer t.r.m.concurrent.Dec()
	t.logOutcome()
	if t.lease == nil {
		return
	}
	sess := t.lease.Session()
	if t.state.broken || sess.Broken() {
		t.lease.Discard()
		t.lease = nil
		return
	}
	if t.out.final == nil && t.state.answered {
		// Aborted mid-envelope (RSET, client gone, refused DATA): clear
		// the upstream's transaction before the session is reused.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := sess.Reset(ctx)
		cancel()
		if err != nil {
			t.lease.Discard()
			t.lease = nil
			return
		}
	}
	t.lease.Release()
	t.lease = nil
}

func (t *txn) logOutcome() {
	if t.out.final == nil {
		t.r.m.messages.WithLabelValues("aborted").Inc()
		if t.out.from != "" || t.out.rcpts > 0 {
			t.r.log.Info("message aborted", "conn_id", t.c.ID, "remote", t.remote, "account", t.a.Cfg.ID,
				"from", t.out.from, "rcpts", t.out.rcpts, "accepted_rcpts", t.out.okRcpts)
		}
		return
	}
	result := "sent"
	switch {
	case t.state.ambiguous:
		result = "ambiguous"
	case t.out.final.Temporary():
		result = "deferred"
	case t.out.final.Permanent():
		result = "rejected"
	}
	now := time.Now()
	took := now.Sub(t.start)
	t.r.m.messages.WithLabelValues(result).Inc()
	t.r.m.messageDuration.Observe(took.Seconds())
	if t.r.m.perAccount != nil {
		t.r.m.perAccount.WithLabelValues(t.a.Cfg.ID, result).Inc()
	}
	if t.out.final.Positive() {
		t.r.Stats.Messages.Add(1)
		t.a.Sent.Add(1)
	} else {
		t.r.Stats.Failed.Add(1)
		t.a.Failed.Add(1)
		if t.state.ambiguous {
			t.a.Ambiguous.Add(1)
		}
	}
	final := t.out.final.String()
	t.a.SetLastReply(final, now)
	// LogAttrs with typed attributes: this line is written for every
	// message, so it avoids boxing each value in an interface.
	t.r.log.LogAttrs(context.Background(), slog.LevelInfo, "message",
		slog.String("conn_id", t.c.ID), slog.String("remote", t.remote), slog.String("account", t.a.Cfg.ID),
		slog.String("from", t.out.from), slog.Int("rcpts", t.out.rcpts), slog.Int("accepted_rcpts", t.out.okRcpts),
		slog.Int64("size", t.out.size), slog.Int("code", t.out.final.Code), slog.String("reply", final),
		slog.Int64("duration_ms", took.Milliseconds()), slog.String("message_id", t.out.msgID))
}

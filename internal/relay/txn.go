package relay

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// txn is one mail transaction: who sends, over which lease, with which
// budget reservation, and what happened so far.
type txn struct {
	r      *Relay
	a      *account.Account
	c      *smtpd.ConnInfo
	remote string // c.Remote formatted
	start  time.Time
	lease  account.Lease // nil until the first envelope batch
	ticket quota.Ticket  // the budget reservation (noTicket when budgets are off)
	state  txnState
	out    outcome
	batch  batch
}

// txnState is what the upstream side of the transaction has come to.
type txnState struct {
	sent     bool // a batch went upstream (the stale-session retry is for the first only)
	answered bool // some upstream reply was read: Close must RSET before reuse
	// mail is the MAIL command accepted here and not yet sent: a client
	// that does not pipeline sends MAIL alone, and it goes upstream with
	// the first RCPT, whose reply then carries the upstream's verdict on
	// both (one round trip fewer per message).
	mail *upstream.Cmd
	// refused is the upstream's refusal of a MAIL accepted here: it is
	// every later command's answer.
	refused *reply.Reply
	// chunked: DATA was answered 354 here and the body goes as BDAT
	// (account.Conn.Chunking).
	chunked   bool
	broken    bool // the upstream session failed; later commands get 451
	ambiguous bool // the dot was sent and the final reply lost
}

// outcome is what the transaction's log line reports.
type outcome struct {
	from    string
	rcpts   int
	okRcpts int
	size    int64
	msgID   string       // the Message-ID header the client wrote; "" when none
	final   *reply.Reply // nil until DATA's final reply
}

// batch is one envelope batch's scratch space, reused across the
// transaction's batches: per command, whether it was answered here (local)
// and whether it holds a recipient reservation (reserved); the upstream
// commands. A pipelined single-recipient message is MAIL, RCPT, DATA: the
// arrays start in the txn itself, not on the heap apart.
type batch struct {
	local, reserved []bool
	cmds            []upstream.Cmd
	inline          struct {
		cmds            [4]upstream.Cmd
		local, reserved [4]bool
	}
}

func newTxn(r *Relay, a *account.Account, c *smtpd.ConnInfo, remote string, tk quota.Ticket) *txn {
	t := &txn{r: r, a: a, c: c, remote: remote, start: time.Now(), ticket: tk}
	t.batch.cmds, t.batch.local, t.batch.reserved = t.batch.inline.cmds[:0], t.batch.inline.local[:0], t.batch.inline.reserved[:0]
	return t
}

// reset readies the scratch space for a batch of n commands.
func (b *batch) reset(n int) {
	b.local = resetFlags(b.local, n)
	b.reserved = resetFlags(b.reserved, n)
	b.cmds = b.cmds[:0]
}

// Envelope implements smtpd.Txn. One batch goes through four steps:
// reserve the recipients' budget, translate the commands for the upstream
// (pure), send them (moving to a fresh session once if a pooled one was
// stale), and read the replies back in order, local answers in place.
func (t *txn) Envelope(ctx context.Context, cmds []smtpd.Command) []reply.Reply {
	out := make([]reply.Reply, len(cmds))
	if t.state.broken {
		for i := range out {
			out[i] = errLost
		}
		return out
	}
	if t.state.refused != nil {
		for i := range out {
			out[i] = *t.state.refused
		}
		return out
	}
	if t.lease == nil {
		if rp := t.open(ctx); rp != nil {
			t.state.broken = true
			fillFailure(out, *rp)
			return out
		}
	}
	b := &t.batch
	b.reset(len(cmds))
	t.reserveRcpts(ctx, cmds, out)
	sess := t.lease.Session()
	b.cmds = translate(sess, cmds, out, b.local, b.cmds)
	if t.deferMail(sess, cmds, out) {
		return out
	}
	deferred := t.state.mail != nil
	if deferred {
		b.cmds = slices.Insert(b.cmds, 0, *t.state.mail)
		t.state.mail = nil
	}
	data := t.localData(sess, cmds, out)
	if len(b.cmds) == 0 {
		// Everything was answered here (over budget, refused parameters).
		t.finishData(data, out)
		return out
	}
	first := !t.state.sent
	t.state.sent = true
	replies, rp, err := t.send(ctx, first, b.cmds)
	if rp != nil {
		t.state.broken = true
		fillFailure(out, *rp)
		return out
	}
	if deferred {
		replies = t.mailVerdict(replies, cmds, out)
	}
	t.readBack(cmds, replies, out)
	t.finishData(data, out)
	if err != nil || t.lease.Session().Broken() {
		// A 421 read in full breaks the session without an error.
		t.state.broken = true
		t.r.m.errors.WithLabelValues("upstream_lost").Inc()
		t.r.logs.Warn(t.r.log, logthrottle.Key{Account: t.a.Cfg.ID, Reason: "upstream_lost"}, "upstream envelope failed",
			"conn_id", t.c.ID, "account", t.a.Cfg.ID, "err", err, "upstream_reply", firstReply(replies))
	}
	return out
}

// deferMail answers here a batch that is a lone MAIL over a session that
// pipelines, after the local checks (translate's), and keeps the command
// for the next batch. It reports whether it did.
func (t *txn) deferMail(sess account.Conn, cmds []smtpd.Command, out []reply.Reply) bool {
	if len(cmds) != 1 || cmds[0].Verb != smtpd.VerbMail || t.batch.local[0] || len(t.batch.cmds) != 1 {
		return false
	}
	if _, ok := sess.Extension("PIPELINING"); !ok {
		return false
	}
	mail := t.batch.cmds[0]
	t.state.mail = &mail
	t.out.from = cmds[0].Addr
	out[0] = mailAccepted
	return true
}

// mailVerdict takes the deferred MAIL's reply off the front of replies.
// If the upstream refused it, the refusal (as the client's reply) answers
// every command of the batch and of the transaction from now on, so a
// RCPT is never reported accepted for a sender that was not.
func (t *txn) mailVerdict(replies []reply.Reply, cmds []smtpd.Command, out []reply.Reply) []reply.Reply {
	if len(replies) == 0 {
		return replies // lost: readBack answers errLost
	}
	rp := replies[0]
	t.state.answered = true
	t.r.m.upstreamReplies.WithLabelValues("mail", classOf(rp.Code)).Inc()
	if rp.Positive() {
		return replies[1:]
	}
	refused := t.r.clientReply(t.a, rp)
	t.state.refused = &refused
	for i := range cmds {
		if t.batch.reserved[i] {
			t.ticket.RcptRefused()
		}
		if cmds[i].Verb == smtpd.VerbRcpt {
			t.out.rcpts++
		}
		out[i], t.batch.local[i], t.batch.reserved[i] = refused, true, false
	}
	return nil
}

// localData takes DATA, the last command of cmds, off the batch when the
// session takes the body as BDAT: its 354 is then given here, once the
// replies show a recipient accepted (finishData). It returns DATA's index,
// or -1.
func (t *txn) localData(sess account.Conn, cmds []smtpd.Command, out []reply.Reply) int {
	i := len(cmds) - 1
	if cmds[i].Verb != smtpd.VerbData || t.batch.local[i] || !sess.Chunking() {
		return -1
	}
	t.batch.local[i] = true
	t.batch.cmds = t.batch.cmds[:len(t.batch.cmds)-1] // translate's DATA, always last
	return i
}

// finishData answers a DATA kept here: 354 when some recipient was
// accepted and the session still stands, else what a server would say.
func (t *txn) finishData(i int, out []reply.Reply) {
	switch {
	case i < 0:
		return
	case t.state.refused != nil:
		out[i] = *t.state.refused
	case t.state.broken || t.lease.Session().Broken():
		out[i] = errLost
	case t.out.okRcpts == 0:
		out[i] = refusal(t.a.Cfg.Email, errNoRecipients, t.c.ID)
	default:
		out[i] = dataGoAhead
		t.state.chunked = true
	}
}

// reserveRcpts is the budget step: it reserves one recipient of the
// account's budgets for each RCPT, and answers here (451/452, local) a
// RCPT over budget, so that it never reaches the upstream.
func (t *txn) reserveRcpts(ctx context.Context, cmds []smtpd.Command, out []reply.Reply) {
	for i, c := range cmds {
		if c.Verb != smtpd.VerbRcpt {
			continue
		}
		if err := t.rcptBudget(ctx); err != nil {
			out[i], t.batch.local[i] = refusal(t.a.Cfg.Email, err, t.c.ID), true
			continue
		}
		t.batch.reserved[i] = true
	}
}

// translate appends to buf the upstream command of each of cmds not
// already answered here (local), and returns it. Parameters pass on only
// when the upstream supports them; a command that cannot be relayed is
// answered here (out[i], local[i]). It reads nothing but sess's EHLO
// extensions.
func translate(sess account.Conn, cmds []smtpd.Command, out []reply.Reply, local []bool, buf []upstream.Cmd) []upstream.Cmd {
	for i, c := range cmds {
		if local[i] {
			continue
		}
		switch c.Verb {
		case smtpd.VerbMail:
			arg, err := mailArg(sess, c)
			if err != nil {
				out[i], local[i] = refusal("", err, ""), true
				continue
			}
			buf = append(buf, upstream.Cmd{Verb: "MAIL", Arg: arg})
		case smtpd.VerbRcpt:
			buf = append(buf, upstream.Cmd{Verb: "RCPT", Arg: "TO:<" + c.Addr + ">"})
		case smtpd.VerbData:
			buf = append(buf, upstream.Cmd{Verb: "DATA"})
		}
	}
	return buf
}

// mailArg is the MAIL command's argument for sess, or the refusal
// (errNoSMTPUTF8) that answers it here: BODY and SIZE pass on when the upstream supports them,
// SMTPUTF8 must be supported, AUTH= is dropped (the upstream knows who we
// are).
func mailArg(sess account.Conn, c smtpd.Command) (string, error) {
	var b strings.Builder
	n := len("FROM:<>") + len(c.Addr)
	for _, p := range c.Params {
		n += 1 + len(p)
	}
	b.Grow(n)
	b.WriteString("FROM:<")
	b.WriteString(c.Addr)
	b.WriteByte('>')
	for _, p := range c.Params {
		k, _, _ := strings.Cut(p, "=")
		switch k {
		case "BODY":
			if _, ok := sess.Extension("8BITMIME"); !ok {
				continue
			}
		case "SMTPUTF8":
			if _, ok := sess.Extension("SMTPUTF8"); !ok {
				return "", errNoSMTPUTF8
			}
		case "SIZE":
			if _, ok := sess.Extension("SIZE"); !ok {
				continue
			}
		default:
			continue
		}
		b.WriteByte(' ')
		b.WriteString(p)
	}
	return b.String(), nil
}

// send sends the batch over the lease. On the transaction's first batch
// over a pooled session that turns out stale (stale), nothing of the
// transaction was accepted, so the batch moves to a newly opened session,
// once: that cannot deliver anything twice. noSession is the client's
// reply when no replacement session could be had.
func (t *txn) send(ctx context.Context, first bool, cmds []upstream.Cmd) (replies []reply.Reply, noSession *reply.Reply, err error) {
	sess := t.lease.Session()
	replies, err = sess.Batch(ctx, cmds)
	if !first || t.lease.Fresh() || !stale(sess, replies) {
		return replies, nil, err
	}
	t.r.Stats.Retried.Add(1)
	t.r.m.retried.Inc()
	t.r.log.Debug("stale upstream session, retrying on a fresh one", "conn_id", t.c.ID, "account", t.a.Cfg.ID,
		"err", err, "upstream_reply", firstReply(replies))
	t.lease.Discard()
	t.lease = nil
	if rp := t.openNew(ctx); rp != nil {
		return nil, rp, nil
	}
	replies, err = t.lease.Session().Batch(ctx, cmds)
	return replies, nil, err
}

// readBack puts the upstream's replies in place of the commands sent,
// in order, answers the commands left unanswered errLost, refunds the
// reservation of each recipient the upstream refused, and notes what the
// transaction has come to.
func (t *txn) readBack(cmds []smtpd.Command, replies []reply.Reply, out []reply.Reply) {
	if len(replies) > 0 {
		t.state.answered = true
	}
	j := 0
	for i, c := range cmds {
		if t.batch.local[i] {
			continue
		}
		if j < len(replies) {
			out[i] = t.r.clientReply(t.a, replies[j])
			t.r.m.upstreamReplies.WithLabelValues(stageOf(c.Verb), classOf(replies[j].Code)).Inc()
		} else {
			out[i] = errLost
		}
		j++
		if t.batch.reserved[i] && !out[i].Positive() {
			t.ticket.RcptRefused()
		}
		switch c.Verb {
		case smtpd.VerbMail:
			t.out.from = c.Addr
		case smtpd.VerbRcpt:
			t.out.rcpts++
			if out[i].Positive() {
				t.out.okRcpts++
			}
		case smtpd.VerbData:
			if out[i].Code == 354 && t.out.okRcpts == 0 {
				// A server that says 354 with no valid recipient: do not
				// send a body it cannot deliver; abandon the session.
				t.state.broken = true
				out[i] = refusal(t.a.Cfg.Email, errNoRecipients, t.c.ID)
			}
		}
	}
}

// stale reports whether a pooled session turned out to be closed by the
// provider before it took any part of the transaction: it broke with no
// reply, or with a 421 that is not a rate or quota reply (RFC 5321 §3.8:
// the provider closing an idle session, "421 4.4.2 ... timeout"). A 421
// that provider.Classify knows is the account's problem, not the
// session's: a fresh session would only hear it again.
func stale(sess account.Conn, replies []reply.Reply) bool {
	if !sess.Broken() {
		return false
	}
	for _, rp := range replies {
		if rp.Code != 421 || provider.Classify(rp).Kind != provider.Normal {
			return false
		}
	}
	return true
}

// firstReply is the first upstream reply of a batch, for the log.
func firstReply(replies []reply.Reply) string {
	if len(replies) == 0 {
		return ""
	}
	return replies[0].String()
}

// open leases a session for the transaction.
func (t *txn) open(ctx context.Context) *reply.Reply {
	return t.leaseWith(ctx, account.Sessions.Lease)
}

// openNew leases a newly opened session, after a pooled one was dead.
func (t *txn) openNew(ctx context.Context) *reply.Reply {
	return t.leaseWith(ctx, account.Sessions.LeaseNew)
}

func (t *txn) leaseWith(ctx context.Context, lease func(account.Sessions, context.Context, time.Duration) (account.Lease, error)) *reply.Reply {
	// No deadline here: a warm session is the common case and needs none;
	// the account layer bounds opening a new one
	// (account.SessionOptions.OpenTimeout).
	ss := t.a.Sessions()
	if ss == nil {
		rp := refusal(t.a.Cfg.Email, errNoSession, t.c.ID)
		return &rp
	}
	start := time.Now()
	l, err := lease(ss, ctx, t.r.opts.AcquireTimeout)
	t.r.m.acquireWait.Observe(time.Since(start).Seconds())
	if err != nil {
		rp := t.r.openFailure(t.a, t.c, err)
		return &rp
	}
	t.lease = l
	return nil
}

// fillFailure answers a first batch that could not reach the upstream:
// the MAIL gets the failure, the rest "no sender" (errNotSent) as a real
// server says.
func fillFailure(out []reply.Reply, rp reply.Reply) {
	for i := range out {
		if i == 0 {
			out[i] = rp
		} else {
			out[i] = refusal("", errNotSent, "")
		}
	}
}

func stageOf(v smtpd.Verb) string {
	switch v {
	case smtpd.VerbRcpt:
		return "rcpt"
	case smtpd.VerbData:
		return "data"
	}
	return "mail"
}

// resetFlags returns b with n false entries, reusing its array.
func resetFlags(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	b = b[:n]
	clear(b)
	return b
}

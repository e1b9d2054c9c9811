package relay

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// Options configure a Relay.
type Options struct {
	// AcquireTimeout bounds the wait for a free upstream session when the
	// account is at its cap (global.timeouts.connection_acquire_timeout).
	AcquireTimeout time.Duration
	// Metrics receive the relay's counters; nil means unregistered ones.
	Metrics *Metrics
	// Budget keeps the accounts' sending budgets; nil: no budgets.
	Budget quota.Budget
	Logger *slog.Logger
	// LogThrottle aggregates the warnings every transaction can repeat
	// under overload (sessions busy, upstream lost, cool-downs); its
	// owner flushes it. nil: one of the relay's own, over Logger, whose
	// summaries only the next event of their key writes.
	LogThrottle *logthrottle.Throttle
}

// Counters are the relay's outcome counts.
type Counters struct {
	Messages  atomic.Int64 // final reply 250
	Failed    atomic.Int64 // final reply 4xx/5xx
	Ambiguous atomic.Int64 // body sent, final reply lost
	Retried   atomic.Int64 // first batch moved to a fresh session
}

// Relay implements smtpd.Backend over an account registry.
type Relay struct {
	reg   *account.Registry
	opts  Options
	log   *slog.Logger
	logs  *logthrottle.Throttle
	m     *Metrics
	Stats Counters
}

// New returns a relay for the accounts of reg.
func New(reg *account.Registry, opts Options) *Relay {
	if opts.AcquireTimeout == 0 {
		opts.AcquireTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil, false)
	}
	if opts.LogThrottle == nil {
		opts.LogThrottle = logthrottle.New(logthrottle.Options{Logger: opts.Logger})
	}
	return &Relay{reg: reg, opts: opts, log: opts.Logger, logs: opts.LogThrottle, m: opts.Metrics}
}

// AuthKey implements smtpd.AuthKeyer: failed AUTHs count by account.
func (r *Relay) AuthKey(user string) string { return r.reg.AuthKey(user) }

// Login implements smtpd.Backend.
func (r *Relay) Login(ctx context.Context, c *smtpd.ConnInfo, user, pass string) (smtpd.Sender, error) {
	start := time.Now()
	a, err := r.reg.Authenticate(ctx, user, pass, c.Remote.Addr())
	r.m.authDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		r.m.authAttempts.WithLabelValues("failure").Inc()
		return nil, err
	}
	r.m.authAttempts.WithLabelValues("success").Inc()
	remote := c.Remote.String() // final: a PROXY header comes before AUTH
	r.log.Info("auth", "conn_id", c.ID, "remote", remote, "account", a.Cfg.ID)
	return &sender{r: r, a: a, remote: remote}, nil
}

type sender struct {
	r      *Relay
	a      *account.Account
	remote string // the client's address, formatted once for every message's log line
}

func (s *sender) Name() string { return s.a.Cfg.ID }

// Begin implements smtpd.Sender: admission against the account's in-flight cap.
func (s *sender) Begin(_ context.Context, c *smtpd.ConnInfo) (smtpd.Txn, error) {
	if s.a.Removed() || s.a.Cfg.Disabled {
		// A reload removed, changed or disabled the account after this
		// client authenticated: it must log in again to see the new set.
		return nil, reply.New(451, "4.7.1", s.a.Cfg.Email+": account removed or disabled, authenticate again")
	}
	tk, rp := s.r.admitBudget(s.a)
	if rp != nil {
		return nil, *rp
	}
	if !s.a.Acquire() {
		tk.Done(false)
		s.r.m.limitExceeded.Inc()
		return nil, reply.New(451, "4.7.0", s.a.Cfg.Email+": too many messages in flight for this account, try again later")
	}
	s.r.m.concurrent.Inc()
	t := &txn{r: s.r, a: s.a, c: c, remote: s.remote, start: time.Now(), ticket: tk}
	// A pipelined single-recipient message is MAIL, RCPT, DATA: the
	// per-batch buffers start in the txn itself, not on the heap apart.
	t.cmdBuf, t.local, t.reserved = t.inline.cmds[:0], t.inline.local[:0], t.inline.reserved[:0]
	return t, nil
}

// txn is one mail transaction.
type txn struct {
	r      *Relay
	a      *account.Account
	c      *smtpd.ConnInfo
	remote string // c.Remote formatted
	start  time.Time
	lease  account.Lease
	// ticket is the budget reservation (noTicket when budgets are off).
	ticket   quota.Ticket
	reserved []bool // per command of the current batch: a recipient reservation was made
	local    []bool // per command of the current batch: answered here, not sent upstream

	from      string
	rcpts     int
	okRcpts   int
	answered  bool // some upstream reply for this transaction was read
	broken    bool // the upstream session failed; later commands get 451
	ambiguous bool // the dot was sent and the final reply lost
	final     *reply.Reply
	size      int64
	cmdBuf    []upstream.Cmd
	inline    struct {
		cmds            [4]upstream.Cmd
		local, reserved [4]bool
	}
}

var (
	errLost     = reply.New(451, "4.4.2", "Upstream connection lost, try again later")
	errNoSender = reply.New(503, "5.5.1", "Sender not accepted")
)

// Envelope implements smtpd.Txn.
func (t *txn) Envelope(ctx context.Context, cmds []smtpd.Command) []reply.Reply {
	out := make([]reply.Reply, len(cmds))
	if t.broken {
		for i := range out {
			out[i] = errLost
		}
		return out
	}
	first := t.lease == nil
	if first {
		if rp := t.open(ctx); rp != nil {
			t.broken = true
			fillFailure(out, *rp)
			return out
		}
	}
	sess := t.lease.Session()
	ucmds, local := t.translate(sess, cmds, out)
	replies, err := sess.Batch(ctx, ucmds)
	if first && !t.lease.Fresh() && stale(sess, replies) {
		// A pooled session the provider had closed: nothing of the
		// transaction was accepted, so moving the batch to a fresh
		// session, once, cannot deliver anything twice.
		t.r.Stats.Retried.Add(1)
		t.r.m.retried.Inc()
		t.r.log.Debug("stale upstream session, retrying on a fresh one", "conn_id", t.c.ID, "account", t.a.Cfg.ID,
			"err", err, "upstream_reply", firstReply(replies))
		t.lease.Discard()
		t.lease = nil
		if rp := t.openNew(ctx); rp != nil {
			t.broken = true
			fillFailure(out, *rp)
			return out
		}
		sess = t.lease.Session()
		replies, err = sess.Batch(ctx, ucmds)
	}
	if len(replies) > 0 {
		t.answered = true
	}
	j := 0
	for i, c := range cmds {
		if local[i] {
			continue
		}
		if j < len(replies) {
			out[i] = t.r.clientReply(t.a, replies[j])
			t.r.m.upstreamReplies.WithLabelValues(stageOf(c.Verb), classOf(replies[j].Code)).Inc()
		} else {
			out[i] = errLost
		}
		j++
		if t.reserved[i] && !out[i].Positive() {
			t.ticket.RcptRefused()
		}
		switch c.Verb {
		case smtpd.VerbMail:
			t.from = c.Addr
		case smtpd.VerbRcpt:
			t.rcpts++
			if out[i].Positive() {
				t.okRcpts++
			}
		case smtpd.VerbData:
			if out[i].Code == 354 && t.okRcpts == 0 {
				// A server that says 354 with no valid recipient: do not
				// send a body it cannot deliver; abandon the session.
				t.broken = true
				out[i] = reply.New(554, "5.5.1", "No valid recipients")
			}
		}
	}
	if err != nil || sess.Broken() {
		// A 421 read in full breaks the session without an error.
		t.broken = true
		t.r.m.errors.WithLabelValues("upstream_lost").Inc()
		t.r.logs.Warn(t.r.log, logthrottle.Key{Account: t.a.Cfg.ID, Reason: "upstream_lost"}, "upstream envelope failed",
			"conn_id", t.c.ID, "account", t.a.Cfg.ID, "err", err, "upstream_reply", firstReply(replies))
	}
	return out
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
	return t.lease1(ctx, account.Sessions.Lease)
}

// openNew leases a newly opened session, after a pooled one was dead.
func (t *txn) openNew(ctx context.Context) *reply.Reply {
	return t.lease1(ctx, account.Sessions.LeaseNew)
}

func (t *txn) lease1(ctx context.Context, lease func(account.Sessions, context.Context, time.Duration) (account.Lease, error)) *reply.Reply {
	// No deadline here: a warm session is the common case and needs none;
	// the account layer bounds opening a new one
	// (account.SessionOptions.OpenTimeout).
	ss := t.a.Sessions()
	if ss == nil {
		rp := reply.New(451, "4.4.1", "Cannot connect to upstream, try again later")
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

// translate builds the upstream commands. Parameters pass on only when
// the upstream supports them; a command that cannot be relayed is answered
// locally (local[i] true).
func (t *txn) translate(sess account.Conn, cmds []smtpd.Command, out []reply.Reply) ([]upstream.Cmd, []bool) {
	// Per-batch flags, reused across the transaction's batches.
	t.local = resetFlags(t.local, len(cmds))
	t.reserved = resetFlags(t.reserved, len(cmds))
	local := t.local
	t.cmdBuf = t.cmdBuf[:0]
	for i, c := range cmds {
		switch c.Verb {
		case smtpd.VerbMail:
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
						out[i] = reply.New(553, "5.6.7", "Upstream does not support SMTPUTF8")
						local[i] = true
					}
				case "SIZE":
					if _, ok := sess.Extension("SIZE"); !ok {
						continue
					}
				default: // AUTH=: the upstream knows who we are
					continue
				}
				b.WriteByte(' ')
				b.WriteString(p)
			}
			if !local[i] {
				t.cmdBuf = append(t.cmdBuf, upstream.Cmd{Verb: "MAIL", Arg: b.String()})
			}
		case smtpd.VerbRcpt:
			if rp := t.rcptBudget(); rp != nil {
				out[i], local[i] = *rp, true
				continue
			}
			t.reserved[i] = true
			t.cmdBuf = append(t.cmdBuf, upstream.Cmd{Verb: "RCPT", Arg: "TO:<" + c.Addr + ">"})
		case smtpd.VerbData:
			t.cmdBuf = append(t.cmdBuf, upstream.Cmd{Verb: "DATA"})
		}
	}
	return t.cmdBuf, local
}

// fillFailure answers a first batch that could not reach the upstream:
// the MAIL gets the failure, the rest "no sender" as a real server says.
func fillFailure(out []reply.Reply, rp reply.Reply) {
	for i := range out {
		if i == 0 {
			out[i] = rp
		} else {
			out[i] = errNoSender
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

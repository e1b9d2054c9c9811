package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// codes renders replies as "250 2.1.0" for comparison.
func codes(rs []reply.Reply) string {
	var b []string
	for _, r := range rs {
		b = append(b, strings.TrimSpace(fmt.Sprintf("%d %s", r.Code, r.Enhanced)))
	}
	return strings.Join(b, ", ")
}

var errReset = errors.New("connection reset by peer")

// TestEnvelope is the relay's envelope rules, one case per rule, against
// scripted sessions: what the client hears, how many sessions were used,
// and what went upstream.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	accepted := batch{replies: []reply.Reply{ok(250, "2.1.0"), ok(250, "2.1.5"), ok(354, "")}}
	tests := []struct {
		name     string
		conns    []*fakeConn
		freshAll bool // the first session is newly opened, not pooled
		fail     error
		cmds     []smtpd.Command
		want     string // the client's replies
		sessions int    // sessions leased
		leaseNew int    // LeaseNew calls (stale-session retries)
		discard  []bool // per lease, once the transaction is closed
		upstream []int  // per session, commands it was sent
	}{
		{
			name:     "a pipelined batch goes upstream as one",
			conns:    []*fakeConn{{batches: []batch{accepted}}},
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "250 2.1.0, 250 2.1.5, 354",
			sessions: 1, discard: []bool{false}, upstream: []int{3},
		},
		{
			name: "per-recipient replies in order",
			conns: []*fakeConn{{batches: []batch{{replies: []reply.Reply{
				ok(250, "2.1.0"), ok(250, "2.1.5"), ok(550, "5.1.1"), ok(451, "4.3.0"), ok(250, "2.1.5"), ok(354, "")}}}}},
			cmds: []smtpd.Command{mail("a@example.com"), rcpt("r1@example.net"), rcpt("r2@example.net"),
				rcpt("r3@example.net"), rcpt("r4@example.net"), data},
			want:     "250 2.1.0, 250 2.1.5, 550 5.1.1, 451 4.3.0, 250 2.1.5, 354",
			sessions: 1, discard: []bool{false}, upstream: []int{6},
		},
		{
			name: "stale pooled session replaced once before anything was accepted",
			conns: []*fakeConn{
				{batches: []batch{{err: errReset, broken: true}}},
				{batches: []batch{accepted}},
			},
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "250 2.1.0, 250 2.1.5, 354",
			sessions: 2, leaseNew: 1, discard: []bool{true, false}, upstream: []int{3, 3},
		},
		{
			name: "a pooled session's idle-timeout 421 is stale too",
			conns: []*fakeConn{
				{batches: []batch{{replies: []reply.Reply{ok(421, "4.4.2")}, broken: true}}},
				{batches: []batch{accepted}},
			},
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "250 2.1.0, 250 2.1.5, 354",
			sessions: 2, leaseNew: 1, discard: []bool{true, false}, upstream: []int{3, 3},
		},
		{
			name: "the replacement dies as well: no second retry",
			conns: []*fakeConn{
				{batches: []batch{{err: errReset, broken: true}}},
				{batches: []batch{{err: errReset, broken: true}}},
				{batches: []batch{accepted}},
			},
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "451 4.4.2, 451 4.4.2, 451 4.4.2",
			sessions: 2, leaseNew: 1, discard: []bool{true, true}, upstream: []int{3, 3},
		},
		{
			name:     "a newly opened session that dies is not retried",
			conns:    []*fakeConn{{batches: []batch{{err: errReset, broken: true}}}, {batches: []batch{accepted}}},
			freshAll: true,
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "451 4.4.2, 451 4.4.2, 451 4.4.2",
			sessions: 1, discard: []bool{true}, upstream: []int{3},
		},
		{
			name: "a session that accepted part of the batch is not retried",
			conns: []*fakeConn{
				{batches: []batch{{replies: []reply.Reply{ok(250, "2.1.0")}, err: errReset, broken: true}}},
				{batches: []batch{accepted}},
			},
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "250 2.1.0, 451 4.4.2, 451 4.4.2",
			sessions: 1, discard: []bool{true}, upstream: []int{3},
		},
		{
			name: "421 never reaches the client",
			conns: []*fakeConn{{batches: []batch{{replies: []reply.Reply{
				ok(250, "2.1.0"), ok(421, "4.4.2")}, broken: true}}}},
			freshAll: true,
			cmds:     []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:     "250 2.1.0, 451 4.4.2, 451 4.4.2",
			sessions: 1, discard: []bool{true}, upstream: []int{3},
		},
		{
			name:  "a quota 5xx becomes 451 (the sender keeps the mail)",
			conns: []*fakeConn{{batches: []batch{{replies: []reply.Reply{ok(550, "5.4.5"), ok(503, "5.5.1"), ok(503, "5.5.1")}}}}},
			cmds:  []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want:  "451 4.7.0, 503 5.5.1, 503 5.5.1", sessions: 1, discard: []bool{false}, upstream: []int{3},
		},
		{
			name:  "SMTPUTF8 the upstream lacks is refused here, in place",
			conns: []*fakeConn{{batches: []batch{{replies: []reply.Reply{ok(503, "5.5.1"), ok(503, "5.5.1")}}}}},
			cmds:  []smtpd.Command{mail("a@example.com", "SMTPUTF8"), rcpt("b@example.net"), data},
			want:  "553 5.6.7, 503 5.5.1, 503 5.5.1", sessions: 1, discard: []bool{false}, upstream: []int{2},
		},
		{
			name: "no session: the MAIL gets the reason, the rest 503",
			fail: &account.OpenError{Reply: reply.New(454, "4.7.0", "x: credentials rejected"), Reason: "token_final", Err: errors.New("invalid_grant")},
			cmds: []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data},
			want: "454 4.7.0, 503 5.5.1, 503 5.5.1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ss := &fakeSessions{conns: append([]*fakeConn(nil), tc.conns...), freshAll: tc.freshAll, fail: tc.fail}
			h := newHarness(t, ss)
			txn, err := h.begin(t)
			if err != nil {
				t.Fatal(err)
			}
			got := codes(txn.Envelope(context.Background(), tc.cmds))
			txn.Close()
			if got != tc.want {
				t.Errorf("replies = %s, want %s", got, tc.want)
			}
			if len(ss.leases) != tc.sessions || ss.leaseNew != tc.leaseNew {
				t.Errorf("%d sessions leased, %d LeaseNew; want %d, %d", len(ss.leases), ss.leaseNew, tc.sessions, tc.leaseNew)
			}
			for i, l := range ss.leases {
				if i < len(tc.discard) && (l.discarded != tc.discard[i] || l.released == tc.discard[i]) {
					t.Errorf("session %d: discarded %v, released %v; want discarded %v", i, l.discarded, l.released, tc.discard[i])
				}
				if i < len(tc.upstream) && (len(l.conn.sent) != 1 || len(l.conn.sent[0]) != tc.upstream[i]) {
					t.Errorf("session %d was sent %v, want one batch of %d", i, l.conn.sent, tc.upstream[i])
				}
			}
		})
	}
}

// TestData_neverResentAfterTheBody: once the body went out, a failure is
// the client's answer; nothing is sent again, on this session or another.
func TestData_neverResentAfterTheBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      reply.Reply
		bodyErr   error
		want      string
		ambiguous bool
		discard   bool
		delivered int
	}{
		{"accepted", ok(250, "2.0.0"), nil, "250 2.0.0", false, false, 1},
		{"refused", ok(554, "5.7.1"), nil, "554 5.7.1", false, false, 0},
		{"final reply errReset: ambiguous", reply.Reply{}, ambiguousErr{}, "451 4.4.2", true, true, 0},
		{"connection errReset in the body", reply.Reply{}, &upstream.Error{Stage: "data", Err: errReset}, "451 4.4.2", false, true, 0},
		{"421 after the body", reply.Reply{}, &upstream.Error{Stage: "end", Reply: &reply.Reply{Code: 421, Enhanced: "4.4.2"}}, "451 4.4.2", false, true, 0},
		{"a final 421 read in full is a 451 too", ok(421, "4.4.2"), nil, "451 4.4.2", false, false, 0},
		{"a final rate 421 is a 451 naming the account", ok(421, "4.7.0"), nil, "451 4.7.0", false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := &fakeConn{batches: []batch{{replies: []reply.Reply{ok(250, "2.1.0"), ok(250, "2.1.5"), ok(354, "")}}},
				body: tc.body, bodyErr: tc.bodyErr}
			spare := &fakeConn{batches: []batch{{replies: []reply.Reply{ok(250, "2.1.0"), ok(250, "2.1.5"), ok(354, "")}}}}
			ss := &fakeSessions{conns: []*fakeConn{conn, spare}}
			h := newHarness(t, ss)
			txn, err := h.begin(t)
			if err != nil {
				t.Fatal(err)
			}
			txn.Envelope(context.Background(), []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data})
			got := txn.Data(context.Background(), strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
			txn.Close()
			if s := codes([]reply.Reply{got}); s != tc.want {
				t.Errorf("final reply = %s, want %s", s, tc.want)
			}
			l := ss.leases[0]
			if len(ss.leases) != 1 || conn.bodies != 1 || len(conn.sent) != 1 || len(spare.sent) != 0 {
				t.Errorf("sessions %d, bodies %d, batches %d, spare batches %d: want the message sent once, on one session",
					len(ss.leases), conn.bodies, len(conn.sent), len(spare.sent))
			}
			if l.discarded != tc.discard || l.delivered != tc.delivered {
				t.Errorf("discarded %v, delivered %d; want %v, %d", l.discarded, l.delivered, tc.discard, tc.delivered)
			}
			if n := h.acct.Ambiguous.Load(); (n == 1) != tc.ambiguous {
				t.Errorf("ambiguous count %d, want ambiguous %v", n, tc.ambiguous)
			}
		})
	}
}

// ambiguousErr is a errReset final reply as upstream.Ambiguous reads it.
type ambiguousErr struct{}

func (ambiguousErr) Error() string   { return "final reply errReset" }
func (ambiguousErr) Ambiguous() bool { return true }

// TestBudget: budgets refuse at MAIL and RCPT with a 4xx, before anything
// goes upstream, and a recipient the upstream refuses gives its
// reservation back.
func TestBudget(t *testing.T) {
	t.Parallel()
	t.Run("refused recipients are refunded", func(t *testing.T) {
		t.Parallel()
		conn := &fakeConn{batches: []batch{{replies: []reply.Reply{ok(250, "2.1.0"), ok(550, "5.1.1"), ok(250, "2.1.5"), ok(354, "")}}},
			body: ok(250, "2.0.0")}
		h := newHarness(t, &fakeSessions{conns: []*fakeConn{conn}})
		txn, _ := h.begin(t)
		txn.Envelope(context.Background(), []smtpd.Command{mail("a@example.com"), rcpt("no@example.net"), rcpt("yes@example.net"), data})
		txn.Data(context.Background(), strings.NewReader("x\r\n"))
		txn.Close()
		tk := h.b.tk
		if tk.rcpts != 2 || tk.refused != 1 || !tk.done || !tk.accepted {
			t.Errorf("ticket: %d reserved, %d refunded, done %v, accepted %v; want 2, 1, true, true", tk.rcpts, tk.refused, tk.done, tk.accepted)
		}
	})
	t.Run("recipients over the per-message budget are refused here", func(t *testing.T) {
		t.Parallel()
		conn := &fakeConn{batches: []batch{{replies: []reply.Reply{ok(250, "2.1.0"), ok(250, "2.1.5"), ok(354, "")}}}}
		h := newHarness(t, &fakeSessions{conns: []*fakeConn{conn}})
		h.b.tk.maxRcpts = 1
		txn, _ := h.begin(t)
		got := codes(txn.Envelope(context.Background(), []smtpd.Command{mail("a@example.com"), rcpt("1@example.net"), rcpt("2@example.net"), data}))
		txn.Close()
		if got != "250 2.1.0, 250 2.1.5, 452 4.5.3, 354" || len(conn.sent[0]) != 3 {
			t.Errorf("replies %s, upstream got %v; want the second RCPT refused here", got, conn.sent)
		}
		if tk := h.b.tk; !tk.done || tk.accepted {
			t.Error("the reservation of an abandoned message is not ended unaccepted")
		}
	})
	t.Run("no budget: 451 at MAIL, no session", func(t *testing.T) {
		t.Parallel()
		ss := &fakeSessions{conns: []*fakeConn{{}}}
		h := newHarness(t, ss)
		h.b.deny = &quota.Denial{Limit: "daily message budget", ResetIn: 3600e9}
		_, err := h.begin(t)
		var rp reply.Reply
		if !errors.As(err, &rp) || rp.Code != 451 || !strings.Contains(rp.String(), "daily message budget") || len(ss.leases) != 0 {
			t.Errorf("Begin = %v, %d sessions; want 451 naming the budget and no session", err, len(ss.leases))
		}
	})
	t.Run("a quota reply cools the account down", func(t *testing.T) {
		t.Parallel()
		conn := &fakeConn{batches: []batch{{replies: []reply.Reply{ok(550, "5.4.5"), ok(503, "5.5.1"), ok(503, "5.5.1")}}}}
		h := newHarness(t, &fakeSessions{conns: []*fakeConn{conn}})
		txn, _ := h.begin(t)
		txn.Envelope(context.Background(), []smtpd.Command{mail("a@example.com"), rcpt("b@example.net"), data})
		txn.Close()
		if len(h.b.cooldown) != 1 || provider.Classify(ok(550, "5.4.5")).Kind != provider.DailyQuota {
			t.Errorf("cool-downs %v, want one for the daily quota", h.b.cooldown)
		}
	})
}

// TestClose_abandonedTransactionIsReset: a transaction left after the
// envelope (client RSET or gone) resets the upstream before the session
// is reused; one that never reached the upstream returns it untouched.
func TestClose_abandonedTransactionIsReset(t *testing.T) {
	t.Parallel()
	conn := &fakeConn{batches: []batch{{replies: []reply.Reply{ok(250, "2.1.0"), ok(250, "2.1.5")}}}}
	h := newHarness(t, &fakeSessions{conns: []*fakeConn{conn}})
	txn, _ := h.begin(t)
	txn.Envelope(context.Background(), []smtpd.Command{mail("a@example.com"), rcpt("b@example.net")})
	txn.Close()
	if l := h.ss.leases[0]; conn.resets != 1 || !l.released {
		t.Errorf("resets %d, released %v; want one RSET, then the session back in the pool", conn.resets, l.released)
	}
	if h.acct.Inflight() != 0 {
		t.Error("message still counted in flight after Close")
	}
}

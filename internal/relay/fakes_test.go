package relay_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/relay"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// batch is a fake session's answer to one Batch: the replies read, then
// err; broken marks the session broken after it.
type batch struct {
	replies []reply.Reply
	err     error
	broken  bool
}

// fakeConn is an upstream session that answers from a script.
type fakeConn struct {
	mu       sync.Mutex
	batches  []batch // one per Batch call, in order
	body     reply.Reply
	bodyErr  error
	ext      map[string]string
	broken   bool
	sent     [][]upstream.Cmd // every Batch's commands
	bodies   int
	chunked  int // of bodies, sent with BDAT
	resets   int
	bodySeen []byte
}

func (c *fakeConn) Batch(_ context.Context, cmds []upstream.Cmd) ([]reply.Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, append([]upstream.Cmd(nil), cmds...))
	if len(c.batches) == 0 {
		c.broken = true
		return nil, errors.New("fake: no more batches scripted")
	}
	b := c.batches[0]
	c.batches = c.batches[1:]
	c.broken = c.broken || b.broken
	return b.replies, b.err
}

func (c *fakeConn) Body(_ context.Context, r io.Reader) (reply.Reply, error) {
	b, err := io.ReadAll(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies++
	c.bodySeen = b
	if err != nil {
		c.broken = true
		return reply.Reply{}, err
	}
	if c.bodyErr != nil {
		c.broken = true
	}
	return c.body, c.bodyErr
}

func (c *fakeConn) Chunking() bool {
	_, chunking := c.ext["CHUNKING"]
	_, pipelining := c.ext["PIPELINING"]
	return chunking && pipelining
}

// BodyChunked is Body over BDAT; chunked counts its calls.
func (c *fakeConn) BodyChunked(ctx context.Context, r io.Reader) (reply.Reply, error) {
	c.mu.Lock()
	c.chunked++
	c.mu.Unlock()
	return c.Body(ctx, r)
}

func (c *fakeConn) Reset(context.Context) error { c.mu.Lock(); c.resets++; c.mu.Unlock(); return nil }
func (c *fakeConn) Extension(name string) (string, bool) {
	p, ok := c.ext[name]
	return p, ok
}
func (c *fakeConn) Broken() bool               { c.mu.Lock(); defer c.mu.Unlock(); return c.broken }
func (c *fakeConn) Quit(context.Context) error { return nil }
func (c *fakeConn) Close() error               { return nil }

// fakeLease lends one fakeConn and records how it came back.
type fakeLease struct {
	conn                *fakeConn
	fresh               bool
	delivered           int
	released, discarded bool
}

func (l *fakeLease) Session() account.Conn { return l.conn }
func (l *fakeLease) Fresh() bool           { return l.fresh }
func (l *fakeLease) Delivered()            { l.delivered++ }
func (l *fakeLease) Release()              { l.released = true }
func (l *fakeLease) Discard()              { l.discarded = true }

// fakeSessions lends its conns in order: the first as a pooled (warm)
// session unless fresh is set, the rest as newly opened ones.
type fakeSessions struct {
	mu       sync.Mutex
	conns    []*fakeConn
	freshAll bool
	fail     error // every lease fails with it
	leases   []*fakeLease
	leaseNew int
}

func (s *fakeSessions) lease(fresh bool) (account.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	if len(s.conns) == 0 {
		return nil, &account.OpenError{Reply: reply.New(451, "4.4.1", "fake: no session"), Reason: "connect", Err: errors.New("none")}
	}
	l := &fakeLease{conn: s.conns[0], fresh: fresh || s.freshAll || len(s.leases) > 0}
	s.conns = s.conns[1:]
	s.leases = append(s.leases, l)
	return l, nil
}

func (s *fakeSessions) Lease(context.Context, time.Duration) (account.Lease, error) {
	return s.lease(false)
}
func (s *fakeSessions) LeaseNew(context.Context, time.Duration) (account.Lease, error) {
	s.mu.Lock()
	s.leaseNew++
	s.mu.Unlock()
	return s.lease(true)
}
func (s *fakeSessions) Drain(string)                { panic("not used by the relay") }
func (s *fakeSessions) Sweep()                      {}
func (s *fakeSessions) Close()                      {}
func (s *fakeSessions) Stats() account.SessionStats { return account.SessionStats{Cap: 1} }

// ticket records what the relay does with one message's reservation.
type ticket struct {
	mu             sync.Mutex
	rcpts, refused int
	done           bool
	accepted       bool
	maxRcpts       int // 0: no limit
}

func (t *ticket) Rcpt(context.Context) (bool, *quota.Denial) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maxRcpts > 0 && t.rcpts-t.refused >= t.maxRcpts {
		return true, nil
	}
	t.rcpts++
	return false, nil
}
func (t *ticket) RcptRefused() { t.mu.Lock(); t.refused++; t.mu.Unlock() }
func (t *ticket) Done(accepted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done {
		t.done, t.accepted = true, accepted
	}
}

// budget hands out one ticket, or denies with deny.
type budget struct {
	tk       *ticket
	deny     *quota.Denial
	cooldown []string
}

func (b *budget) Admit(context.Context, string, quota.Limits) (quota.Ticket, *quota.Denial) {
	if b.deny != nil {
		return nil, b.deny
	}
	return b.tk, nil
}
func (b *budget) CoolDown(_, cause string, _ time.Duration) { b.cooldown = append(b.cooldown, cause) }
func (b *budget) Clear(string)                              {}
func (b *budget) Status(string, quota.Limits) quota.Status  { return quota.Status{} }

// harness is a relay over one account whose sessions and budget are fakes.
type harness struct {
	r    *relay.Relay
	ss   *fakeSessions
	b    *budget
	acct *account.Account
	c    *smtpd.ConnInfo
}

func newHarness(t *testing.T, ss *fakeSessions) *harness {
	t.Helper()
	cfg := &config.Account{ID: "acct", Email: "sender@example.com", MaxConcurrentMessages: 5,
		RateLimiting: config.RateLimiting{Enabled: true, Cooldowns: config.Cooldowns{DailyQuota: time.Hour, Rate: time.Minute}}}
	b := &budget{tk: &ticket{}}
	reg, err := account.NewRegistry(&config.Snapshot{Accounts: []*config.Account{cfg}},
		func(*config.Account, *account.State, *token.Source) (account.Runtime, error) {
			return account.Runtime{Sessions: ss}, nil
		}, account.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{
		r:    relay.New(reg, relay.Options{}),
		ss:   ss,
		b:    b,
		acct: reg.Lookup("acct"),
		c:    &smtpd.ConnInfo{ID: "c1", Remote: netip.MustParseAddrPort("127.0.0.1:5000")},
	}
}

// begin logs in and starts a transaction.
func (h *harness) begin(t *testing.T) (smtpd.Txn, error) {
	t.Helper()
	s, err := h.r.Login(context.Background(), h.c, "sender@example.com", "")
	if err != nil {
		t.Fatal(err)
	}
	return s.Begin(context.Background(), h.c)
}

func ok(code int, enh string) reply.Reply { return reply.New(code, enh, "ok") }

func mail(addr string, params ...string) smtpd.Command {
	return smtpd.Command{Verb: smtpd.VerbMail, Addr: addr, Params: params}
}
func rcpt(addr string) smtpd.Command { return smtpd.Command{Verb: smtpd.VerbRcpt, Addr: addr} }

var data = smtpd.Command{Verb: smtpd.VerbData}

package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/dsn"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/imap"
)

// Mailbox is one opted-in account, as the collector needs it. The
// service builds the list from the live registry at every round, so a
// reload's changes apply at the next read.
type Mailbox struct {
	ID, Email, VMTA string
	Addr            string // IMAP server, host:port (implicit TLS)
	// Token returns a current access token of the account's own grant.
	Token func(ctx context.Context) (string, error)
	// Accepted is the recipients the account had accepted upstream over
	// the last 24 h; false when not known (budgets off).
	Accepted func() (int, bool)
	// CoolDown stops the account's sending until Resume; false when
	// budgets are off for the account.
	CoolDown func(cause string) bool
	// Resume ends a cool-down (the operator's resume).
	Resume func()
}

// Options configure a Collector.
type Options struct {
	// Mailboxes lists the opted-in accounts now.
	Mailboxes func() []Mailbox
	Dialer    imap.Dialer
	StatePath string // feedback-state.json
	Folder    string // mailbox to read; default INBOX
	MoveTo    string // "" = leave processed reports in place
	Interval  time.Duration
	// MaxConcurrent mailboxes read at once; default 4.
	MaxConcurrent int
	Outputs       []Output
	// Threshold is the hard-bounce rate that cools an account down (0 =
	// off), judged from MinRecipients accepted recipients up.
	Threshold     float64
	MinRecipients int
	// ReadTimeout bounds one mailbox read; default 2 min.
	ReadTimeout time.Duration
	Metrics     *Metrics
	Logger      *slog.Logger
	Now         func() time.Time
}

// Status is one account's collection state, for the admin API.
type Status struct {
	LastRead    time.Time `json:"last_read,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // why the mailbox could not be read; "" when the last read worked
	Readable    bool      `json:"readable"`
	Reports     int64     `json:"reports"` // delivery status notifications processed since start
	Bounced     int64     `json:"bounced"` // failed recipients in them
	HardBounces int       `json:"hard_bounces_24h"`
	Accepted    int       `json:"accepted_recipients_24h"`
	BounceRate  float64   `json:"bounce_rate_24h"`
	CooledDown  bool      `json:"cooled_down,omitempty"` // by the bounce-rate protection, until resumed
}

// Collector reads the mailboxes.
type Collector struct {
	o     Options
	store *store
	log   *slog.Logger

	mu     sync.Mutex
	next   map[string]time.Time // when each mailbox is read next
	status map[string]*Status
}

// New loads the persisted progress.
func New(o Options) (*Collector, error) {
	if o.Folder == "" {
		o.Folder = "INBOX"
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 4
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 2 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	st, err := loadStore(o.StatePath)
	if err != nil {
		return nil, err
	}
	return &Collector{o: o, store: st, log: o.Logger, next: map[string]time.Time{}, status: map[string]*Status{}}, nil
}

// Run reads each mailbox at its interval until ctx ends; it returns
// after the reads in progress have stopped.
func (c *Collector) Run(ctx context.Context) {
	sem := make(chan struct{}, c.o.MaxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := map[string]bool{}
	var busyMu sync.Mutex
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, m := range c.due() {
			busyMu.Lock()
			if busy[m.ID] {
				busyMu.Unlock()
				continue
			}
			busy[m.ID] = true
			busyMu.Unlock()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				defer func() { busyMu.Lock(); delete(busy, m.ID); busyMu.Unlock() }()
				c.ReadOnce(ctx, m)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// due returns the mailboxes whose time has come and schedules their next
// read; a mailbox seen for the first time is read after a random part of
// the interval, so that a start does not read every mailbox at once.
func (c *Collector) due() []Mailbox {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Mailbox
	for _, m := range c.o.Mailboxes() {
		at, ok := c.next[m.ID]
		if !ok {
			c.next[m.ID] = now.Add(rand.N(c.o.Interval/4 + 1))
			continue
		}
		if now.Before(at) {
			continue
		}
		c.next[m.ID] = now.Add(c.jittered())
		out = append(out, m)
	}
	return out
}

// jittered is the interval ±20 %.
func (c *Collector) jittered() time.Duration {
	d := c.o.Interval
	return d - d/5 + rand.N(2*d/5+1)
}

// Status is account's collection state; false when it was never read.
func (c *Collector) Status(account string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.status[account]
	if !ok {
		return Status{}, false
	}
	return *s, true
}

func (c *Collector) setStatus(id string, f func(s *Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status[id]
	if s == nil {
		s = &Status{}
		c.status[id] = s
	}
	f(s)
}

// ReadOnce reads m's mailbox now: every report since the last one
// processed. Its error is also in m's Status.
func (c *Collector) ReadOnce(ctx context.Context, m Mailbox) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The end of ctx (shutdown) stops the read between two messages: the
	// message in hand is finished (outputs, progress, move) within
	// shutdownGrace, so that a restart neither reads it again nor leaves
	// it unmoved.
	io, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.ReadTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(shutdownGrace, cancel) })
	defer stop()
	err := c.read(ctx, io, m)
	if errors.Is(err, errStopped) {
		return nil
	}
	now := c.o.Now()
	c.setStatus(m.ID, func(s *Status) {
		s.LastRead, s.Readable, s.LastError = now, err == nil, ""
		if err != nil {
			s.LastError = err.Error()
		}
	})
	if err != nil {
		c.o.Metrics.readFailed(m.ID)
		c.log.Warn("feedback: mailbox not read", "account", m.ID, "err", err)
	} else {
		c.log.Debug("feedback: mailbox read", "account", m.ID)
	}
	c.protect(m) // protect.go, also after a failed read: resumes and accepted counts change
	return err
}

// shutdownGrace is how long a read may go on after shutdown began, to
// finish the message in hand.
const shutdownGrace = 10 * time.Second

// errStopped ends a read that shutdown interrupted between two messages.
var errStopped = errors.New("feedback: stopped")

// read reads m's mailbox: IMAP calls under ctx, the check for shutdown
// between messages on stopping.
func (c *Collector) read(stopping, ctx context.Context, m Mailbox) error {
	if m.Addr == "" {
		return errors.New("no IMAP server known for the account's provider (feedback.imap_servers)")
	}
	tok, err := m.Token(ctx)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	cl, err := c.o.Dialer.Dial(ctx, m.Addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.AuthXOAUTH2(ctx, m.Email, tok); err != nil {
		if errors.Is(err, imap.ErrAuth) {
			return fmt.Errorf("%w (is IMAP enabled for the mailbox, and does the grant hold the IMAP scope? Microsoft: https://outlook.office.com/IMAP.AccessAsUser.All)", err)
		}
		return err
	}
	mb, err := cl.Select(ctx, c.o.Folder)
	if err != nil {
		return err
	}
	p := c.store.get(m.ID)
	after := p.LastUID
	if p.UIDValidity != mb.UIDValidity {
		after = 0 // a new UIDVALIDITY: the old UIDs mean nothing (RFC 3501 §2.3.1.1)
		if p.UIDValidity != 0 {
			c.log.Warn("feedback: mailbox UIDVALIDITY changed; reading it from the start", "account", m.ID)
		}
	}
	uids, err := cl.SearchSince(ctx, after)
	if err != nil {
		return err
	}
	if c.o.MoveTo != "" && len(uids) > 0 {
		if err := cl.Create(ctx, c.o.MoveTo); err != nil {
			return err
		}
	}
	for _, uid := range uids {
		if stopping.Err() != nil {
			return errStopped
		}
		if err := c.one(ctx, cl, m, mb.UIDValidity, uid); err != nil {
			return err
		}
	}
	if len(uids) == 0 && p.UIDValidity != mb.UIDValidity {
		if err := c.store.update(m.ID, func(p *progress) { p.UIDValidity, p.LastUID = mb.UIDValidity, 0 }); err != nil {
			return err
		}
	}
	return cl.Logout(ctx)
}

// one processes one message: a report's bounces go to every output, then
// the progress is saved, then the message is moved.
func (c *Collector) one(ctx context.Context, cl *imap.Client, m Mailbox, validity, uid uint32) error {
	raw, err := cl.FetchRaw(ctx, uid)
	if errors.Is(err, imap.ErrGone) {
		return c.store.update(m.ID, func(p *progress) { p.UIDValidity, p.LastUID = validity, uid })
	}
	if err != nil {
		return err
	}
	rep, err := dsn.Parse(raw)
	isReport := err == nil
	var bs []Bounce
	if isReport {
		bs = bounces(m, validity, uid, rep, c.o.Now())
		for _, o := range c.o.Outputs {
			if len(bs) == 0 {
				break
			}
			if err := o.Write(ctx, bs); err != nil {
				return fmt.Errorf("output: %w", err)
			}
		}
	}
	now := c.o.Now()
	if err := c.store.update(m.ID, func(p *progress) {
		p.UIDValidity, p.LastUID = validity, uid
		// Only the bounce-rate window counts (protect): older entries
		// would only grow the state file rewritten at every message.
		p.Hard = slices.DeleteFunc(p.Hard, func(t time.Time) bool { return now.Sub(t) >= window })
		for _, b := range bs {
			if b.Class == dsn.Hard {
				p.Hard = append(p.Hard, now)
			}
		}
	}); err != nil {
		return err
	}
	if isReport {
		c.o.Metrics.report(m.ID, bs)
		c.setStatus(m.ID, func(s *Status) { s.Reports++; s.Bounced += int64(len(bs)) })
		if c.o.MoveTo != "" {
			if err := cl.Move(ctx, uid, c.o.MoveTo); err != nil {
				c.log.Warn("feedback: report not moved", "account", m.ID, "uid", uid, "folder", c.o.MoveTo, "err", err)
			}
		}
	}
	return nil
}

package relay

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// Options configure a Relay.
type Options struct {
	// AcquireTimeout bounds the wait for a free upstream session when the
	// account is at its cap (global.timeouts.connection_acquire_timeout).
	AcquireTimeout time.Duration
	// Metrics receive the relay's counters; nil means unregistered ones.
	Metrics *Metrics
	Logger  *slog.Logger
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
func (s *sender) Begin(ctx context.Context, c *smtpd.ConnInfo) (smtpd.Txn, error) {
	cur := s.r.reg.Current(s.a)
	if cur == nil || cur.Cfg.Disabled {
		// A reload removed or disabled the account, or changed what the
		// client proved at AUTH: it must log in again.
		return nil, refusal(s.a.Cfg.Email, errAccountGone, c.ID)
	}
	s.a = cur // an edit that kept the account: go on with its new settings
	tk, d := s.r.admitBudget(ctx, s.a)
	if d != nil {
		return nil, refusal(s.a.Cfg.Email, d, c.ID)
	}
	if !s.a.Acquire() {
		tk.Done(false)
		s.r.m.limitExceeded.Inc()
		return nil, refusal(s.a.Cfg.Email, errInFlight, c.ID)
	}
	s.r.m.concurrent.Inc()
	return newTxn(s.r, s.a, c, s.remote, tk), nil
}

package account

import (
	"context"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
)

// localSessions is the Sessions of one process: a pool of sessions opened
// with the account's endpoint and tokens.
type localSessions struct {
	pool      *pool.Pool[Conn]
	email     string
	shrinkFor time.Duration
	gated     bool // sessions hold cluster slots: Lease passes its deadline to the dial
}

// NewSessions returns the local session lease of account c: a pool
// (connection_pool settings) of sessions opened by Dialer.
func NewSessions(c *config.Account, tokens TokenSource, o SessionOptions) Sessions {
	dial := Dialer(c, tokens, o)
	if o.ShrinkFor <= 0 {
		o.ShrinkFor = time.Minute
	}
	log := o.Logger
	if log != nil {
		log = log.With("account", c.ID)
	}
	open := func(ctx context.Context) (Conn, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return c, nil
	}
	if o.Slots != nil {
		open = gated(o.Slots, c.ID, max(1, c.Pool.MaxConnectionsPerAccount), open)
	}
	p := pool.New(pool.Config{
		Max:         c.Pool.MaxConnectionsPerAccount,
		MaxMessages: c.Pool.MaxMessagesPerConnection,
		MaxAge:      c.Pool.ConnectionMaxAge,
		IdleTimeout: c.Pool.ConnectionIdleTimeout,
		Logger:      log,
	}, open)
	return &localSessions{pool: p, email: c.Email, shrinkFor: o.ShrinkFor, gated: o.Slots != nil}
}

func (s *localSessions) Lease(ctx context.Context, wait time.Duration) (Lease, error) {
	if s.gated {
		ctx = withLeaseDeadline(ctx, wait)
	}
	l, err := s.pool.Lease(ctx, wait)
	if err != nil {
		return nil, s.failed(err)
	}
	return l, nil
}

func (s *localSessions) LeaseNew(ctx context.Context, wait time.Duration) (Lease, error) {
	if s.gated {
		ctx = withLeaseDeadline(ctx, wait)
	}
	l, err := s.pool.LeaseNew(ctx, wait)
	if err != nil {
		return nil, s.failed(err)
	}
	return l, nil
}

// failed maps err, and lowers the cap for a while after a refusal for
// too many sessions or logins.
func (s *localSessions) failed(err error) *OpenError {
	e := openFailure(s.email, err)
	if e.Refusal == provider.Concurrency || e.Refusal == provider.LoginRate {
		s.pool.Shrink(s.shrinkFor)
	}
	return e
}

func (s *localSessions) Drain(reason string) { s.pool.Drain(reason) }
func (s *localSessions) Sweep()              { s.pool.Sweep() }
func (s *localSessions) Close()              { s.pool.Close() }

func (s *localSessions) Stats() SessionStats {
	st := s.pool.Stats()
	return SessionStats{Open: st.Open, Busy: st.Busy, Opened: st.Opened, Cap: s.pool.Cap()}
}

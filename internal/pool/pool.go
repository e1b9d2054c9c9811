package pool

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Session is an upstream session as the pool sees it.
type Session interface {
	Broken() bool
	Quit(ctx context.Context) error // polite close: QUIT, then close
	Close() error                   // immediate close
}

// Config sets a pool's limits.
type Config struct {
	Max         int           // open sessions at most; at least 1
	MaxMessages int           // retire a session after this many messages; 0 = no limit
	MaxAge      time.Duration // retire a session older than this; 0 = no limit
	IdleTimeout time.Duration // Sweep closes sessions idle longer than this; 0 = never
	QuitTimeout time.Duration // bound on a polite QUIT; default 5s
	Now         func() time.Time
	// Logger gets one line per session closed, with the reason; callers
	// add the account. Nil discards.
	Logger *slog.Logger
}

// ErrBusy is returned by Lease when every session stayed busy until the
// context ended.
var ErrBusy = errors.New("all upstream sessions busy")

// ErrClosed is returned by Lease after Close.
var ErrClosed = errors.New("pool closed")

// Pool is one account's set of upstream sessions.
type Pool[S Session] struct {
	cfg  Config
	dial func(ctx context.Context) (S, error)

	slots chan struct{} // one token per lease; capacity Max

	mu     sync.Mutex
	idle   []*entry[S] // most recently used last
	closed bool
	// Shrinking: the pool itself holds slots to lower the effective cap
	// after the provider refused a session for concurrency.
	shrinkWant int           // slots the pool wants to hold
	shrinkHeld int           // slots it holds
	timers     []*time.Timer // pending Shrink expiries

	// gen is the pool's generation; Drain starts a new one, and a
	// session of an older one is closed when it comes back.
	gen uint64

	closers sync.WaitGroup // background QUITs

	opened atomic.Int64 // sessions dialed, ever
	open   atomic.Int64 // sessions open now
	busy   atomic.Int64 // sessions leased now
}

type entry[S Session] struct {
	s        S
	gen      uint64
	born     time.Time
	lastUsed time.Time
	messages int
}

// Lease is one borrowed session. It goes back to the pool it came from
// with Release or Discard, so a holder need not know which pool that is
// (a reload may have replaced the account's pool meanwhile).
type Lease[S Session] struct {
	p     *Pool[S]
	e     *entry[S]
	fresh bool
	done  bool
}

// Release is p.Release(l) for the pool l came from.
func (l *Lease[S]) Release() { l.p.Release(l) }

// Discard is p.Discard(l) for the pool l came from.
func (l *Lease[S]) Discard() { l.p.Discard(l) }

// Session returns the leased session.
func (l *Lease[S]) Session() S { return l.e.s }

// Fresh reports whether the session was dialed for this lease (rather than
// reused): a failure on a fresh session is not a stale-session failure.
func (l *Lease[S]) Fresh() bool { return l.fresh }

// Delivered counts one message carried by the session (for MaxMessages).
func (l *Lease[S]) Delivered() { l.e.messages++ }

// New returns a pool that opens sessions with dial.
func New[S Session](cfg Config, dial func(ctx context.Context) (S, error)) *Pool[S] {
	if cfg.Max < 1 {
		cfg.Max = 1
	}
	if cfg.QuitTimeout == 0 {
		cfg.QuitTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pool[S]{cfg: cfg, dial: dial, slots: make(chan struct{}, cfg.Max)}
}

// Lease returns an idle session or a newly dialed one. While the pool is
// at its cap it waits up to wait (and never past ctx) and then returns
// ErrBusy. A dial is bounded by ctx alone. Dial errors are returned as
// they are.
func (p *Pool[S]) Lease(ctx context.Context, wait time.Duration) (*Lease[S], error) {
	return p.lease(ctx, wait, true)
}

// LeaseNew is Lease for a caller that has just found a pooled session
// dead (and discarded it): it closes every idle session and dials a new
// one. The most recently used session is lent first, so the idle ones have
// waited at least as long as the dead one and have likely met the same
// fate (a provider's idle timeout or restart); closing them first also
// keeps the open sessions within Max.
func (p *Pool[S]) LeaseNew(ctx context.Context, wait time.Duration) (*Lease[S], error) {
	return p.lease(ctx, wait, false)
}

func (p *Pool[S]) lease(ctx context.Context, wait time.Duration, reuse bool) (*Lease[S], error) {
	select {
	case p.slots <- struct{}{}:
	default:
		t := time.NewTimer(wait)
		select {
		case p.slots <- struct{}{}:
			t.Stop()
		case <-t.C:
			return nil, ErrBusy
		case <-ctx.Done():
			t.Stop()
			return nil, ErrBusy
		}
	}
	now := p.cfg.Now()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.freeSlot()
			return nil, ErrClosed
		}
		if !reuse {
			stale := p.idle
			p.idle = nil
			p.mu.Unlock()
			for _, e := range stale {
				p.retire(e, true, "idle behind a dead session")
			}
			break
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		e := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if why := p.expired(e, now); why != "" {
			p.retire(e, true, why)
			continue
		}
		p.busy.Add(1)
		return &Lease[S]{p: p, e: e}, nil
	}
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	s, err := p.dial(ctx)
	if err != nil {
		p.freeSlot()
		return nil, err
	}
	p.opened.Add(1)
	p.open.Add(1)
	p.busy.Add(1)
	return &Lease[S]{p: p, e: &entry[S]{s: s, gen: gen, born: now, lastUsed: now}, fresh: true}, nil
}

// expired says why e is due for retirement (the reason logged when it is
// closed: max_age, max_messages, idle), or "" when it is not. A session
// past its age is closed for its age even when it is also idle, so that
// a session in use every few seconds is never logged as idle.
func (p *Pool[S]) expired(e *entry[S], now time.Time) string {
	switch {
	case p.cfg.MaxAge > 0 && now.Sub(e.born) >= p.cfg.MaxAge:
		return "max_age"
	case p.cfg.MaxMessages > 0 && e.messages >= p.cfg.MaxMessages:
		return "max_messages"
	case p.cfg.IdleTimeout > 0 && now.Sub(e.lastUsed) >= p.cfg.IdleTimeout:
		return "idle"
	}
	return ""
}

// Release returns a leased session: kept for reuse when healthy and not
// due for retirement, otherwise closed. Calling it twice is harmless.
func (p *Pool[S]) Release(l *Lease[S]) {
	if l == nil || l.done {
		return
	}
	l.done = true
	p.busy.Add(-1)
	e := l.e
	now := p.cfg.Now()
	e.lastUsed = now
	if e.s.Broken() {
		p.retire(e, false, "broken")
		p.freeSlot()
		return
	}
	p.mu.Lock()
	why := p.expired(e, now)
	switch {
	case p.closed:
		why = "shutdown"
	case e.gen != p.gen:
		why = "drained"
	}
	if why != "" {
		p.mu.Unlock()
		p.retire(e, true, why)
		p.freeSlot()
		return
	}
	// While shrunk, the slot of a returned session is kept by the pool,
	// so the session it carried must not stay open either.
	if p.shrinkHeld < p.shrinkWant {
		p.shrinkHeld++
		p.mu.Unlock()
		p.retire(e, true, "cap lowered")
		return
	}
	p.idle = append(p.idle, e)
	p.mu.Unlock()
	<-p.slots
}

// freeSlot gives a lease's slot back, or keeps it while the pool is shrunk.
func (p *Pool[S]) freeSlot() {
	p.mu.Lock()
	if p.shrinkHeld < p.shrinkWant {
		p.shrinkHeld++
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	<-p.slots
}

// Shrink lowers the pool's effective cap by one for d (never below one
// session), as the answer to a provider's concurrency refusal (Gmail 421
// 4.3.0 / 454 4.7.0, Microsoft 432 4.3.2, PROVIDERS.md). The cap shrinks
// as leased sessions come back, so nothing in flight is disturbed.
func (p *Pool[S]) Shrink(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.shrinkWant >= p.cfg.Max-1 {
		return
	}
	p.shrinkWant++
	h := new(timerRef)
	// The timer cannot fire its func before h.t is set: unshrink takes
	// p.mu, which is held here.
	h.t = time.AfterFunc(d, func() { p.unshrink(h) })
	p.timers = append(p.timers, h.t)
}

type timerRef struct{ t *time.Timer }

func (p *Pool[S]) unshrink(h *timerRef) {
	p.mu.Lock()
	for i, x := range p.timers {
		if x == h.t {
			p.timers = append(p.timers[:i], p.timers[i+1:]...)
			break
		}
	}
	p.shrinkWant--
	release := p.shrinkHeld > p.shrinkWant
	if release {
		p.shrinkHeld--
	}
	p.mu.Unlock()
	if release {
		<-p.slots
	}
}

// Cap returns the effective cap: Max less the slots held after Shrink.
func (p *Pool[S]) Cap() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Max - p.shrinkWant
}

// Discard closes a leased session that must not be reused.
func (p *Pool[S]) Discard(l *Lease[S]) {
	if l == nil || l.done {
		return
	}
	l.done = true
	p.busy.Add(-1)
	p.retire(l.e, false, "discarded")
	p.freeSlot()
}

// retire closes a session; politely (QUIT in the background) when asked.
func (p *Pool[S]) retire(e *entry[S], polite bool, reason string) {
	p.open.Add(-1)
	p.cfg.Logger.Info("upstream session closed", "reason", reason, "messages", e.messages,
		"age_s", int(p.cfg.Now().Sub(e.born).Seconds()))
	if !polite || e.s.Broken() {
		_ = e.s.Close()
		return
	}
	p.closers.Add(1)
	go func() {
		defer p.closers.Done()
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.QuitTimeout)
		defer cancel()
		_ = e.s.Quit(ctx)
	}()
}

// Sweep closes idle sessions that are past their idle timeout, age or
// message count, each logged with its own reason.
func (p *Pool[S]) Sweep() {
	now := p.cfg.Now()
	type due struct {
		e   *entry[S]
		why string
	}
	var stale []due
	p.mu.Lock()
	keep := p.idle[:0]
	for _, e := range p.idle {
		if why := p.expired(e, now); why != "" {
			stale = append(stale, due{e, why})
		} else {
			keep = append(keep, e)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, d := range stale {
		p.retire(d.e, true, d.why)
	}
}

// Drain closes the idle sessions now (QUIT in the background) and each
// leased one when it comes back, while the pool goes on lending newly
// opened sessions. The owner calls it when the sessions open now must
// carry no more mail: the account's credential was revoked, so sessions
// authenticated before cannot be trusted to stop by themselves. The
// sessions are logged closed with reason.
func (p *Pool[S]) Drain(reason string) {
	p.mu.Lock()
	p.gen++
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, e := range idle {
		p.retire(e, true, reason)
	}
}

// Close QUITs idle sessions and refuses new leases; leased sessions are
// closed when released. It waits for the QUITs it started.
func (p *Pool[S]) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	for _, t := range p.timers {
		t.Stop()
	}
	p.timers = nil
	p.mu.Unlock()
	for _, e := range idle {
		p.retire(e, true, "shutdown")
	}
	p.closers.Wait()
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Opened int64 // sessions dialed since start
	Open   int64 // sessions open now (busy + idle)
	Busy   int64 // sessions leased now
}

// Stats returns the pool's counters.
func (p *Pool[S]) Stats() Stats {
	return Stats{Opened: p.opened.Load(), Open: p.open.Load(), Busy: p.busy.Load()}
}

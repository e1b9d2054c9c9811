package smtpd

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ipKey is the unit that per-client limits count: the IPv4 address, or
// the /64 of an IPv6 address (one host usually owns a whole /64).
func ipKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64) // cannot fail for an IPv6 address; the zero Prefix for an invalid one
	return p
}

// inNetworks reports whether a lies in one of nets.
func inNetworks(a netip.Addr, nets []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipCounter counts open connections per client key.
type ipCounter struct {
	mu sync.Mutex
	n  map[netip.Prefix]int
}

// acquire counts a connection of key unless key is at limit.
func (c *ipCounter) acquire(key netip.Prefix, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= limit {
		return false
	}
	c.n[key]++
	return true
}

func (c *ipCounter) release(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.n[key] - 1; n > 0 {
		c.n[key] = n
	} else {
		delete(c.n, key)
	}
}

// authWindow is how long failed AUTH attempts are remembered.
const authWindow = time.Minute

// maxAuthKeys bounds each map of the limiter, so that a flood of made-up
// usernames cannot grow it without end. When a map is full of live
// entries, new keys go uncounted (the per-address limit still applies).
const maxAuthKeys = 100_000

// maxUserKeyBytes bounds the part of a username used as a key.
const maxUserKeyBytes = 256

// Errors of authLimiter.reserve.
var (
	errAuthOverIP   = errors.New("auth failures per address over the limit")
	errAuthOverUser = errors.New("auth failures per username over the limit")
)

// authLimits are the failures allowed per window: one set for trusted
// networks, a stricter one for everyone else.
type authLimits struct {
	perIP, perUser int
	// sharedIP: the address is shared by many clients (a trusted
	// network: the local MTA and everything else on the host), so its
	// attempts in flight do not hold back the others; only its failures
	// count. Otherwise a guesser's queued attempts would stall the local
	// MTA's logins behind them.
	sharedIP bool
}

// authLimiter counts failed AUTH attempts per client address and per
// user key (an account, or an unknown name) in fixed one-minute windows.
//
// An attempt whose password is being checked counts against the budget
// too (reserve, then done): attempts running in parallel cannot all pass
// a check that only counts finished failures. While failures plus
// attempts in flight fill a budget, further attempts wait for one to
// finish rather than being refused, so a sender that opens many
// connections at once with the right password is only slowed, never
// refused. Refusal comes only when the failures alone reach the limit. So
// at most the limit's number of passwords can fail per window; an attempt
// reserved at the end of one window may fail in the next.
type authLimiter struct {
	now func() time.Time

	mu        sync.Mutex // guards ips, users, lastSweep, wake
	ips       map[netip.Prefix]*window
	users     map[string]*window
	lastSweep time.Time
	wake      chan struct{} // closed when an attempt ends; nil while nobody waits
}

type window struct {
	start    time.Time
	n        int // failures since start
	inflight int // reserved attempts not yet done; never swept while > 0
}

// attempt is one AUTH attempt holding a place in the budgets. A nil
// window is an uncounted key (its map was full).
type attempt struct {
	ipKey   netip.Prefix
	userKey string
	ip      *window
	user    *window
	failed  bool // the password was wrong, and fail counted it
	// sharedIP: the address's failures are not this client's (a trusted
	// network's), so they do not rank it in the authGate.
	sharedIP bool
}

func newAuthLimiter(now func() time.Time) *authLimiter {
	return &authLimiter{now: now, ips: make(map[netip.Prefix]*window), users: make(map[string]*window)}
}

func userKey(user string) string {
	if len(user) > maxUserKeyBytes {
		user = user[:maxUserKeyBytes]
	}
	return strings.ToLower(user)
}

// blockedIP reports whether key has used up its failures.
func (l *authLimiter) blockedIP(key netip.Prefix, lim authLimits) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return over(l.ips[key], l.now(), lim.perIP)
}

func over(w *window, now time.Time, limit int) bool {
	return w != nil && now.Sub(w.start) < authWindow && w.n >= limit
}

// busy reports whether w's failures and attempts in flight fill limit.
func busy(w *window, now time.Time, limit int) bool {
	if w == nil {
		return false
	}
	n := w.inflight
	if now.Sub(w.start) < authWindow {
		n += w.n
	}
	return n >= limit
}

// failures returns w's failures in its current window.
func failures(w *window, now time.Time) int {
	if w == nil || now.Sub(w.start) >= authWindow {
		return 0
	}
	return w.n
}

// priorities appends to out the rank of each waiter's attempt: the
// failures of its user key and (unless shared) its address in their
// current windows. Fewer ranks first in the authGate. A reserved attempt
// keeps its windows alive, so they are the map's own.
func (l *authLimiter) priorities(ws []*gateWaiter, out []int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, w := range ws {
		r := failures(w.at.user, now)
		if !w.at.sharedIP {
			r += failures(w.at.ip, now)
		}
		out = append(out, r)
	}
	return out
}

// reserve takes a place for one attempt by key and user before its
// password is checked, waiting while the places are taken by attempts in
// flight. It fails with errAuthOverIP or errAuthOverUser when the
// failures have reached a limit, and with ctx's error when ctx ends
// first. Every reserved attempt must be ended with done.
func (l *authLimiter) reserve(ctx context.Context, key netip.Prefix, user string, lim authLimits) (*attempt, error) {
	uk := userKey(user)
	l.mu.Lock()
	for {
		now := l.now()
		l.sweepIfDue(now)
		ipw, uw := l.ips[key], l.users[uk]
		switch {
		case over(ipw, now, lim.perIP):
			l.mu.Unlock()
			return nil, errAuthOverIP
		case over(uw, now, lim.perUser):
			l.mu.Unlock()
			return nil, errAuthOverUser
		case (lim.sharedIP || !busy(ipw, now, lim.perIP)) && !busy(uw, now, lim.perUser):
			a := &attempt{ipKey: key, userKey: uk, ip: entry(l.ips, key, now), user: entry(l.users, uk, now),
				sharedIP: lim.sharedIP}
			for _, w := range []*window{a.ip, a.user} {
				if w != nil {
					w.inflight++
				}
			}
			l.mu.Unlock()
			return a, nil
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		l.mu.Lock()
	}
}

// fail counts a's failure in both its windows at once, while a still
// holds its places: the authGate ranks waiters by failures, so a guess's
// failure must count before its check slot is handed on. A second call
// counts nothing.
func (l *authLimiter) fail(a *attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.failed {
		return
	}
	a.failed = true
	now := l.now()
	for _, w := range []*window{a.ip, a.user} {
		if w == nil {
			continue
		}
		if now.Sub(w.start) >= authWindow {
			w.start, w.n = now, 0
		}
		w.n++
	}
	l.wakeWaiters() // some may now be over a limit
}

// done ends a reserved attempt; its failure, if any, was counted by fail.
func (l *authLimiter) done(a *attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := func(w *window) bool {
		w.inflight--
		return w.n == 0 && w.inflight == 0
	}
	// A window that holds nothing any more goes at once, so that
	// successful logins leave no entries behind.
	if a.ip != nil && end(a.ip) {
		delete(l.ips, a.ipKey)
	}
	if a.user != nil && end(a.user) {
		delete(l.users, a.userKey)
	}
	l.wakeWaiters()
}

// wakeWaiters wakes the attempts waiting in reserve; l.mu is held.
func (l *authLimiter) wakeWaiters() {
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// sweepIfDue drops expired entries once a minute, or every 10s while a
// map is full; never on every call, which a full map would make slow.
func (l *authLimiter) sweepIfDue(now time.Time) {
	full := len(l.ips) >= maxAuthKeys || len(l.users) >= maxAuthKeys
	if since := now.Sub(l.lastSweep); since >= authWindow || full && since >= authWindow/6 {
		l.lastSweep = now
		sweep(l.ips, now)
		sweep(l.users, now)
	}
}

func sweep[K comparable](m map[K]*window, now time.Time) {
	for k, w := range m {
		if w.inflight == 0 && now.Sub(w.start) >= authWindow {
			delete(m, k)
		}
	}
}

// entry returns k's window, made or renewed at now; nil when the map is
// full.
func entry[K comparable](m map[K]*window, k K, now time.Time) *window {
	w := m[k]
	if w == nil {
		if len(m) >= maxAuthKeys {
			return nil
		}
		w = &window{start: now}
		m[k] = w
	}
	if now.Sub(w.start) >= authWindow {
		w.start, w.n = now, 0
	}
	return w
}

package smtpd

import (
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

// authLimiter counts failed AUTH attempts per client address and per
// username in fixed one-minute windows.
type authLimiter struct {
	now           func() time.Time
	perIP, perUsr int

	mu        sync.Mutex // guards ips, users, lastSweep
	ips       map[netip.Prefix]*window
	users     map[string]*window
	lastSweep time.Time
}

type window struct {
	start time.Time
	n     int
}

func newAuthLimiter(now func() time.Time, perIP, perUser int) *authLimiter {
	return &authLimiter{now: now, perIP: perIP, perUsr: perUser,
		ips: make(map[netip.Prefix]*window), users: make(map[string]*window)}
}

func userKey(user string) string {
	if len(user) > maxUserKeyBytes {
		user = user[:maxUserKeyBytes]
	}
	return strings.ToLower(user)
}

// blockedIP reports whether key has used up its failures.
func (l *authLimiter) blockedIP(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return over(l.ips[key], l.now(), l.perIP)
}

// blockedUser reports whether user has used up its failures.
func (l *authLimiter) blockedUser(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return over(l.users[userKey(user)], l.now(), l.perUsr)
}

func over(w *window, now time.Time, limit int) bool {
	return w != nil && now.Sub(w.start) < authWindow && w.n >= limit
}

// fail counts one failed attempt for key and user.
func (l *authLimiter) fail(key netip.Prefix, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	full := len(l.ips) >= maxAuthKeys || len(l.users) >= maxAuthKeys
	if since := now.Sub(l.lastSweep); since >= authWindow || full && since >= authWindow/6 {
		// Expired entries go once a minute, or every 10s while a map is
		// full; never on every failure, which a full map would make slow.
		l.lastSweep = now
		sweep(l.ips, now)
		sweep(l.users, now)
	}
	count(l.ips, key, now)
	count(l.users, userKey(user), now)
}

func sweep[K comparable](m map[K]*window, now time.Time) {
	for k, w := range m {
		if now.Sub(w.start) >= authWindow {
			delete(m, k)
		}
	}
}

func count[K comparable](m map[K]*window, k K, now time.Time) {
	w := m[k]
	if w == nil {
		if len(m) >= maxAuthKeys {
			return
		}
		w = &window{start: now}
		m[k] = w
	}
	if now.Sub(w.start) >= authWindow {
		w.start, w.n = now, 0
	}
	w.n++
}

package admin

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// How failed authentications are held back and logged, per client
// address (an IPv6 client by its /64, which one host usually has to
// itself). A bearer token of 32 characters or more cannot be guessed at
// any rate; this keeps a scan from filling the log and tells the operator.
const (
	// freeFailures is how many failures in a row an address may have
	// before it is held back: a mistyped token is not an attack.
	freeFailures = 5
	// firstHold is the hold after the first failure beyond those; each
	// further failure doubles it, up to maxHold.
	firstHold = time.Second
	maxHold   = 5 * time.Minute
	// forgetAfter: an address with no failure for this long starts afresh.
	forgetAfter = 15 * time.Minute
	// logEvery: at most one log line per address in this time; the
	// first failure is logged at once, later ones as a count.
	logEvery = time.Minute
	// maxAddresses bounds the table; beyond it, new addresses share one
	// entry (and are held back together).
	maxAddresses = 10000
)

// authFailures counts failed authentications per client address. Safe
// for concurrent use.
type authFailures struct {
	now func() time.Time
	log *slog.Logger

	mu sync.Mutex
	by map[netip.Prefix]*failureRecord
}

// failureRecord is one address's recent failures.
type failureRecord struct {
	count    int       // failures in a row
	last     time.Time // the latest failure
	heldTill time.Time // requests before this get 429
	logged   time.Time // the last log line; zero before the first
	unlogged int       // failures since that line
}

func newAuthFailures(now func() time.Time, log *slog.Logger) *authFailures {
	return &authFailures{now: now, log: log, by: map[netip.Prefix]*failureRecord{}}
}

// clientKey is the table key of a request's remote address: the address
// as a /32, an IPv6 address's /64, or the zero Prefix when it does not
// parse.
func clientKey(remoteAddr string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// held returns how long the address is still held back; 0 when it is not.
func (f *authFailures) held(key netip.Prefix) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := f.by[key]
	if rec == nil {
		return 0
	}
	return max(rec.heldTill.Sub(f.now()), 0)
}

// succeeded forgets the address's failures.
func (f *authFailures) succeeded(key netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.by, key)
}

// failed counts a failure, holds the address back when it has had too
// many, and logs when the address's last line is old enough.
func (f *authFailures) failed(key netip.Prefix, r *http.Request) {
	f.mu.Lock()
	now := f.now()
	rec := f.record(key, now)
	if now.Sub(rec.last) >= forgetAfter {
		rec.count = 0
	}
	rec.count++
	rec.last = now
	rec.unlogged++
	var hold time.Duration
	if n := rec.count - freeFailures; n > 0 {
		hold = maxHold
		if n <= 20 { // beyond, the shift overflows long past maxHold
			hold = min(firstHold<<(n-1), maxHold)
		}
		rec.heldTill = now.Add(hold)
	}
	logNow := rec.logged.IsZero() || now.Sub(rec.logged) >= logEvery
	failures, count := rec.unlogged, rec.count
	if logNow {
		rec.logged, rec.unlogged = now, 0
	}
	f.mu.Unlock()

	if !logNow {
		return
	}
	addr := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		addr = ap.Addr().Unmap().String()
	}
	// Never the presented token; the route pattern, not the path, which
	// the client chose.
	f.log.Warn("admin: authentication failed", "addr", addr, "route", r.Pattern,
		"failures", failures, "in_a_row", count, "held_back_seconds", int(hold.Seconds()))
}

// record returns the address's entry, making one (after dropping stale
// entries when the table is full). The caller holds f.mu.
func (f *authFailures) record(key netip.Prefix, now time.Time) *failureRecord {
	if rec := f.by[key]; rec != nil {
		return rec
	}
	if len(f.by) >= maxAddresses {
		for k, rec := range f.by {
			if now.Sub(rec.last) >= forgetAfter && !now.Before(rec.heldTill) {
				delete(f.by, k)
			}
		}
		if len(f.by) >= maxAddresses {
			key = netip.Prefix{}
			if rec := f.by[key]; rec != nil {
				return rec
			}
		}
	}
	rec := &failureRecord{}
	f.by[key] = rec
	return rec
}

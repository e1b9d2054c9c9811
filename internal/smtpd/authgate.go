package smtpd

import (
	"context"
	"slices"
	"sync"
)

// authGate bounds the password checks running at once. A bcrypt check is
// CPU by design; unbounded, a guesser with a hundred connections takes
// every core and delays real mail and real logins (issue 16, finding 3).
//
// A freed slot goes to the waiter whose keys have the fewest failures
// now (authLimiter.priorities), arrival order among equals. Counting at
// hand-over rather than at arrival matters: a guesser's first attempts
// queue before its failures exist, and would otherwise stay ahead of a
// client that came later. A waiter gives up when its context ends.
type authGate struct {
	lim *authLimiter // ranks the waiters

	mu      sync.Mutex // guards free, waiting, seq; taken before lim.mu
	free    int        // slots not held
	waiting []*gateWaiter
	seq     uint64
	ranks   []int // scratch for release
}

func newAuthGate(slots int, lim *authLimiter) *authGate { return &authGate{free: slots, lim: lim} }

// gateWaiter is one attempt waiting for a slot.
type gateWaiter struct {
	at      *attempt
	seq     uint64
	ready   chan struct{} // closed when the slot is handed over
	granted bool
}

// acquire takes a slot for at, waiting while all are held. Every nil
// return must be matched by one release.
func (g *authGate) acquire(ctx context.Context, at *attempt) error {
	g.mu.Lock()
	if g.free > 0 && len(g.waiting) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{at: at, seq: g.seq, ready: make(chan struct{})}
	g.seq++
	g.waiting = append(g.waiting, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.granted {
		// Handed over as ctx ended: pass it on.
		g.mu.Unlock()
		g.release()
		return ctx.Err()
	}
	g.waiting = slices.DeleteFunc(g.waiting, func(x *gateWaiter) bool { return x == w })
	g.mu.Unlock()
	return ctx.Err()
}

// release frees a slot, handing it to the most deserving waiter if there
// is one.
func (g *authGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		g.free++
		return
	}
	g.ranks = g.lim.priorities(g.waiting, g.ranks[:0])
	best := 0
	for i := range g.waiting {
		if r, b := g.ranks[i], g.ranks[best]; r < b || r == b && g.waiting[i].seq < g.waiting[best].seq {
			best = i
		}
	}
	w := g.waiting[best]
	g.waiting = slices.Delete(g.waiting, best, best+1)
	w.granted = true
	close(w.ready)
}

// waitingNow returns the number of attempts waiting for a slot.
func (g *authGate) waitingNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

package smtpd

import (
	"container/heap"
	"context"
	"sync"
)

// authGate bounds the password checks running at once. A bcrypt check is
// CPU by design; unbounded, a guesser with a hundred connections takes
// every core and delays real mail and real logins (issue 16, finding 3).
//
// Waiters are served lowest priority value first, arrival order among
// equals. The priority of an attempt is the number of recent failures of
// its client address and its username (authLimiter), so a client that
// has not been failing goes ahead of a guesser's queue, whose own
// failures push it back. A waiter gives up when its context ends.
type authGate struct {
	mu    sync.Mutex // guards free, queue, seq
	free  int        // slots not held
	queue gateQueue
	seq   uint64
}

func newAuthGate(slots int) *authGate { return &authGate{free: slots} }

// gateWaiter is one attempt waiting for a slot.
type gateWaiter struct {
	prio  int
	seq   uint64
	ready chan struct{} // closed when the slot is handed over
	index int           // in queue; -1 once handed over
}

// acquire takes a slot, waiting by priority while all are held. Every
// nil return must be matched by one release.
func (g *authGate) acquire(ctx context.Context, prio int) error {
	g.mu.Lock()
	if g.free > 0 && len(g.queue) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{prio: prio, seq: g.seq, ready: make(chan struct{})}
	g.seq++
	heap.Push(&g.queue, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.index < 0 {
		// Handed over as ctx ended: pass it on.
		g.mu.Unlock()
		g.release()
		return ctx.Err()
	}
	heap.Remove(&g.queue, w.index)
	g.mu.Unlock()
	return ctx.Err()
}

// release frees a slot, handing it to the first waiter if there is one.
func (g *authGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.free++
		return
	}
	w := heap.Pop(&g.queue).(*gateWaiter)
	close(w.ready)
}

// waiting returns the number of attempts waiting for a slot.
func (g *authGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// gateQueue is a min-heap of waiters by (prio, seq).
type gateQueue []*gateWaiter

func (q gateQueue) Len() int { return len(q) }
func (q gateQueue) Less(i, j int) bool {
	if q[i].prio != q[j].prio {
		return q[i].prio < q[j].prio
	}
	return q[i].seq < q[j].seq
}
func (q gateQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *gateQueue) Push(x any) {
	w := x.(*gateWaiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *gateQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*q = old[:len(old)-1]
	return w
}

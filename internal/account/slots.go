package account

import (
	"context"
	"io"
	"time"
)

// SlotGate hands out slots of an account's session cap shared with other
// proxies (cluster mode): localSessions holds one for each session it
// opens, taken before the dial and given back after the close, so the
// sessions of all proxies together never exceed the cap.
type SlotGate interface {
	// Acquire takes one slot of account's cap, waiting until deadline
	// (and never past ctx) while all are held; the error is then
	// pool.ErrBusy (wrapped).
	Acquire(ctx context.Context, account string, cap int, deadline time.Time) (Slot, error)
}

// Slot is one held slot of a SlotGate.
type Slot interface {
	// Bind gives the slot the session it covers: the gate closes it at
	// once when the slot is lost (not renewed within its lease).
	Bind(session io.Closer)
	// Lost reports that the slot was lost: its session must go.
	Lost() bool
	// Release gives the slot back; only the first call counts.
	Release()
}

// slotConn is a session holding a slot: closing it gives the slot back,
// and a lost slot makes it broken.
type slotConn struct {
	Conn
	slot Slot
}

func (c slotConn) Broken() bool { return c.slot.Lost() || c.Conn.Broken() }

func (c slotConn) Quit(ctx context.Context) error {
	defer c.slot.Release()
	return c.Conn.Quit(ctx)
}

func (c slotConn) Close() error {
	defer c.slot.Release()
	return c.Conn.Close()
}

// leaseDeadlineKey carries, into the pool's dial, when Lease stops
// waiting: the wait for a cluster slot ends then too.
type leaseDeadlineKey struct{}

func withLeaseDeadline(ctx context.Context, wait time.Duration) context.Context {
	return context.WithValue(ctx, leaseDeadlineKey{}, time.Now().Add(wait))
}

func leaseDeadline(ctx context.Context) time.Time {
	d, _ := ctx.Value(leaseDeadlineKey{}).(time.Time)
	return d
}

// gated wraps dial so that each session holds a slot of gate.
func gated(gate SlotGate, id string, cap int, dial func(context.Context) (Conn, error)) func(context.Context) (Conn, error) {
	return func(ctx context.Context) (Conn, error) {
		slot, err := gate.Acquire(ctx, id, cap, leaseDeadline(ctx))
		if err != nil {
			return nil, err
		}
		c, err := dial(ctx)
		if err != nil {
			slot.Release()
			return nil, err
		}
		slot.Bind(c)
		return slotConn{Conn: c, slot: slot}, nil
	}
}

package cluster_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
)

// closer records that the gate closed the session of a lost slot.
type closer struct{ closed atomic.Bool }

func (c *closer) Close() error { c.closed.Store(true); return nil }

func acquire(t *testing.T, g account.SlotGate, acct string, cap int, wait time.Duration) (account.Slot, error) {
	t.Helper()
	return g.Acquire(t.Context(), acct, cap, time.Now().Add(wait))
}

// TestSlots_neverAboveCapAcrossProxies: three proxies race for the slots
// of one account; the slots held at once, counted as they are taken and
// before they are given back, never pass the cap, and every slot is used.
func TestSlots_neverAboveCapAcrossProxies(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	proxies := []*cluster.Client{open(t, c, "a"), open(t, c, "b"), open(t, c, "c")}
	const cap, workers, rounds = 3, 12, 25
	var held, peak, taken atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := proxies[w%len(proxies)].Slots()
			for range rounds {
				sl, err := g.Acquire(t.Context(), "acct", cap, time.Now().Add(time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				n := held.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				taken.Add(1)
				time.Sleep(time.Millisecond)
				held.Add(-1)
				sl.Release()
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > cap {
		t.Fatalf("%d slots held at once, cap %d", p, cap)
	}
	if taken.Load() != workers*rounds {
		t.Fatalf("taken %d, want %d", taken.Load(), workers*rounds)
	}
}

// TestSlots_deadProxysSlotsReturnByExpiry: slots left by a proxy that
// died (never renewed) stop counting when their lease ends.
func TestSlots_deadProxysSlotsReturnByExpiry(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	c.SessionLease, c.SessionRenew = 2*time.Second, 500*time.Millisecond
	// A proxy whose process is gone: its client is closed without giving
	// its slots back (Close stops the renewals, as kill -9 would).
	dead, err := cluster.Open(t.Context(), c, cluster.Options{Node: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := acquire(t, dead.Slots(), "acct", 2, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	dead.Close()
	alive := open(t, c, "alive")
	if _, err := acquire(t, alive.Slots(), "acct", 2, 0); !errors.Is(err, pool.ErrBusy) {
		t.Fatalf("with the dead proxy's slots still leased: err = %v, want ErrBusy", err)
	}
	if _, err := acquire(t, alive.Slots(), "acct", 2, time.Minute); err != nil {
		t.Fatalf("after the lease: %v", err)
	}
}

// TestSlots_lostLeaseClosesSession: a slot Redis no longer holds, with
// the cap taken by others, is lost at the next renewal and its session
// closed.
func TestSlots_lostLeaseClosesSession(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	c.SessionLease, c.SessionRenew = 3*time.Second, time.Second
	a := open(t, c, "a")
	sl, err := acquire(t, a.Slots(), "acct", 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var sess closer
	sl.Bind(&sess)
	// Someone else's slot replaces ours in Redis.
	if _, err := redistest.Do(s.Addr, "DEL", cluster.Key("acct", "slots")); err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Do(s.Addr, "ZADD", cluster.Key("acct", "slots"), "99999999999999", "other"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session closed", sess.closed.Load)
	if !sl.Lost() {
		t.Fatal("slot not marked lost")
	}
}

// TestSlots_localShareWhileRedisDown: with Redis gone, a proxy that saw
// two live proxies takes no new slot for one lease (the others' slots
// beyond their share run out meanwhile), then at most half of the cap,
// and keeps that many sessions past the lease; when Redis is back its
// slots count there again.
func TestSlots_localShareWhileRedisDown(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	c.SessionLease, c.SessionRenew = 3*time.Second, time.Second
	a, b := open(t, c, "a"), open(t, c, "b")
	waitFor(t, "two live proxies", func() bool { return a.Live() == 2 && b.Live() == 2 })
	s.Stop()
	waitFor(t, "down", func() bool { return !a.Up() })
	if _, err := acquire(t, a.Slots(), "acct", 4, 0); !errors.Is(err, pool.ErrBusy) {
		t.Fatalf("new slot at once after Redis went down: err = %v, want ErrBusy", err)
	}
	var kept []*closer
	for range 2 {
		sl, err := acquire(t, a.Slots(), "acct", 4, time.Minute)
		if err != nil {
			t.Fatalf("local share: %v", err)
		}
		cl := &closer{}
		sl.Bind(cl)
		kept = append(kept, cl)
	}
	if _, err := acquire(t, a.Slots(), "acct", 4, 300*time.Millisecond); !errors.Is(err, pool.ErrBusy) {
		t.Fatalf("third slot of a share of 2: err = %v, want ErrBusy", err)
	}
	time.Sleep(4 * time.Second) // past the lease: the share is kept
	for _, cl := range kept {
		if cl.closed.Load() {
			t.Fatal("a session within the share was closed while Redis was down")
		}
	}
	s.Restart()
	waitFor(t, "slots registered again", func() bool {
		n, err := redistest.Do(s.Addr, "ZCARD", cluster.Key("acct", "slots"))
		return err == nil && n == "2"
	})
}

// TestSlots_restartedRedisCountsOldSessionsFirst: after Redis restarted
// empty, a proxy cannot take a new slot while the sessions opened before
// the restart are registered again by their holders.
func TestSlots_restartedRedisCountsOldSessionsFirst(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	c.SessionLease, c.SessionRenew = 3*time.Second, time.Second
	a, b := open(t, c, "a"), open(t, c, "b")
	for range 2 {
		if _, err := acquire(t, a.Slots(), "acct", 2, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := acquire(t, b.Slots(), "acct", 2, time.Second); err != nil {
		// b learns the epoch on its first call.
		if !errors.Is(err, pool.ErrBusy) {
			t.Fatal(err)
		}
	}
	s.Restart()
	if sl, err := acquire(t, b.Slots(), "acct", 2, 2*time.Second); err == nil {
		sl.Release()
		t.Fatal("a new slot was taken in a restarted, empty Redis before the old sessions were counted")
	}
	waitFor(t, "a's slots registered again", func() bool {
		n, err := redistest.Do(s.Addr, "ZCARD", cluster.Key("acct", "slots"))
		return err == nil && n == "2"
	})
	if _, err := acquire(t, b.Slots(), "acct", 2, 0); !errors.Is(err, pool.ErrBusy) {
		t.Fatalf("cap full again: err = %v, want ErrBusy", err)
	}
}

var _ = config.Cluster{}

package pool_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeSession struct {
	id     int
	broken atomic.Bool
	quit   atomic.Bool
	closed atomic.Bool
}

func (s *fakeSession) Broken() bool { return s.broken.Load() }
func (s *fakeSession) Quit(context.Context) error {
	s.quit.Store(true)
	s.closed.Store(true)
	return nil
}
func (s *fakeSession) Close() error { s.closed.Store(true); return nil }

type dialer struct {
	mu    sync.Mutex
	n     int
	all   []*fakeSession
	fail  error
	delay time.Duration
}

func (d *dialer) dial(ctx context.Context) (*fakeSession, error) {
	if d.delay > 0 {
		select {
		case <-time.After(d.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return nil, d.fail
	}
	d.n++
	s := &fakeSession{id: d.n}
	d.all = append(d.all, s)
	return s, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPool_capHoldsUnder500Clients(t *testing.T) {
	t.Parallel()
	d := &dialer{delay: time.Millisecond}
	p := pool.New(pool.Config{Max: 3}, d.dial)
	defer p.Close()
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := p.Lease(context.Background(), 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			n := inUse.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			if o := p.Stats().Open; o > 3 {
				t.Errorf("open sessions %d > cap 3", o)
			}
			inUse.Add(-1)
			ok.Add(1)
			p.Release(l)
		}()
	}
	wg.Wait()
	if peak.Load() > 3 || ok.Load() != 500 {
		t.Fatalf("peak %d, ok %d", peak.Load(), ok.Load())
	}
	if d.n > 3 {
		t.Fatalf("dialed %d sessions for cap 3", d.n)
	}
}

func TestPool_reuseAndRetire(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Unix(1e9, 0)}
	d := &dialer{}
	p := pool.New(pool.Config{Max: 2, MaxMessages: 2, MaxAge: time.Hour, IdleTimeout: time.Minute, Now: clk.now}, d.dial)
	defer p.Close()
	ctx := context.Background()

	l, _ := p.Lease(ctx, time.Second)
	if !l.Fresh() {
		t.Fatal("first lease not fresh")
	}
	s1 := l.Session()
	l.Delivered()
	p.Release(l)

	l, _ = p.Lease(ctx, time.Second)
	if l.Fresh() || l.Session() != s1 {
		t.Fatal("idle session not reused")
	}
	l.Delivered() // second message: due for retirement
	p.Release(l)
	waitFor(t, s1.quit.Load, "session past MaxMessages QUIT")

	l, _ = p.Lease(ctx, time.Second)
	s2 := l.Session()
	p.Release(l)
	clk.add(2 * time.Minute)
	p.Sweep()
	p.Close() // waits for the background QUIT
	if !s2.quit.Load() {
		t.Fatal("idle session not closed by Sweep")
	}
	if st := p.Stats(); st.Open != 0 || st.Busy != 0 || st.Opened != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPool_brokenSessionIsNotReused(t *testing.T) {
	t.Parallel()
	d := &dialer{}
	p := pool.New(pool.Config{Max: 1}, d.dial)
	defer p.Close()
	l, _ := p.Lease(context.Background(), time.Second)
	s := l.Session()
	s.broken.Store(true)
	p.Release(l)
	if !s.closed.Load() || s.quit.Load() {
		t.Fatal("broken session must be closed without QUIT")
	}
	l, _ = p.Lease(context.Background(), time.Second)
	if l.Session() == s {
		t.Fatal("broken session reused")
	}
	p.Discard(l)
	if p.Stats().Open != 0 {
		t.Fatal("discarded session still counted")
	}
}

func TestPool_busyAndDialErrors(t *testing.T) {
	t.Parallel()
	d := &dialer{}
	p := pool.New(pool.Config{Max: 1}, d.dial)
	defer p.Close()
	l, _ := p.Lease(context.Background(), time.Second)
	if _, err := p.Lease(context.Background(), 20*time.Millisecond); !errors.Is(err, pool.ErrBusy) {
		t.Fatalf("want ErrBusy, got %v", err)
	}
	p.Release(l)

	boom := errors.New("dial failed")
	d2 := &dialer{fail: boom}
	p2 := pool.New(pool.Config{Max: 1}, d2.dial)
	defer p2.Close()
	for i := 0; i < 3; i++ { // a failed dial must give its slot back
		if _, err := p2.Lease(context.Background(), 20*time.Millisecond); !errors.Is(err, boom) {
			t.Fatalf("want dial error, got %v", err)
		}
	}
}

// waitFor polls cond until it holds (background QUITs are asynchronous).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkLeaseRelease(b *testing.B) {
	d := &dialer{}
	p := pool.New(pool.Config{Max: 8}, d.dial)
	defer p.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Lease(ctx, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			p.Release(l)
		}
	})
}

func TestPool_shrinkAfterRefusal(t *testing.T) {
	t.Parallel()
	d := &dialer{}
	p := pool.New(pool.Config{Max: 3}, d.dial)
	defer p.Close()
	ctx := context.Background()
	var ls []*pool.Lease[*fakeSession]
	for i := 0; i < 3; i++ {
		l, err := p.Lease(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	p.Shrink(time.Hour)
	p.Shrink(time.Hour)
	p.Shrink(time.Hour) // never below one
	if got := p.Cap(); got != 1 {
		t.Fatalf("cap after shrinks = %d, want 1", got)
	}
	for _, l := range ls {
		p.Release(l)
	}
	// Only one session may be leased now.
	l, err := p.Lease(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Lease(ctx, 20*time.Millisecond); !errors.Is(err, pool.ErrBusy) {
		t.Fatalf("second lease while shrunk to 1: %v", err)
	}
	p.Release(l)
	waitFor(t, func() bool { return p.Stats().Open <= 1 }, "sessions beyond the shrunk cap closed")
}

func TestPool_shrinkExpires(t *testing.T) {
	t.Parallel()
	d := &dialer{}
	p := pool.New(pool.Config{Max: 2}, d.dial)
	defer p.Close()
	p.Shrink(10 * time.Millisecond)
	if p.Cap() != 1 {
		t.Fatal("not shrunk")
	}
	waitFor(t, func() bool { return p.Cap() == 2 }, "cap restored")
	ctx := context.Background()
	l1, err1 := p.Lease(ctx, time.Second)
	l2, err2 := p.Lease(ctx, time.Second)
	if err1 != nil || err2 != nil {
		t.Fatalf("two leases after the shrink expired: %v %v", err1, err2)
	}
	p.Release(l1)
	p.Release(l2)
}

// TestPool_leaseNewClosesIdleAndDials: after a dead pooled session the
// caller asks for a new one; the idle sessions, idle at least as long,
// are closed and a new session is dialed, within Max.
func TestPool_leaseNewClosesIdleAndDials(t *testing.T) {
	t.Parallel()
	d := &dialer{}
	p := pool.New(pool.Config{Max: 2}, d.dial)
	defer p.Close()
	ctx := context.Background()
	l1, _ := p.Lease(ctx, time.Second)
	l2, _ := p.Lease(ctx, time.Second)
	s1 := l1.Session()
	p.Release(l1)
	p.Release(l2)
	dead, _ := p.Lease(ctx, time.Second) // the most recently used: l2's
	if dead.Fresh() {
		t.Fatal("idle session not reused")
	}
	p.Discard(dead)
	l, err := p.LeaseNew(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Fresh() || l.Session() == s1 {
		t.Fatal("LeaseNew reused an idle session")
	}
	waitFor(t, s1.closed.Load, "the older idle session closed")
	if st := p.Stats(); st.Open != 1 || st.Opened != 3 {
		t.Fatalf("stats %+v", st)
	}
	p.Release(l)
}

// reasons records the reason of every "upstream session closed" line.
type reasons struct {
	mu  sync.Mutex
	got []string
}

func (r *reasons) Enabled(context.Context, slog.Level) bool { return true }
func (r *reasons) Handle(_ context.Context, rec slog.Record) error {
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" {
			r.mu.Lock()
			r.got = append(r.got, a.Value.String())
			r.mu.Unlock()
		}
		return true
	})
	return nil
}
func (r *reasons) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *reasons) WithGroup(string) slog.Handler      { return r }
func (r *reasons) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// TestPool_closeReasonSaysWhy: a session retired at its maximum age says
// max_age, even when it is also idle by the time it is looked at (issue
// 11: a session in use every 10 s was logged reason=idle).
func TestPool_closeReasonSaysWhy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  pool.Config
		use  func(p *pool.Pool[*fakeSession], clk *clock)
		want string
	}{
		{"released past max age", pool.Config{MaxAge: time.Minute, IdleTimeout: 30 * time.Second}, func(p *pool.Pool[*fakeSession], clk *clock) {
			l, _ := p.Lease(context.Background(), time.Second)
			clk.add(2 * time.Minute)
			l.Release()
		}, "max_age"},
		{"swept past max age and idle", pool.Config{MaxAge: time.Minute, IdleTimeout: 30 * time.Second}, func(p *pool.Pool[*fakeSession], clk *clock) {
			for range 6 { // in use every 10 s
				l, _ := p.Lease(context.Background(), time.Second)
				l.Release()
				clk.add(10 * time.Second)
			}
			clk.add(40 * time.Second)
			p.Sweep()
		}, "max_age"},
		{"swept idle", pool.Config{MaxAge: time.Hour, IdleTimeout: 30 * time.Second}, func(p *pool.Pool[*fakeSession], clk *clock) {
			l, _ := p.Lease(context.Background(), time.Second)
			l.Release()
			clk.add(time.Minute)
			p.Sweep()
		}, "idle"},
		{"carried its messages", pool.Config{MaxMessages: 1}, func(p *pool.Pool[*fakeSession], clk *clock) {
			l, _ := p.Lease(context.Background(), time.Second)
			l.Delivered()
			l.Release()
		}, "max_messages"},
		{"discarded", pool.Config{}, func(p *pool.Pool[*fakeSession], clk *clock) {
			l, _ := p.Lease(context.Background(), time.Second)
			l.Discard()
		}, "discarded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Unix(1e9, 0)}
			rec := &reasons{}
			cfg := tc.cfg
			cfg.Max, cfg.Now, cfg.Logger = 2, clk.now, slog.New(rec)
			p := pool.New(cfg, (&dialer{}).dial)
			tc.use(p, clk)
			p.Close()
			if got := rec.list(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("close reasons = %v, want [%s]", got, tc.want)
			}
		})
	}
}

// TestPool_drainClosesIdleNowAndLeasedOnReturn: after Drain no session
// open before it carries another message, and the pool goes on lending
// new ones.
func TestPool_drainClosesIdleNowAndLeasedOnReturn(t *testing.T) {
	t.Parallel()
	d := &dialer{}
	p := pool.New(pool.Config{Max: 3}, d.dial)
	defer p.Close()
	ctx := context.Background()
	idle, _ := p.Lease(ctx, time.Second)
	busy, _ := p.Lease(ctx, time.Second)
	idle.Release()
	p.Drain("token revoked")
	if !eventually(idle.Session().quit.Load) {
		t.Error("idle session not closed at Drain")
	}
	if busy.Session().closed.Load() {
		t.Error("leased session closed under its transaction")
	}
	busy.Release()
	if !eventually(busy.Session().closed.Load) {
		t.Error("leased session from before Drain kept on return")
	}
	l, err := p.Lease(ctx, time.Second)
	if err != nil || !l.Fresh() {
		t.Fatalf("lease after Drain: %v, fresh %v; want a new session", err, l != nil && l.Fresh())
	}
	l.Release()
	if st := p.Stats(); st.Open != 1 || st.Opened != 3 {
		t.Errorf("stats after Drain = %+v, want 1 open of 3 opened", st)
	}
}

// eventually waits up to 5s for cond (background QUITs).
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

package cluster_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
)

func budget(t testing.TB, c *cluster.Client) *cluster.Budget {
	t.Helper()
	b := c.NewBudget(0, nil)
	t.Cleanup(b.Close)
	return b
}

// send admits one message with rcpts recipients and finishes it; it
// reports whether the message was admitted and every recipient reserved.
func send(ctx context.Context, b quota.Budget, acct string, l quota.Limits, rcpts int, accepted bool) (bool, *quota.Denial) {
	tk, d := b.Admit(ctx, acct, l)
	if d != nil {
		return false, d
	}
	for range rcpts {
		if tooMany, d := tk.Rcpt(ctx); tooMany || d != nil {
			tk.Done(false)
			return false, d
		}
	}
	tk.Done(accepted)
	return true, nil
}

// TestBudget_decidesAsTheBook: the same sequence on a quota.Book and on
// the cluster Budget gets the same answers.
func TestBudget_decidesAsTheBook(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	cb := budget(t, open(t, standalone(t, s.Addr), "a"))
	book := quota.NewBook(nil)
	for _, tc := range []struct {
		name   string
		l      quota.Limits
		rcpts  []int  // recipients per message, in order
		accept []bool // upstream outcome per message
	}{
		{"per minute", quota.Limits{MessagesPerMinute: 3}, []int{1, 1, 1, 1, 1}, []bool{true, true, true, true, true}},
		{"refused messages refunded", quota.Limits{MessagesPerDay: 2}, []int{1, 1, 1, 1}, []bool{false, true, false, true}},
		{"recipients per day", quota.Limits{RecipientsPerDay: 5}, []int{2, 2, 2, 1, 1}, []bool{true, true, true, true, true}},
		{"recipients per message", quota.Limits{RecipientsPerMessage: 2}, []int{3, 2}, []bool{true, true}},
	} {
		acct := "acct-" + tc.name
		for i, n := range tc.rcpts {
			gotOK, gotD := send(t.Context(), cb, acct, tc.l, n, tc.accept[i])
			wantOK, wantD := send(t.Context(), book, acct, tc.l, n, tc.accept[i])
			if gotOK != wantOK || (gotD == nil) != (wantD == nil) || (gotD != nil && gotD.Limit != wantD.Limit) {
				t.Fatalf("%s, message %d: cluster (%v, %v), book (%v, %v)", tc.name, i, gotOK, gotD, wantOK, wantD)
			}
			// Let the finished ticket reach Redis, as a next message
			// would carry it anyway.
			time.Sleep(200 * time.Millisecond)
		}
		st, want := cb.Status(acct, tc.l), book.Status(acct, tc.l)
		if len(st.Budgets) != len(want.Budgets) {
			t.Fatalf("%s: status %+v, book %+v", tc.name, st, want)
		}
		for i := range st.Budgets {
			if st.Budgets[i].Used != want.Budgets[i].Used {
				t.Errorf("%s: %s used %d, book %d", tc.name, st.Budgets[i].Name, st.Budgets[i].Used, want.Budgets[i].Used)
			}
		}
	}
}

// TestBudget_noOvershootUnderRaces: 40 goroutines on two proxies send
// until the daily budget refuses them, some messages refused upstream
// (refunded); exactly the budget is accepted, never more.
func TestBudget_noOvershootUnderRaces(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	bs := []*cluster.Budget{budget(t, open(t, c, "a")), budget(t, open(t, c, "b"))}
	l := quota.Limits{MessagesPerDay: 150, RecipientsPerDay: 400}
	var accepted, rcpts atomic.Int64
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bs[g%2]
			for i := 0; ; i++ {
				ok := i%5 != 4 // every fifth refused by the "upstream"
				n := 1 + i%3
				admitted, d := send(t.Context(), b, "acct", l, n, ok)
				if d != nil && d.Limit == "daily message budget" {
					return
				}
				if admitted && ok {
					accepted.Add(1)
					rcpts.Add(int64(n))
				}
			}
		}()
	}
	wg.Wait()
	if accepted.Load() > int64(l.MessagesPerDay) || rcpts.Load() > int64(l.RecipientsPerDay) {
		t.Fatalf("accepted %d messages, %d recipients; budget %d, %d", accepted.Load(), rcpts.Load(), l.MessagesPerDay, l.RecipientsPerDay)
	}
	if rcpts.Load() < int64(l.RecipientsPerDay)-3 && accepted.Load() < int64(l.MessagesPerDay) {
		t.Fatalf("stopped early: %d messages, %d recipients", accepted.Load(), rcpts.Load())
	}
}

// TestBudget_coolDownReachesEveryProxy: a cool-down learned on one proxy
// refuses the next message on another.
func TestBudget_coolDownReachesEveryProxy(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	a, b := budget(t, open(t, c, "a")), budget(t, open(t, c, "b"))
	l := quota.Limits{MessagesPerDay: 10}
	a.CoolDown("acct", "550 5.4.5 Daily user sending limit exceeded", time.Hour)
	_, d := b.Admit(t.Context(), "acct", l)
	if d == nil || !d.Cooldown() || d.ResetIn < 59*time.Minute {
		t.Fatalf("Admit on the other proxy = %+v, want a cool-down of about an hour", d)
	}
	b.Clear("acct")
	if _, d := a.Admit(t.Context(), "acct", l); d != nil {
		t.Fatalf("after Clear: %v", d)
	}
}

// TestBudget_localShareWhileDownThenReconciled: with Redis down a proxy
// that saw two live proxies accepts half of what was left, and what it
// accepted is counted in Redis once Redis is back.
func TestBudget_localShareWhileDownThenReconciled(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := standalone(t, s.Addr)
	cl, other := open(t, c, "a"), open(t, c, "b")
	b := budget(t, cl)
	waitFor(t, "two live proxies", func() bool { return cl.Live() == 2 })
	l := quota.Limits{MessagesPerDay: 100}
	for range 40 {
		if ok, d := send(t.Context(), b, "acct", l, 1, true); !ok {
			t.Fatal(d)
		}
	}
	time.Sleep(100 * time.Millisecond) // the last finished tickets reach Redis
	send(t.Context(), b, "acct", l, 1, false)
	other.Close()
	s.Stop()
	waitFor(t, "down", func() bool { return !cl.Up() })
	// For a few seconds Admit waits rather than decide on stale counts.
	if _, d := b.Admit(t.Context(), "acct", l); d == nil || d.Limit != "budget (shared counts unavailable)" {
		t.Fatalf("just after Redis went down: %v, want a short wait", d)
	}
	waitFor(t, "the local share", func() bool {
		tk, d := b.Admit(t.Context(), "acct", l)
		if d != nil {
			return false
		}
		tk.Done(true)
		return true
	})
	local := 1
	for {
		ok, d := send(t.Context(), b, "acct", l, 1, true)
		if !ok {
			if d == nil || d.Limit != "daily message budget" {
				t.Fatalf("refused by %v", d)
			}
			break
		}
		local++
	}
	if local != 30 {
		t.Fatalf("accepted %d on the local share, want (100-40)/2 = 30", local)
	}
	s.Restart()
	waitFor(t, "the local messages counted in Redis", func() bool {
		st := b.Status("acct", l)
		return len(st.Budgets) == 1 && st.Budgets[0].Used == 70
	})
}

// TestBudget_emptiedRedisIsReseeded: after Redis restarted without its
// data, each proxy adds back the messages it accepted.
func TestBudget_emptiedRedisIsReseeded(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	a, b := open(t, c, "a"), open(t, c, "b")
	ba, bb := budget(t, a), budget(t, b)
	l := quota.Limits{MessagesPerDay: 100, RecipientsPerDay: 100}
	for i := range 10 {
		bx := ba
		if i%2 == 1 {
			bx = bb
		}
		if ok, d := send(t.Context(), bx, "acct", l, 2, true); !ok {
			t.Fatal(d)
		}
	}
	s.Restart()
	var last quota.Status
	defer func() {
		if t.Failed() {
			t.Logf("last status: %+v", last)
		}
	}()
	waitFor(t, "both proxies' counts back", func() bool {
		st := ba.Status("acct", l)
		last = st
		return len(st.Budgets) == 2 && st.Budgets[0].Used == 10 && st.Budgets[1].Used == 20
	})
}

// TestRedisCluster_hashTagsKeepAnAccountOnOneShard: slots and budgets
// work on a 3-master Redis Cluster for accounts spread over the shards
// (a script touching keys of two slots would fail with CROSSSLOT).
func TestRedisCluster_hashTagsKeepAnAccountOnOneShard(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t)
	c := config.Cluster{Enabled: true, Addrs: rc.Addrs(), RedisCluster: true,
		Timeout: time.Second, SessionLease: 15 * time.Second, SessionRenew: 5 * time.Second}
	cl := open(t, c, "a")
	b := budget(t, cl)
	l := quota.Limits{MessagesPerDay: 3, RecipientsPerDay: 10}
	for _, acct := range []string{"a1", "b2", "c3", "d4", "e5", "f6"} {
		for i := range 4 {
			ok, d := send(t.Context(), b, acct, l, 2, true)
			if want := i < 3; ok != want {
				t.Fatalf("%s message %d: admitted %v (%v), want %v", acct, i, ok, d, want)
			}
		}
		sl, err := cl.Slots().Acquire(t.Context(), acct, 1, time.Now().Add(time.Second))
		if err != nil {
			t.Fatalf("%s: slot: %v", acct, err)
		}
		sl.Release()
	}
	if !cl.Up() {
		t.Fatal("client went down on a Redis Cluster")
	}
}

// TestSentinel_failoverKeepsGoing: after a Sentinel failover the proxy
// goes on with the new master; calls during the switch fall back to the
// local share, none fails.
func TestSentinel_failoverKeepsGoing(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t)
	c := config.Cluster{Enabled: true, Addrs: []string{sn.Addr}, SentinelMaster: sn.MasterName,
		Timeout: time.Second, SessionLease: 15 * time.Second, SessionRenew: 5 * time.Second}
	cl := open(t, c, "a")
	b := budget(t, cl)
	l := quota.Limits{MessagesPerDay: 1000}
	if ok, d := send(t.Context(), b, "acct", l, 1, true); !ok {
		t.Fatal(d)
	}
	waitFor(t, "the replica in sync", func() bool {
		info, err := redistest.Do(sn.Master.Addr, "INFO", "replication")
		return err == nil && contains(info, "connected_slaves:1") && contains(info, "state=online")
	})
	if _, err := redistest.Do(sn.Addr, "SENTINEL", "FAILOVER", sn.MasterName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica promoted", func() bool {
		m, err := sn.MasterAddr()
		return err == nil && m == sn.Replica.Addr
	})
	waitFor(t, "admits on the new master", func() bool {
		if ok, d := send(t.Context(), b, "acct", l, 1, true); !ok {
			t.Fatalf("refused during failover: %v", d)
		}
		info, err := redistest.Do(sn.Replica.Addr, "INFO", "commandstats")
		return err == nil && contains(info, "cmdstat_evalsha") && cl.Up()
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

package clustertoken_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/clustertoken"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// renewal is how far the clock moves between rounds: past the hand-out
// time of a 1 h token (expiry − 10 min), so every round needs a new one.
const renewal = 55 * time.Minute

// TestShared_proxiesRequestOncePerRenewal: two or three proxies sharing
// Redis make one token request per renewal time between them, each asking
// twice at once; on their own they make one each.
func TestShared_proxiesRequestOncePerRenewal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		proxies  int
		shared   bool
		rotating bool
		want     int64 // token requests over the rounds
	}{
		{"two shared", 2, true, false, rounds},
		{"two shared, rotating refresh tokens", 2, true, true, rounds},
		{"three shared, rotating refresh tokens", 3, true, true, rounds},
		{"control: two on their own", 2, false, false, 2 * rounds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: tc.rotating})
			p.SetRevokeOnReuse(true) // a rotated-away token used by any proxy kills the grant
			p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-0"})
			c := newClock()
			var r *redistest.Server
			if tc.shared {
				r = startRedis(t)
			}
			var srcs []*token.Source
			for i := range tc.proxies {
				var sh token.Shared
				if r != nil {
					sh = openShared(t, r.Addr, fmt.Sprint("p", i))
				}
				srcs = append(srcs, newProxy(t, p, sh, c, "ms", "rt-0").src)
			}
			for round := range rounds {
				c.Advance(renewal)
				var wg sync.WaitGroup
				calls := append(slices.Clone(srcs), srcs...)
				toks := make([]token.Token, len(calls))
				errs := make([]error, len(calls))
				for i, src := range calls {
					wg.Go(func() { toks[i], errs[i] = src.Token(t.Context()) })
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d, call %d: %v", round, i, err)
					}
					if tc.shared && toks[i].Access != toks[0].Access {
						t.Fatalf("round %d: the proxies hold different access tokens", round)
					}
				}
			}
			if got := p.Stats().TokenRequests; got != tc.want {
				t.Fatalf("token requests over %d renewals = %d, want %d", rounds, got, tc.want)
			}
		})
	}
}

const rounds = 5

// TestShared_flushedRedisLosesNoRotation: the provider rotates the refresh
// token at every refresh and retires the old one (a retired one presented
// again revokes the grant). Redis is flushed between refreshes; the
// account keeps working on both proxies, a third proxy that never saw a
// token (a new host) gets one from the re-seeded Redis, and the refresh
// token Redis holds at the end is the provider's current one.
func TestShared_flushedRedisLosesNoRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reseed bool // run Sync.Reseed after each flush
	}{
		{"re-seeded by Sync", true},
		{"re-seeded by the next request", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
			p.SetRevokeOnReuse(true)
			p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-0"})
			r := startRedis(t)
			c := newClock()
			shA := openShared(t, r.Addr, "a")
			a := newProxy(t, p, shA, c, "ms", "rt-0")
			b := newProxy(t, p, openShared(t, r.Addr, "b"), c, "ms", "rt-0")
			sync := clustertoken.NewSync(shA, func() []clustertoken.Follower { return []clustertoken.Follower{a.src} }, nil)
			for round := range rounds {
				c.Advance(renewal)
				for i, src := range []*token.Source{a.src, b.src} {
					if _, err := src.Token(t.Context()); err != nil {
						t.Fatalf("round %d, proxy %d: %v", round, i, err)
					}
				}
				if _, err := redistest.Do(r.Addr, "FLUSHALL"); err != nil {
					t.Fatal(err)
				}
				if tc.reseed {
					if n, err := sync.Reseed(t.Context()); err != nil || n != 1 {
						t.Fatalf("round %d: reseed = %d, %v; want 1 record", round, n, err)
					}
				}
			}
			if tc.reseed {
				// A new proxy, no state file: only Redis has the current
				// refresh token (the configured rt-0 is long retired).
				newcomer := newProxy(t, p, openShared(t, r.Addr, "c"), c, "ms", "rt-0")
				c.Advance(renewal)
				if _, err := newcomer.src.Token(t.Context()); err != nil {
					t.Fatalf("new proxy after the flush: %v", err)
				}
				if _, err := a.src.Token(t.Context()); err != nil {
					t.Fatalf("proxy a after the new one refreshed: %v", err)
				}
			} else {
				c.Advance(renewal)
				if _, err := a.src.Token(t.Context()); err != nil {
					t.Fatalf("proxy a after the last flush: %v", err)
				}
			}
			got, err := shA.Load(t.Context(), "ms")
			if err != nil {
				t.Fatal(err)
			}
			if cur := p.RefreshToken("ms@example.com"); got.RefreshToken.Reveal() != cur {
				t.Fatalf("Redis holds refresh token version %d, not the provider's current one", got.RefreshVersion)
			}
			for _, px := range []proxy{a, b} {
				if st := px.src.Status(); st.State != token.StateOK {
					t.Fatalf("state %s: %s", st.State, st.LastError)
				}
			}
			keys, err := redistest.Do(r.Addr, "KEYS", "*")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range strings.Split(keys, "\n") {
				if strings.Contains(k, "M.fake-") || strings.Contains(k, "rt-0") {
					t.Fatalf("a token in a key name: %q", k)
				}
			}
		})
	}
}

// TestShared_commitAndSeedAreCompareAndSet checks the scripts' rules.
func TestShared_commitAndSeedAreCompareAndSet(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	sh := openShared(t, r.Addr, "a")
	ctx := t.Context()
	rec := func(rtv int64) token.Committed {
		return token.Committed{Credential: "v1:c", Grant: "v1:g", RefreshToken: secret.New("rt"), RefreshVersion: rtv, Version: rtv}
	}
	steps := []struct {
		name string
		do   func() (bool, error)
		want bool
	}{
		{"commit over nothing at base 0", func() (bool, error) { return sh.Commit(ctx, "x", 0, rec(1)) }, true},
		{"commit again at base 0 loses", func() (bool, error) { return sh.Commit(ctx, "x", 0, rec(1)) }, false},
		{"commit at base 1", func() (bool, error) { return sh.Commit(ctx, "x", 1, rec(2)) }, true},
		{"seed an older refresh version", func() (bool, error) { return sh.Seed(ctx, "x", rec(1)) }, false},
		{"seed the same refresh version", func() (bool, error) { return sh.Seed(ctx, "x", rec(2)) }, false},
		{"seed a newer refresh version", func() (bool, error) { return sh.Seed(ctx, "x", rec(7)) }, true},
		{"seed another credential", func() (bool, error) {
			o := rec(9)
			o.Credential = "v1:other"
			return sh.Seed(ctx, "x", o)
		}, false},
		{"seed a missing record", func() (bool, error) { return sh.Seed(ctx, "y", rec(3)) }, true},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil || got != s.want {
			t.Fatalf("%s: %v, %v; want %v", s.name, got, err, s.want)
		}
	}
	got, err := sh.Load(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	// 2 commits, then a seed of refresh version 7 lifts Version above both.
	if got.Version != 8 || got.RefreshVersion != 7 || got.Credential != "v1:c" {
		t.Fatalf("record = version %d, refresh version %d, credential %q", got.Version, got.RefreshVersion, got.Credential)
	}
}

// TestShared_lockIsExclusive: one holder at a time; unlock frees it.
func TestShared_lockIsExclusive(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b := openShared(t, r.Addr, "a"), openShared(t, r.Addr, "b")
	ctx := t.Context()
	unlock, ok, err := a.Lock(ctx, "x", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first lock: %v, %v", ok, err)
	}
	if _, ok, err := b.Lock(ctx, "x", time.Minute); err != nil || ok {
		t.Fatalf("second lock while held: %v, %v", ok, err)
	}
	unlock()
	unlockB, ok, err := b.Lock(ctx, "x", time.Minute)
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v, %v", ok, err)
	}
	unlock() // a's stale unlock must not free b's lock
	if _, ok, _ := a.Lock(ctx, "x", time.Minute); ok {
		t.Fatal("a stale unlock freed another holder's lock")
	}
	unlockB()
}

// TestShared_redisDownRenewsLocallyAndReseedsLater: while Redis is down a
// proxy renews on its own and keeps the rotation, with the next version,
// in its state file; when Redis is back (with its data, so holding the
// older version), Sync writes the newer one, and a new proxy gets the
// provider's current refresh token from Redis (the old one is retired,
// and presenting it would revoke the grant).
func TestShared_redisDownRenewsLocallyAndReseedsLater(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.SetRevokeOnReuse(true)
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-0"})
	r := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := newClock()
	shA := openShared(t, r.Addr, "a")
	a := newProxy(t, p, shA, c, "ms", "rt-0")
	sync := clustertoken.NewSync(shA, func() []clustertoken.Follower { return []clustertoken.Follower{a.src} }, nil)
	if _, err := a.src.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := sync.Reseed(t.Context()); err != nil { // this proxy's first epoch: nothing newer to write
		t.Fatal(err)
	}

	r.Stop()
	c.Advance(renewal)
	if _, err := a.src.Token(t.Context()); err != nil {
		t.Fatalf("renewal while Redis is down: %v", err)
	}
	if _, err := sync.Reseed(t.Context()); err == nil {
		t.Fatal("Reseed reached a stopped Redis")
	}
	r.Restart()
	// Redis kept its data (AOF), so the epoch is the same; the failed
	// round above makes the next one that reaches Redis seed all the same.
	// The client's first calls after the restart may still fail.
	var n int
	var err error
	for range 100 {
		if n, err = sync.Reseed(t.Context()); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || n != 1 {
		t.Fatalf("reseed after Redis is back: %d, %v; want the newer version written", n, err)
	}
	newcomer := newProxy(t, p, openShared(t, r.Addr, "c"), c, "ms", "rt-0")
	c.Advance(renewal)
	if _, err := newcomer.src.Token(t.Context()); err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	c.Advance(renewal)
	if _, err := a.src.Token(t.Context()); err != nil {
		t.Fatalf("proxy a after the new one renewed: %v", err)
	}
	holdsCurrent(t, shA, p)
}

// scripted is a token.Shared whose lock never excludes anyone (as when a
// lock expired under a slow holder) and whose Commit can be ordered.
type scripted struct {
	token.Shared
	beforeLock   func()
	aroundCommit func(commit func() (bool, error)) (bool, error)
}

func (s scripted) Lock(ctx context.Context, account string, ttl time.Duration) (func(), bool, error) {
	s.beforeLock()
	return func() {}, true, nil
}

func (s scripted) Commit(ctx context.Context, account string, base int64, c token.Committed) (bool, error) {
	return s.aroundCommit(func() (bool, error) { return s.Shared.Commit(ctx, account, base, c) })
}

// TestShared_correctnessDoesNotRestOnTheLock: with a lock that excludes
// no one, proxy a renews and rotates the refresh token; proxy b, which
// read the record before a committed, presents the retired token, gets
// invalid_grant and commits the verdict after a's commit. The
// compare-and-set refuses b's stale commit and b takes a's token: the
// account keeps working and Redis keeps the current refresh token.
func TestShared_correctnessDoesNotRestOnTheLock(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-0"})
	r := startRedis(t)
	c := newClock()
	shA, shB := openShared(t, r.Addr, "a"), openShared(t, r.Addr, "b")
	bEntered, aCommitted := make(chan struct{}), make(chan struct{})
	var bOnce, aOnce sync.Once
	wait := func(ch chan struct{}) {
		select {
		case <-ch:
		case <-t.Context().Done():
		}
	}
	armed := false // set before the scripted round; read by the hooks after
	a := newProxy(t, p, scripted{Shared: shA,
		beforeLock: func() {},
		aroundCommit: func(commit func() (bool, error)) (bool, error) {
			if !armed {
				return commit()
			}
			wait(bEntered) // b has read the stale record and failed
			ok, err := commit()
			aOnce.Do(func() { close(aCommitted) })
			return ok, err
		}}, c, "ms", "rt-0")
	b := newProxy(t, p, scripted{Shared: shB,
		beforeLock: func() {
			if !armed {
				return
			}
			for p.Stats().TokenRefreshes < 2 { // a's renewal (and rotation) went first
				time.Sleep(5 * time.Millisecond)
			}
		},
		aroundCommit: func(commit func() (bool, error)) (bool, error) {
			if !armed {
				return commit()
			}
			bOnce.Do(func() { close(bEntered) })
			wait(aCommitted)
			return commit()
		}}, c, "ms", "rt-0")
	for _, px := range []proxy{a, b} {
		if _, err := px.src.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	armed = true
	c.Advance(renewal)
	var wg sync.WaitGroup
	var tokA, tokB token.Token
	var errA, errB error
	wg.Go(func() { tokA, errA = a.src.Token(t.Context()) })
	wg.Go(func() { tokB, errB = b.src.Token(t.Context()) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("a: %v; b: %v", errA, errB)
	}
	if tokA.Access != tokB.Access {
		t.Fatal("b did not take a's committed token")
	}
	got, err := shA.Load(t.Context(), "ms")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "" || got.RefreshToken.Reveal() != p.RefreshToken("ms@example.com") {
		t.Fatalf("record: state %q, current refresh token kept: %v", got.State, got.RefreshToken.Reveal() == p.RefreshToken("ms@example.com"))
	}
}

// TestShared_noSecretInLogs: renewals, rotations, a flush with its
// re-seed and an outage of Redis, all logged at debug level, never print
// an access or refresh token.
func TestShared_noSecretInLogs(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-configured-secret"})
	r := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := newClock()
	var buf logBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	shA := openShared(t, r.Addr, "a")
	a := newProxyLog(t, p, shA, c, "ms", "rt-configured-secret", log)
	b := newProxyLog(t, p, openShared(t, r.Addr, "b"), c, "ms", "rt-configured-secret", log)
	sync := clustertoken.NewSync(shA, func() []clustertoken.Follower { return []clustertoken.Follower{a.src} }, log)
	var rts []string
	for round := range 3 {
		c.Advance(renewal)
		for _, px := range []proxy{a, b} {
			if _, err := px.src.Token(t.Context()); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		rts = append(rts, p.RefreshToken("ms@example.com"))
		if _, err := redistest.Do(r.Addr, "FLUSHALL"); err != nil {
			t.Fatal(err)
		}
		if _, err := sync.Reseed(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	r.Stop()
	c.Advance(renewal)
	if _, err := a.src.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, _ = sync.Reseed(t.Context())
	out := buf.String()
	if !strings.Contains(out, "rotated") {
		t.Fatalf("nothing logged about rotation; the check would prove nothing:\n%s", out)
	}
	for _, s := range append(append(rts, "rt-configured-secret"), p.IssuedAccessTokens()...) {
		if strings.Contains(out, s) {
			t.Fatalf("a token appears in the log")
		}
	}
}

// failing is a token.Shared that does not answer while down is set (a
// short outage, or a network blip).
type failing struct {
	token.Shared
	down *atomic.Bool
}

func (f failing) Load(ctx context.Context, account string) (token.Committed, error) {
	if f.down.Load() {
		return token.Committed{}, errors.New("redis did not answer")
	}
	return f.Shared.Load(ctx, account)
}

// TestShared_rotationDuringABlipReachesRedis: a renewal that could not
// reach Redis rotates the refresh token on this proxy alone; Sync's next
// round writes it to Redis (the epoch never changed), so another proxy
// renews with the current token, not the retired one.
func TestShared_rotationDuringABlipReachesRedis(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.SetRevokeOnReuse(true)
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-0"})
	r := startRedis(t)
	c := newClock()
	var down atomic.Bool
	shA := openShared(t, r.Addr, "a")
	a := newProxy(t, p, failing{Shared: shA, down: &down}, c, "ms", "rt-0")
	b := newProxy(t, p, openShared(t, r.Addr, "b"), c, "ms", "rt-0")
	sync := clustertoken.NewSync(shA, func() []clustertoken.Follower { return []clustertoken.Follower{a.src} }, nil)
	if _, err := a.src.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := sync.Reseed(t.Context()); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	c.Advance(renewal)
	if _, err := a.src.Token(t.Context()); err != nil {
		t.Fatalf("renewal during the blip: %v", err)
	}
	down.Store(false)
	if n, err := sync.Follow(t.Context()); err != nil || n != 1 {
		t.Fatalf("follow after the blip: %d, %v; want the rotation written", n, err)
	}
	if _, err := b.src.Token(t.Context()); err != nil {
		t.Fatalf("proxy b after the blip: %v", err)
	}
	holdsCurrent(t, shA, p)
}

// holdsCurrent fails the test unless Redis holds the provider's current
// refresh token of ms@example.com.
func holdsCurrent(t *testing.T, sh *clustertoken.Shared, p *fakeprovider.Provider) {
	t.Helper()
	got, err := sh.Load(t.Context(), "ms")
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken.Reveal() != p.RefreshToken("ms@example.com") {
		t.Fatal("Redis does not hold the provider's current refresh token")
	}
}

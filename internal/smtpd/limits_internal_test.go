package smtpd

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIPKey_countsIPv6PerSlash64(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ a, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
	} {
		if got := ipKey(netip.MustParseAddr(tc.a)); got.String() != tc.want {
			t.Errorf("ipKey(%s) = %s, want %s", tc.a, got, tc.want)
		}
	}
}

// TestAuthLimiter_windowsAndBounds: failures expire after a minute, user
// names are case-insensitive and truncated, and a flood of made-up names
// cannot grow the maps past maxAuthKeys.
func TestAuthLimiter_windowsAndBounds(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := newAuthLimiter(func() time.Time { return now })
	lim := authLimits{perIP: 2, perUser: 2}
	// Each name from its own address, so that the per-address limit does
	// not refuse the attempts the per-user part of the test needs.
	fail := func(ip netip.Prefix, user string) {
		t.Helper()
		a, err := l.reserve(context.Background(), ip, user, authLimits{perIP: 1 << 30, perUser: 1 << 30})
		if err != nil {
			t.Fatalf("reserve %s: %v", user, err)
		}
		l.fail(a)
		l.done(a)
	}
	ip := ipKey(netip.MustParseAddr("192.0.2.1"))
	blockedUser := func(u string) bool { return over(l.users[userKey(u)], now, lim.perUser) }
	fail(ip, "Alice")
	if l.blockedIP(ip, lim) || blockedUser("alice") {
		t.Fatal("blocked after one failure")
	}
	fail(ip, "ALICE")
	if !l.blockedIP(ip, lim) || !blockedUser("alice") {
		t.Fatal("not blocked after two failures")
	}
	now = now.Add(authWindow)
	if l.blockedIP(ip, lim) || blockedUser("alice") {
		t.Fatal("still blocked after the window")
	}
	long := strings.Repeat("x", 10_000)
	fail(ip, long+"a")
	fail(ip, long+"b")
	if !blockedUser(long + "c") {
		t.Error("long names are not truncated to one key")
	}

	for i := range maxAuthKeys + 10 {
		fail(ip, "user"+strconv.Itoa(i))
	}
	if n := len(l.users); n > maxAuthKeys {
		t.Errorf("%d user entries, bound %d", n, maxAuthKeys)
	}
	now = now.Add(2 * authWindow)
	fail(ip, "fresh")
	if n := len(l.users); n != 1 {
		t.Errorf("%d user entries after they all expired, want 1", n)
	}
}

// TestAuthLimiter_attemptsInFlightCount: an attempt being checked holds a
// place in both budgets; a further attempt waits for it instead of being
// let through, a success frees the place, a failure keeps it, and once
// the failures alone reach the limit waiting attempts are refused.
func TestAuthLimiter_attemptsInFlightCount(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_700_000_000, 0)
	ip := ipKey(netip.MustParseAddr("192.0.2.1"))
	cases := []struct {
		name          string
		perIP, perUsr int
		wantErr       error
	}{
		{"per address", 2, 100, errAuthOverIP},
		{"per username", 100, 2, errAuthOverUser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			now := start
			l := newAuthLimiter(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
			lim := authLimits{perIP: tc.perIP, perUser: tc.perUsr}
			ctx := context.Background()
			reserve := func(user string) *attempt {
				t.Helper()
				a, err := l.reserve(ctx, ip, user, lim)
				if err != nil {
					t.Fatalf("reserve: %v", err)
				}
				return a
			}
			a1, a2 := reserve("alice"), reserve("Alice")
			// Both places are taken: a third attempt waits (here until
			// its context ends) rather than being checked or refused.
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			_, err := l.reserve(short, ip, "alice", lim)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("third attempt: %v, want it to wait until its context ends", err)
			}
			l.done(a1) // a success frees its place
			a3 := reserve("alice")
			waiter := make(chan error, 1)
			go func() {
				a, err := l.reserve(ctx, ip, "alice", lim)
				if a != nil {
					l.done(a)
				}
				waiter <- err
			}()
			l.fail(a2)
			l.fail(a3)
			l.done(a2)
			l.done(a3)
			if err := <-waiter; !errors.Is(err, tc.wantErr) {
				t.Errorf("waiting attempt: %v, want %v", err, tc.wantErr)
			}
			mu.Lock()
			now = now.Add(authWindow)
			mu.Unlock()
			l.done(reserve("alice"))
			if len(l.ips) != 0 || len(l.users) != 0 {
				t.Errorf("entries left after a success in a fresh window: %v %v", l.ips, l.users)
			}
		})
	}
}

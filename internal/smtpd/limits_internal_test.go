package smtpd

import (
	"net/netip"
	"strconv"
	"strings"
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
	l := newAuthLimiter(func() time.Time { return now }, 2, 2)
	ip := ipKey(netip.MustParseAddr("192.0.2.1"))
	l.fail(ip, "Alice")
	if l.blockedIP(ip) || l.blockedUser("alice") {
		t.Fatal("blocked after one failure")
	}
	l.fail(ip, "ALICE")
	if !l.blockedIP(ip) || !l.blockedUser("alice") {
		t.Fatal("not blocked after two failures")
	}
	now = now.Add(authWindow)
	if l.blockedIP(ip) || l.blockedUser("alice") {
		t.Fatal("still blocked after the window")
	}
	long := strings.Repeat("x", 10_000)
	l.fail(ip, long+"a")
	l.fail(ip, long+"b")
	if !l.blockedUser(long + "c") {
		t.Error("long names are not truncated to one key")
	}

	for i := range maxAuthKeys + 10 {
		l.fail(ip, "user"+strconv.Itoa(i))
	}
	if n := len(l.users); n > maxAuthKeys {
		t.Errorf("%d user entries, bound %d", n, maxAuthKeys)
	}
	now = now.Add(2 * authWindow)
	l.fail(ip, "fresh")
	if n := len(l.users); n != 1 {
		t.Errorf("%d user entries after they all expired, want 1", n)
	}
}

package service_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// The AUTH findings of issue 16 (an outside test), against the real
// account registry: each test failed before its fix.

// costTaking returns the lowest bcrypt cost whose check takes at least
// d here (under -race checks are about 12 times slower), and how long
// one check of it took.
func costTaking(t *testing.T, d time.Duration) (int, time.Duration) {
	t.Helper()
	for cost := 6; ; cost++ {
		h, err := bcrypt.GenerateFromPassword([]byte("x"), cost)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = bcrypt.CompareHashAndPassword(h, []byte("y"))
		if took := time.Since(start); took >= d || cost == 14 {
			return cost, took
		}
	}
}

func hashAt(t *testing.T, pass string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// untrustedOnly makes 127.0.0.1 the only trusted address, and sets the
// AUTH limits in global.smtp.
func untrustedOnly(cfg map[string]any, limits map[string]any) {
	smtp := cfg["global"].(map[string]any)["smtp"].(map[string]any)
	smtp["trusted_networks"] = []string{"127.0.0.1/32"}
	for k, v := range limits {
		smtp[k] = v
	}
}

// timeFailure sends one AUTH PLAIN and returns how long its 535 took.
func timeFailure(c *conn, user, pass string) time.Duration {
	c.t.Helper()
	start := time.Now()
	c.authPlain(user, pass, "535 5.7.8")
	return time.Since(start)
}

// TestAuthSecurity_everyFailureTakesOneTime: an unknown user, a wrong
// bcrypt password, a wrong plain-text password and a password-less
// account from outside trusted_networks are all answered at the same
// moment after the credentials (finding 1: 1,066 / 1,258 / 1,001 ms,
// told apart by one AUTH each). The classes are sampled in turn and
// compared by their medians, which a loaded machine's odd late reply
// does not move; before the fix the bcrypt class was a whole check
// (at least 150 ms here) later than the plain-text one.
func TestAuthSecurity_everyFailureTakesOneTime(t *testing.T) {
	t.Parallel()
	cost, check := costTaking(t, 150*time.Millisecond)
	delay := 2*check + 300*time.Millisecond
	e := newEnv(t, envOptions{authFailDelay: delay, edit: func(cfg map[string]any, accts []map[string]any) {
		untrustedOnly(cfg, map[string]any{"max_auth_failures_per_ip": 1000, "max_auth_failures_per_user": 1000})
		accts[0]["smtp_password"] = hashAt(t, password, cost) // alice
	}})
	classes := []struct{ name, user string }{
		{"unknown user", "nobody@example.com"},
		{"wrong bcrypt password", userA},
		{"wrong plain-text password", userPlain},
		{"no smtp_password, outside trusted_networks", userNoPW},
	}
	const rounds = 3
	took := make([][]time.Duration, len(classes))
	c := e.dialFrom(t, "127.0.0.2")
	for r := range rounds {
		for i, cl := range classes {
			d := timeFailure(c, cl.user, "wrong-"+strconv.Itoa(r))
			if d < delay {
				t.Errorf("%s: 535 after %v, before the %v delay", cl.name, d, delay)
			}
			took[i] = append(took[i], d)
		}
	}
	var lo, hi time.Duration
	for i, cl := range classes {
		slices.Sort(took[i])
		m := took[i][rounds/2]
		t.Logf("%s: 535 after %v (sorted; delay %v, bcrypt cost %d: %v a check)", cl.name, took[i], delay, cost, check)
		if i == 0 || m < lo {
			lo = m
		}
		hi = max(hi, m)
	}
	if hi-lo > check/2 {
		t.Errorf("the classes' medians differ by %v, a check takes %v: the timing tells them apart", hi-lo, check)
	}
}

// TestAuthSecurity_accountIDIsNotASecondBudget: an account answers to
// its email and its account_id; failed guesses count once per account
// (finding 2: 10 guesses as the email, then 10 more as the id).
func TestAuthSecurity_accountIDIsNotASecondBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, _ []map[string]any) {
		untrustedOnly(cfg, map[string]any{"max_auth_failures_per_ip": 1000, "max_auth_failures_per_user": 3})
	}})
	c := e.dialFrom(t, "127.0.0.2")
	c.authPlain(userA, "wrong1", "535 ")
	c.authPlain("alice", "wrong2", "535 ") // the account_id
	c.authPlain("ALICE@example.com", "wrong3", "535 ")
	c.authPlain("alice", "wrong4", "421 4.7.0")
	c = e.dialFrom(t, "127.0.0.3")
	c.authPlain("alice", password, "421 4.7.0") // the budget is the account's, from any address
}

// attack runs n guessing connections until stop is closed: each sends
// AUTH PLAIN with guess(i, k) until refused (421), then stops, as the
// reported attacks did; a 454 (no check slot in time) makes it connect
// again. It returns the number of 535s seen so far, and waits for its
// goroutines at the end of the test.
func attack(t *testing.T, addr string, n int, src func(i int) string, guess func(i, k int) (user, pass string), tlsCfg *tls.Config, stop <-chan struct{}) *atomic.Int64 {
	t.Helper()
	var failures atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for i := range n {
		wg.Go(func() {
			k := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src(i))}, Timeout: 5 * time.Second}
				nc, err := d.Dial("tcp", addr)
				if err != nil {
					return
				}
				_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
				more := func() bool {
					defer nc.Close()
					var c net.Conn = nc
					br := bufio.NewReader(c)
					if _, err := readFinalLine(br); err != nil {
						return false
					}
					if _, err := c.Write([]byte("EHLO attacker\r\n")); err != nil {
						return false
					}
					if _, err := readFinalLine(br); err != nil {
						return false
					}
					if tlsCfg != nil {
						if _, err := c.Write([]byte("STARTTLS\r\n")); err != nil {
							return false
						}
						if _, err := readFinalLine(br); err != nil {
							return false
						}
						tc := tls.Client(nc, tlsCfg)
						if tc.Handshake() != nil {
							return false
						}
						c, br = tc, bufio.NewReader(tc)
						if _, err := c.Write([]byte("EHLO attacker\r\n")); err != nil {
							return false
						}
						if _, err := readFinalLine(br); err != nil {
							return false
						}
					}
					for {
						select {
						case <-stop:
							return false
						default:
						}
						u, p := guess(i, k)
						k++
						if _, err := c.Write([]byte("AUTH PLAIN " + saslmech.EncodePlain(u, p) + "\r\n")); err != nil {
							return true
						}
						l, err := readFinalLine(br)
						switch {
						case err != nil || strings.HasPrefix(l, "421"):
							return false
						case !strings.HasPrefix(l, "535"):
							return true
						}
						failures.Add(1)
					}
				}()
				if !more {
					return
				}
			}
		})
	}
	return &failures
}

// TestAuthSecurity_legitimateLoginUnderAttack: while guessers keep the
// password checks busy, a client that has not been failing logs in well
// under a second (finding 3: 100 trusted connections guessing at a bcrypt
// account delayed real mail by 3.4 s; 600 unknown names from 60
// addresses delayed a real AUTH by 34.9 s). Password checks are bounded
// and served fewest recent failures first; trusted clients have failure
// limits too.
func TestAuthSecurity_legitimateLoginUnderAttack(t *testing.T) {
	t.Parallel()
	cost, check := costTaking(t, 40*time.Millisecond)
	cases := []struct {
		name  string
		n     int
		tls   bool
		src   func(i int) string
		guess func(i, k int) (string, string)
		from  string // the legitimate client's address
	}{
		{"trusted guessers at one bcrypt account", 100, false,
			func(int) string { return "127.0.0.1" },
			func(i, k int) (string, string) { return userA, "guess-" + strconv.Itoa(i) + "-" + strconv.Itoa(k) },
			"127.0.0.1"},
		{"unknown names from 60 addresses", 60, true,
			func(i int) string { return "127.0.1." + strconv.Itoa(i+1) },
			func(i, k int) (string, string) {
				return "u" + strconv.Itoa(i) + "-" + strconv.Itoa(k) + "@example.com", "guess"
			},
			"127.0.0.3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{edit: func(cfg map[string]any, accts []map[string]any) {
				untrustedOnly(cfg, nil)
				accts[0]["smtp_password"] = hashAt(t, password, cost) // alice: the guessers' target
				accts[2]["smtp_password"] = hashAt(t, password, cost) // one: the legitimate login, not cached
			}})
			var tlsCfg *tls.Config
			if tc.tls {
				tlsCfg = &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}
			}
			stop := make(chan struct{})
			failures := attack(t, e.addr, tc.n, tc.src, tc.guess, tlsCfg, stop)
			defer close(stop)
			deadline := time.Now().Add(30 * time.Second)
			for failures.Load() < 20 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			c := e.dialFrom(t, tc.from)
			start := time.Now()
			c.authPlain(userOne, password, "235 ")
			took := time.Since(start)
			t.Logf("legitimate AUTH took %v under attack (%d failed guesses so far; bcrypt cost %d, %v a check)",
				took, failures.Load(), cost, check)
			// Its check waits for at most one check to end, then runs
			// beside the other slot's: a second on an idle machine is
			// ample (out of process, the closing note of issue 16
			// measured 0.24 s with cost-12 hashes). On a loaded one the
			// bound grows with the check measured before the attack;
			// without the bounded queue the client's check shared the
			// CPUs with every guess at once, some fifty checks long.
			if bound := max(time.Second, 10*check); took > bound {
				t.Errorf("legitimate AUTH took %v under attack, want under %v", took, bound)
			}
		})
	}
}

// TestAuthSecurity_unauthenticatedLifetime: client_auth_timeout closes a
// connection that has not logged in, however busy it keeps itself
// (finding 4).
func TestAuthSecurity_unauthenticatedLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, _ []map[string]any) {
		cfg["global"].(map[string]any)["timeouts"] = map[string]any{"client_auth_timeout": 1}
	}})
	start := time.Now()
	c := e.dial(t)
	for {
		c.send("EHLO again\r\n")
		l, err := readFinalLine(c.br)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if strings.HasPrefix(l, "421 4.7.0") {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("connection without AUTH still open after 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("closed after %v, before client_auth_timeout", took)
	}
}

package smtpd_test

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// checkingBackend is fakeBackend that remembers every password it checks
// and answers a wrong one only after failDelay, as account.Registry does
// (its FailDelay, 1s by default).
type checkingBackend struct {
	fakeBackend
	failDelay time.Duration

	mu        sync.Mutex
	passwords []string
}

func (b *checkingBackend) Login(ctx context.Context, c *smtpd.ConnInfo, user, pass string) (smtpd.Sender, error) {
	b.mu.Lock()
	b.passwords = append(b.passwords, pass)
	b.mu.Unlock()
	s, err := b.fakeBackend.Login(ctx, c, user, pass)
	if err != nil && b.failDelay > 0 {
		t := time.NewTimer(b.failDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return s, err
}

func (b *checkingBackend) checked() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.passwords...)
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestAuth_concurrentGuessesStopAtTheLimit: guesses sent at once on many
// connections cannot all slip under the failure limits while the first
// ones are still being checked. An attempt holds a place in the budget
// until it is answered, so no more passwords reach the backend than the
// limit, and the rest are refused with 421 4.7.0. Right passwords sent at
// once wait for a place instead of being refused.
func TestAuth_concurrentGuessesStopAtTheLimit(t *testing.T) {
	t.Parallel()
	const n = 50
	cases := []struct {
		name          string
		perIP, perUsr int
		src           func(i int) string // client address of connection i
		user, pass    func(i int) string
		wantChecks    int // at most; all of them fail
	}{
		{"one address, one user", 3, 3,
			func(int) string { return "127.0.0.2" },
			func(int) string { return "alice" }, func(i int) string { return "guess" + strconv.Itoa(i) }, 3},
		{"one address, many users", 3, 100,
			func(int) string { return "127.0.0.2" },
			func(i int) string { return "user" + strconv.Itoa(i) }, func(int) string { return "guess" }, 3},
		{"many addresses, one user", 100, 3,
			func(i int) string { return "127.0.1." + strconv.Itoa(i+1) },
			func(int) string { return "alice" }, func(i int) string { return "guess" + strconv.Itoa(i) }, 3},
		{"right password, one address", 1, 1,
			func(int) string { return "127.0.0.2" },
			func(int) string { return "alice" }, func(int) string { return "pw" }, n},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &checkingBackend{failDelay: 200 * time.Millisecond}
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			srv, _, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{
				MaxAuthFailuresPerIP: tc.perIP, MaxAuthFailuresPerUser: tc.perUsr, Now: clock.Now,
			}, b)
			clients := make([]*client, n)
			for i := range clients {
				c := dialTLS(t, tlsAddr, tc.src(i), clientTLS(roots))
				c.expect("220 ")
				c.ehlo()
				clients[i] = c
			}
			// All guesses go out at once; each connection reads its reply.
			replies := make([]string, n)
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Go(func() {
					if _, err := c.nc.Write([]byte("AUTH PLAIN " + plain(tc.user(i), tc.pass(i)) + "\r\n")); err != nil {
						replies[i] = "write: " + err.Error()
						return
					}
					l, err := c.br.ReadString('\n')
					if err != nil {
						replies[i] = "read: " + err.Error()
					}
					replies[i] += l
				})
			}
			wg.Wait()
			var ok, failed, refused int
			for i, r := range replies {
				switch {
				case strings.HasPrefix(r, "235 "):
					ok++
				case strings.HasPrefix(r, "535 5.7.8"):
					failed++
				case strings.HasPrefix(r, "421 4.7.0"):
					refused++
					clients[i].expectClosed()
				default:
					t.Errorf("connection %d: got %q", i, r)
				}
			}
			checks := len(b.checked())
			if tc.wantChecks == n { // right passwords
				if ok != n {
					t.Errorf("%d of %d right passwords accepted (%d failed, %d refused)", ok, n, failed, refused)
				}
				return
			}
			if checks > tc.wantChecks {
				t.Errorf("%d passwords checked, limit %d", checks, tc.wantChecks)
			}
			if failed != checks || refused != n-checks {
				t.Errorf("%d answered 535 and %d refused with 421, want %d and %d", failed, refused, checks, n-checks)
			}
			if st := srv.Stats(); st.AuthRefused != int64(refused) {
				t.Errorf("Stats.AuthRefused = %d, want %d", st.AuthRefused, refused)
			}
		})
	}
}

// TestAuth_failureIsAnsweredAfterTheBackend: the 535 goes out only once
// the backend's failure delay is over; smtpd adds no shortcut of its own.
// The delay itself belongs to the backend (account.Registry's FailDelay).
func TestAuth_failureIsAnsweredAfterTheBackend(t *testing.T) {
	t.Parallel()
	const delay = 150 * time.Millisecond
	cases := []struct {
		name string
		send []string // the last line's reply is the 535
	}{
		{"PLAIN with initial response", []string{"AUTH PLAIN " + plain("alice", "wrong")}},
		{"PLAIN after 334", []string{"AUTH PLAIN", plain("alice", "wrong")}},
		{"LOGIN", []string{"AUTH LOGIN", base64.StdEncoding.EncodeToString([]byte("alice")), base64.StdEncoding.EncodeToString([]byte("wrong"))}},
		{"unknown user", []string{"AUTH PLAIN " + plain("mallory", "pw")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &checkingBackend{failDelay: delay}
			c := dial(t, startServer(t, smtpd.Config{}, b))
			c.expect("220 ")
			c.ehlo()
			for _, l := range tc.send[:len(tc.send)-1] {
				c.send(l + "\r\n")
				c.expect("334 ")
			}
			start := time.Now()
			c.send(tc.send[len(tc.send)-1] + "\r\n")
			c.expect("535 5.7.8")
			if d := time.Since(start); d < delay {
				t.Errorf("535 after %v, before the backend's %v delay", d, delay)
			}
		})
	}
}

// TestAuth_longLines: AUTH lines, which carry long tokens, may be up to
// MaxAuthBytes (12,288) and reach the backend whole; every other command
// line stops at MaxCommandBytes (2,048).
func TestAuth_longLines(t *testing.T) {
	t.Parallel()
	// A PLAIN response of b bytes is 4*ceil(b/3) characters of base64.
	pass := func(lineLen, prefix int) string {
		raw := (lineLen - prefix) / 4 * 3
		return strings.Repeat("p", raw-len("\x00alice\x00"))
	}
	cases := []struct {
		name     string
		line     func() (line, pass string) // pass: what the backend must see, "" for none
		prompted bool                       // sent after AUTH PLAIN's 334
		want     string
	}{
		{"AUTH PLAIN of 2,051 bytes", func() (string, string) {
			p := pass(2051, len("AUTH PLAIN "))
			return "AUTH PLAIN " + plain("alice", p), p
		}, false, "535 5.7.8"},
		{"AUTH PLAIN of 12,287 bytes", func() (string, string) {
			p := pass(12287, len("AUTH PLAIN "))
			return "AUTH PLAIN " + plain("alice", p), p
		}, false, "535 5.7.8"},
		{"AUTH response of 12,288 bytes after 334", func() (string, string) {
			p := pass(12288, 0)
			return plain("alice", p), p
		}, true, "535 5.7.8"},
		{"AUTH PLAIN of 12,291 bytes", func() (string, string) {
			return "AUTH PLAIN " + plain("alice", pass(12291, len("AUTH PLAIN "))), ""
		}, false, "500 5.5.2 Line too long"},
		{"NOOP of 2,048 bytes", func() (string, string) {
			return "NOOP " + strings.Repeat("x", 2048-5), ""
		}, false, "250 "},
		{"NOOP of 2,049 bytes", func() (string, string) {
			return "NOOP " + strings.Repeat("x", 2049-5), ""
		}, false, "500 5.5.2 Line too long"},
		{"MAIL of 3,000 bytes", func() (string, string) {
			return "MAIL FROM:<" + strings.Repeat("a", 3000-len("MAIL FROM:<@example.com>")) + "@example.com>", ""
		}, false, "500 5.5.2 Line too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &checkingBackend{}
			c := dial(t, startServer(t, smtpd.Config{}, b))
			c.expect("220 ")
			c.ehlo()
			line, want := tc.line()
			if n := len(line); n <= 2048 && want != "" {
				t.Fatalf("test line of %d bytes is not long", n)
			}
			if tc.prompted {
				c.send("AUTH PLAIN\r\n")
				c.expect("334 ")
			}
			c.send(line + "\r\n")
			c.expect(tc.want)
			got := b.checked()
			switch {
			case want == "" && len(got) > 0:
				t.Errorf("backend checked a password")
			case want != "" && (len(got) != 1 || got[0] != want):
				t.Errorf("backend did not get the %d-byte password whole", len(want))
			}
			// The session goes on.
			c.send("NOOP\r\n")
			c.expect("250 ")
		})
	}
}

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
// and takes failDelay to find a wrong one, as a bcrypt check does.
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

// TestAuth_failuresArePaddedToOneDelay: every 535 is answered
// AuthFailureDelay after the credentials arrived, whatever failed and
// however long the backend took to find it out (issue 16, finding 1: a
// delay added after the check let its duration show through).
func TestAuth_failuresArePaddedToOneDelay(t *testing.T) {
	t.Parallel()
	const delay = 700 * time.Millisecond
	const slack = 300 * time.Millisecond // scheduling on a loaded machine; under the slow check's 400 ms
	cases := []struct {
		name  string
		check time.Duration // how long the backend takes to refuse
		send  []string      // the last line's reply is the 535
	}{
		{"PLAIN with initial response", 0, []string{"AUTH PLAIN " + plain("alice", "wrong")}},
		{"PLAIN after 334", 0, []string{"AUTH PLAIN", plain("alice", "wrong")}},
		{"LOGIN", 0, []string{"AUTH LOGIN", base64.StdEncoding.EncodeToString([]byte("alice")), base64.StdEncoding.EncodeToString([]byte("wrong"))}},
		{"unknown user", 0, []string{"AUTH PLAIN " + plain("mallory", "pw")}},
		{"slow check", 400 * time.Millisecond, []string{"AUTH PLAIN " + plain("alice", "wrong")}},
		{"authorization identity refused before any check", 0,
			[]string{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("bob\x00alice\x00pw"))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &checkingBackend{failDelay: tc.check}
			c := dial(t, startServer(t, smtpd.Config{AuthFailureDelay: delay}, b))
			c.expect("220 ")
			c.ehlo()
			for _, l := range tc.send[:len(tc.send)-1] {
				c.send(l + "\r\n")
				c.expect("334 ")
			}
			start := time.Now()
			c.send(tc.send[len(tc.send)-1] + "\r\n")
			c.expect("535 5.7.8")
			if d := time.Since(start); d < delay || d > delay+slack {
				t.Errorf("535 after %v, want %v (+%v at most)", d, delay, slack)
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

// keyedBackend is fakeBackend whose user alice also answers to the name
// "id-alice", as an account answers to its email and its account_id.
type keyedBackend struct{ fakeBackend }

func (b *keyedBackend) Login(ctx context.Context, c *smtpd.ConnInfo, user, pass string) (smtpd.Sender, error) {
	if user == "id-alice" {
		user = "alice"
	}
	return b.fakeBackend.Login(ctx, c, user, pass)
}

func (b *keyedBackend) AuthKey(user string) string {
	if user == "alice" || user == "id-alice" {
		return "account:alice"
	}
	return "name:" + user
}

// TestAuth_failureLimits: the limits per address and per user hold for
// every client, trusted ones with their own larger limits (issue 16,
// finding 3: they were exempt, and guessed without end), and count by
// account, not by name (finding 2: the account_id was a second budget).
func TestAuth_failureLimits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     smtpd.Config
		src     string   // client address; 127.0.0.1 is trusted
		users   []string // one wrong guess each, in order
		refused int      // index of the first guess refused with 421
		backend func() smtpd.Backend
	}{
		{"trusted client, per address", smtpd.Config{TrustedAuthFailuresPerIP: 4, MaxAuthFailuresPerIP: 2},
			"127.0.0.1", []string{"u1", "u2", "u3", "u4", "u5"}, 4, nil},
		{"trusted client, per user", smtpd.Config{TrustedAuthFailuresPerUser: 3, MaxAuthFailuresPerUser: 1},
			"127.0.0.1", []string{"alice", "alice", "alice", "alice"}, 3, nil},
		{"untrusted client, per address", smtpd.Config{TrustedAuthFailuresPerIP: 100, MaxAuthFailuresPerIP: 2},
			"127.0.0.2", []string{"u1", "u2", "u3"}, 2, nil},
		{"email and account_id are one budget", smtpd.Config{MaxAuthFailuresPerUser: 2},
			"127.0.0.2", []string{"alice", "id-alice", "id-alice"}, 2, func() smtpd.Backend { return &keyedBackend{} }},
		{"unknown names are counted", smtpd.Config{MaxAuthFailuresPerUser: 2},
			"127.0.0.2", []string{"mallory", "MALLORY", "mallory"}, 2, func() smtpd.Backend { return &keyedBackend{} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b smtpd.Backend = &fakeBackend{}
			if tc.backend != nil {
				b = tc.backend()
			}
			cfg := tc.cfg
			cfg.MaxBadCommands = 100
			srv, _, tlsAddr, _, roots, _ := tlsServer(t, cfg, b)
			var c *client
			for i, u := range tc.users {
				if c == nil {
					c = dialTLS(t, tlsAddr, tc.src, clientTLS(roots))
					c.expect("220 ")
					c.ehlo()
				}
				c.send("AUTH PLAIN " + plain(u, "wrong") + "\r\n")
				if i < tc.refused {
					c.expect("535 5.7.8")
					continue
				}
				c.expect("421 4.7.0")
				c.expectClosed()
				c = nil
			}
			if st := srv.Stats(); st.AuthRefused != int64(len(tc.users)-tc.refused) {
				t.Errorf("AuthRefused = %d, want %d", st.AuthRefused, len(tc.users)-tc.refused)
			}
		})
	}
}

// slowBackend is fakeBackend whose wrong passwords take until a value
// comes from release (or it is closed) to be found out; it records how many checks run at once and the
// order in which users reached it.
type slowBackend struct {
	fakeBackend
	release chan struct{}
	once    sync.Once

	mu           sync.Mutex
	running, max int
	order        []string
}

func (b *slowBackend) Login(ctx context.Context, c *smtpd.ConnInfo, user, pass string) (smtpd.Sender, error) {
	b.mu.Lock()
	b.running++
	b.max = max(b.max, b.running)
	b.order = append(b.order, user)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.running--
		b.mu.Unlock()
	}()
	b.mu.Lock()
	release := b.release
	b.mu.Unlock()
	if pass != "pw" {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	return b.fakeBackend.Login(ctx, c, user, pass)
}

// finish lets every check end, once.
func (b *slowBackend) finish() {
	b.once.Do(func() {
		b.mu.Lock()
		close(b.release)
		b.mu.Unlock()
	})
}

func (b *slowBackend) reached() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.order...)
}

// TestAuth_passwordChecksAreBounded: no more than MaxAuthChecks passwords
// are checked at once, however many clients try; a freed slot goes to the
// waiter with the fewest failures at that moment, so a client that has
// not failed goes ahead of a guesser's queue, even of guesses that queued
// before it, before their failures existed (issue 16, finding 3).
func TestAuth_passwordChecksAreBounded(t *testing.T) {
	t.Parallel()
	b := &slowBackend{release: make(chan struct{})}
	srv, addr, _ := startServers(t, smtpd.Config{MaxAuthChecks: 2, TrustedAuthFailuresPerIP: 1000,
		TrustedAuthFailuresPerUser: 1000, MaxBadCommands: 1000, AuthQueueTimeout: time.Minute}, b, false)
	t.Cleanup(b.finish) // before the server's shutdown, which waits for the checks
	open := func(src string) *client {
		c := dialFrom(t, addr, src)
		c.expect("220 ")
		c.ehlo()
		return c
	}
	var guessers []*client
	for range 8 {
		c := open("127.0.0.2")
		c.send("AUTH PLAIN " + plain("guess", "wrong") + "\r\n")
		guessers = append(guessers, c)
	}
	waitFor(t, "6 guesses to wait for a slot", func() bool { return srv.Stats().AuthWaiting == 6 })
	legit := open("127.0.0.3")
	legit.send("AUTH PLAIN " + plain("alice", "pw") + "\r\n")
	waitFor(t, "the client to wait too", func() bool { return srv.Stats().AuthWaiting == 7 })
	// One check ends in a failure: its slot goes to the client, whose
	// check ends at once and hands its slot to a guess, which waits.
	b.release <- struct{}{}
	legit.expect("235 ")
	order := b.reached()
	if got := order[2]; got != "alice" {
		t.Errorf("checks ran in the order %v; want alice right after the 2 slots' holders", order)
	}
	b.finish()
	b.mu.Lock()
	most := b.max
	b.mu.Unlock()
	for _, c := range guessers {
		c.expect("535 ")
	}
	if most > 2 {
		t.Errorf("%d checks ran at once, MaxAuthChecks 2", most)
	}
}

// TestAuth_queueTimeout: a check that cannot get a slot within
// AuthQueueTimeout is answered 454 4.7.0, not counted as a failure.
func TestAuth_queueTimeout(t *testing.T) {
	t.Parallel()
	b := &slowBackend{release: make(chan struct{})}
	srv, addr, _ := startServers(t, smtpd.Config{MaxAuthChecks: 1, AuthQueueTimeout: 100 * time.Millisecond}, b, false)
	t.Cleanup(b.finish) // before the server's shutdown, which waits for the checks
	hold := dialFrom(t, addr, "127.0.0.2")
	hold.expect("220 ")
	hold.ehlo()
	hold.send("AUTH PLAIN " + plain("guess", "wrong") + "\r\n")
	waitFor(t, "the slot to be taken", func() bool { return len(b.reached()) == 1 })
	c := dialFrom(t, addr, "127.0.0.3")
	c.expect("220 ")
	c.ehlo()
	c.send("AUTH PLAIN " + plain("alice", "pw") + "\r\n")
	c.expect("454 4.7.0")
	b.finish()
	hold.expect("535 ")
	c.send("AUTH PLAIN " + plain("alice", "pw") + "\r\n")
	c.expect("235 ")
	if st := srv.Stats(); st.AuthBusy != 1 || st.AuthFailures != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestAuth_backendErrors: a reply from the backend reaches the client as
// it is; any other error becomes RFC 4954's temporary failure, 454
// 4.7.0, without its text.
func TestAuth_backendErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ user, want string }{
		{"temp", "454 4.7.0 token endpoint unavailable"},
		{"oops", "454 4.7.0 Temporary authentication failure (ref "},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			t.Parallel()
			c := dial(t, startServer(t, smtpd.Config{}, &fakeBackend{}))
			c.expect("220 ")
			c.ehlo()
			c.send("AUTH PLAIN " + plain(tc.user, "pw") + "\r\n")
			if l := c.expect(tc.want); strings.Contains(l, "secret") {
				t.Errorf("reply %q carries the error's text", l)
			}
		})
	}
}

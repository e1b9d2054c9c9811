package smtpd_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// fakeClock is a settable clock for the AUTH failure windows.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClosed reads until the server closes and returns what came. A
// reset counts as a close: a server that closes while the client is still
// writing (slowloris, dribbling body) makes the kernel send RST.
func (c *client) expectClosed() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.br)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("connection not closed: %v (got %q)", err, b)
	}
	return string(b)
}

func TestLimits_connectionsPerAddress(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	srv, addr, _ := startServers(t, smtpd.Config{MaxConnectionsPerIP: 3, Trusted: trusted}, &fakeBackend{}, false)
	var held []*client
	for range 3 {
		c := dialFrom(t, addr, "127.0.0.2")
		c.expect("220 ")
		held = append(held, c)
	}
	over := dialFrom(t, addr, "127.0.0.2")
	over.expect("421 4.7.0")
	over.expectClosed()
	other := dialFrom(t, addr, "127.0.0.3")
	other.expect("220 ")

	held[0].send("QUIT\r\n")
	held[0].expect("221 ")
	waitFor(t, "a slot to free up", func() bool { return srv.Open() == 3 })
	again := dialFrom(t, addr, "127.0.0.2")
	again.expect("220 ")
}

// TestLimits_trustedNetworksHaveNoPerAddressCap: the local MTA opens one
// connection per virtual MTA and session from one address; like Postfix
// for $mynetworks, the per-address cap does not apply to trusted
// networks, and the total cap still does (issue 16, finding 5).
func TestLimits_trustedNetworksHaveNoPerAddressCap(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	srv, addr, _ := startServers(t, smtpd.Config{MaxConnectionsPerIP: 2, MaxConnections: 6, Trusted: trusted}, &fakeBackend{}, false)
	for range 5 {
		dialFrom(t, addr, "127.0.0.1").expect("220 ")
	}
	dialFrom(t, addr, "127.0.0.2").expect("220 ")
	dialFrom(t, addr, "127.0.0.1").expect("421 4.7.0") // the total cap of 6
	if st := srv.Stats(); st.RefusedPerIP != 0 || st.RefusedLimit != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestLimits_connectionsInTotal(t *testing.T) {
	t.Parallel()
	srv, addr, _ := startServers(t, smtpd.Config{MaxConnections: 2}, &fakeBackend{}, false)
	a := dial(t, addr)
	a.expect("220 ")
	b := dial(t, addr)
	b.expect("220 ")
	c := dial(t, addr)
	c.expect("421 4.7.0")
	if st := srv.Stats(); st.RefusedLimit != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestLimits_authFailuresPerAddress: after the allowed failures, AUTH from
// that address gets 421 and a disconnect, even with the right password,
// until the minute is over; other addresses go on.
func TestLimits_authFailuresPerAddress(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	srv, addr, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{MaxAuthFailuresPerIP: 3, Now: clock.Now, MaxBadCommands: 100}, &fakeBackend{})
	login := func(src, b64, want string) *client {
		c := dialTLS(t, tlsAddr, src, clientTLS(roots))
		c.expect("220 ")
		c.ehlo()
		c.send("AUTH PLAIN " + b64 + "\r\n")
		c.expect(want)
		return c
	}
	const bad = "AGFsaWNlAHdyb25n" // alice / wrong
	const good = "AGFsaWNlAHB3"    // alice / pw
	c := login("127.0.0.2", bad, "535 5.7.8")
	for range 2 {
		c.send("AUTH PLAIN " + bad + "\r\n")
		c.expect("535 5.7.8")
	}
	c.send("AUTH PLAIN " + good + "\r\n")
	c.expect("421 4.7.0")
	c.expectClosed()
	// A new connection from that address is refused at once: a 421 for
	// the greeting in clear, no TLS handshake on the implicit TLS port.
	refused := dialFrom(t, addr, "127.0.0.2")
	refused.expect("421 4.7.0")
	refused.expectClosed()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	if tc, err := tls.DialWithDialer(&d, "tcp", tlsAddr, clientTLS(roots)); err == nil {
		tc.Close()
		t.Error("TLS handshake completed for an address over its AUTH failure limit")
	}
	login("127.0.0.3", good, "235 ")
	// Trusted clients have their own, larger limits.
	c = dialFrom(t, addr, "127.0.0.1")
	c.expect("220 ")
	c.ehlo()
	for range 5 {
		c.send("AUTH PLAIN " + bad + "\r\n")
		c.expect("535 5.7.8")
	}
	c.send("AUTH PLAIN " + good + "\r\n")
	c.expect("235 ")
	clock.advance(61 * time.Second)
	login("127.0.0.2", good, "235 ")
	if st := srv.Stats(); st.AuthRefused != 1 || st.RefusedAuthBlocked != 2 || st.AuthFailures != 8 {
		t.Errorf("stats %+v", st)
	}
}

// TestLimits_authFailuresPerUser: guesses at one username from many
// addresses stop at the limit; other names and trusted clients go on.
func TestLimits_authFailuresPerUser(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	_, addr, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{MaxAuthFailuresPerUser: 2, Now: clock.Now}, &fakeBackend{})
	login := func(src, b64, want string) {
		c := dialTLS(t, tlsAddr, src, clientTLS(roots))
		c.expect("220 ")
		c.ehlo()
		c.send("AUTH PLAIN " + b64 + "\r\n")
		c.expect(want)
	}
	login("127.0.0.2", "AGFsaWNlAHdyb25n", "535 ")  // alice / wrong
	login("127.0.0.3", "AEFMSUNFAHdyb25n", "535 ")  // ALICE / wrong: same user
	login("127.0.0.4", "AGFsaWNlAHB3", "421 4.7.0") // alice / pw: refused
	login("127.0.0.4", "AGJvYgB3cm9uZw==", "535 ")  // bob / wrong: another user
	c := dialFrom(t, addr, "127.0.0.1")             // trusted
	c.expect("220 ")
	c.ehlo()
	c.send(authAlice)
	c.expect("235 ")
	clock.advance(time.Minute)
	login("127.0.0.4", "AGFsaWNlAHB3", "235 ")
}

// TestLimits_authSuccessesDoNotCount: many good logins from one address
// never reach a limit.
func TestLimits_authSuccessesDoNotCount(t *testing.T) {
	t.Parallel()
	_, _, tlsAddr, _, roots, _ := tlsServer(t, smtpd.Config{MaxAuthFailuresPerIP: 1, MaxAuthFailuresPerUser: 1}, &fakeBackend{})
	for range 20 {
		c := dialTLS(t, tlsAddr, "127.0.0.2", clientTLS(roots))
		c.expect("220 ")
		c.ehlo()
		c.send(authAlice)
		c.expect("235 ")
		c.nc.Close()
	}
}

func TestLimits_badCommands(t *testing.T) {
	t.Parallel()
	srv, addr, _ := startServers(t, smtpd.Config{MaxBadCommands: 3}, &fakeBackend{}, false)
	c := dial(t, addr)
	c.expect("220 ")
	c.send("FOO\r\nBAR\r\nEHLO x\r\nBAZ\r\nEHLO x\r\n")
	c.expect("500 ")
	c.expect("500 ")
	c.expect("250 ")
	c.expect("500 ")
	c.expect("421 4.7.0 Too many errors")
	c.expectClosed()
	if st := srv.Stats(); st.TooManyErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestLimits_timeouts: an idle client, a slowloris command, a stalled and
// a dribbling body each end with 421 4.4.2 within the configured time.
func TestLimits_timeouts(t *testing.T) {
	t.Parallel()
	cfg := smtpd.Config{
		CommandTimeout:   300 * time.Millisecond,
		DataBlockTimeout: 300 * time.Millisecond,
		DataTimeout:      800 * time.Millisecond,
	}
	b := &fakeBackend{}
	srv, addr, _ := startServers(t, cfg, b, false)
	startData := func() *client {
		c := dial(t, addr)
		c.expect("220 ")
		c.ehlo()
		c.send(authAlice + "MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
		c.expect("235")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		return c
	}
	within := func(name string, limit time.Duration, c *client, start time.Time) {
		t.Helper()
		got := c.expectClosed()
		if !strings.HasPrefix(got, "421 4.4.2") {
			t.Errorf("%s: got %q, want 421 4.4.2", name, got)
		}
		if d := time.Since(start); d > limit {
			t.Errorf("%s: closed after %v, want within %v", name, d, limit)
		}
	}
	cases := []struct {
		name  string
		limit time.Duration
		run   func() *client
	}{
		{"idle after greeting", 2 * time.Second, func() *client {
			c := dial(t, addr)
			c.expect("220 ")
			return c
		}},
		{"slowloris command", 2 * time.Second, func() *client {
			c := dial(t, addr)
			c.expect("220 ")
			go func() {
				for _, b := range []byte("NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP") {
					if _, err := c.nc.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			return c
		}},
		{"stalled body", 2 * time.Second, func() *client {
			c := startData()
			c.send("Subject: x\r\n")
			return c
		}},
		{"dribbling body", 3 * time.Second, func() *client {
			c := startData()
			go func() {
				for range 40 {
					if _, err := c.nc.Write([]byte("line\r\n")); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			return c
		}},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Go(func() {
			start := time.Now()
			within(tc.name, tc.limit, tc.run(), start)
		})
	}
	wg.Wait()
	if st := srv.Stats(); st.Timeouts != int64(len(cases)) {
		t.Errorf("timeouts counted %d, want %d", st.Timeouts, len(cases))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dataErrors != 2 || len(b.messages) != 0 {
		t.Errorf("backend: %d bodies failed, %d delivered; want 2 and 0", b.dataErrors, len(b.messages))
	}
}

// TestLimits_clientThatDoesNotRead: replies pile up while the client
// never reads; the write deadline frees the connection.
func TestLimits_clientThatDoesNotRead(t *testing.T) {
	t.Parallel()
	// NOOPs before AUTH count as bad commands: allow them all here.
	srv, addr, _ := startServers(t, smtpd.Config{CommandTimeout: 300 * time.Millisecond, MaxBadCommands: 1 << 30}, &fakeBackend{}, false)
	c := dial(t, addr)
	if tc, ok := c.nc.(interface{ SetReadBuffer(int) error }); ok {
		_ = tc.SetReadBuffer(4096)
	}
	go func() {
		noops := []byte(strings.Repeat("NOOP\r\n", 10000))
		for { // until the server hangs up
			if _, err := c.nc.Write(noops); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the server to drop the connection", func() bool {
		// Accepted first: before the accept, Open is 0 too.
		return srv.Stats().Accepted == 1 && srv.Open() == 0
	})
	if st := srv.Stats(); st.Timeouts != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestLimits_sequenceErrorsCount: commands out of sequence count toward
// MaxBadCommands, so a client cannot loop on them; those that follow a
// refused MAIL in a pipelined group do not, as the client sent them
// before it could read the refusal.
func TestLimits_sequenceErrorsCount(t *testing.T) {
	t.Parallel()
	const mail = "MAIL FROM:<a@example.com>\r\n"
	cases := []struct {
		name     string
		auth     bool
		beginErr error
		send     []string // each written after the previous replies were read
		want     []string // replies, in order
		closed   bool     // the session ends with 421 after want
	}{
		{"unauthenticated MAIL", false, nil,
			[]string{mail, mail, mail},
			[]string{"530 5.7.0", "530 5.7.0", "530 5.7.0"}, true},
		{"unauthenticated MAIL pipelined", false, nil,
			[]string{mail + mail + mail + "NOOP\r\n"},
			[]string{"530 5.7.0", "530 5.7.0", "530 5.7.0"}, true},
		{"RCPT without MAIL", true, nil,
			[]string{"RCPT TO:<r@example.net>\r\n", "RCPT TO:<r@example.net>\r\n", "RCPT TO:<r@example.net>\r\n"},
			[]string{"503 5.5.1", "503 5.5.1", "503 5.5.1"}, true},
		{"DATA without MAIL", true, nil,
			[]string{"DATA\r\n", "DATA\r\n", "DATA\r\n"},
			[]string{"503 5.5.1", "503 5.5.1", "503 5.5.1"}, true},
		{"nested MAIL", true, nil,
			[]string{mail, mail, mail, mail},
			[]string{"250 ", "503 5.5.1 Nested", "503 5.5.1 Nested", "503 5.5.1 Nested"}, true},
		{"DATA without RCPT", true, nil,
			[]string{mail, "DATA\r\n", "DATA\r\n", "DATA\r\n"},
			[]string{"250 ", "503 5.5.1 Need RCPT", "503 5.5.1 Need RCPT", "503 5.5.1 Need RCPT"}, true},
		{"MAIL refused by Begin, pipelined group", true, reply.New(451, "4.7.0", "over the cap"),
			[]string{
				mail + "RCPT TO:<r@example.net>\r\nRCPT TO:<s@example.net>\r\nDATA\r\n",
				mail + "RCPT TO:<r@example.net>\r\nDATA\r\n",
				"NOOP\r\n",
			},
			[]string{"451 4.7.0", "503 5.5.1", "503 5.5.1", "503 5.5.1", "451 4.7.0", "503 5.5.1", "503 5.5.1", "250 "}, false},
		{"MAIL refused upstream, RCPT and DATA sent after", true, nil,
			[]string{
				"MAIL FROM:<bad@example.com>\r\n", "RCPT TO:<r@example.net>\r\n", "DATA\r\n",
				"MAIL FROM:<bad@example.com>\r\n", "RCPT TO:<r@example.net>\r\n", "DATA\r\n",
				"NOOP\r\n",
			},
			[]string{"550 5.7.1", "503 5.5.1", "503 5.5.1", "550 5.7.1", "503 5.5.1", "503 5.5.1", "250 "}, false},
		{"RCPT after the excused group counts", true, reply.New(451, "4.7.0", "over the cap"),
			[]string{mail + "RCPT TO:<r@example.net>\r\nDATA\r\n", "RCPT TO:<r@example.net>\r\n", "RCPT TO:<r@example.net>\r\n", "RCPT TO:<r@example.net>\r\n"},
			[]string{"451 4.7.0", "503 5.5.1", "503 5.5.1", "503 5.5.1", "503 5.5.1", "503 5.5.1"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &fakeBackend{beginErr: tc.beginErr}
			srv, addr, _ := startServers(t, smtpd.Config{MaxBadCommands: 3}, b, false)
			c := dial(t, addr)
			c.expect("220 ")
			c.ehlo()
			if tc.auth {
				c.send(authAlice)
				c.expect("235 ")
			}
			want := tc.want
			for _, s := range tc.send {
				c.send(s)
				// Read the replies to this write: one per command line,
				// but no more than are left to expect.
				for range min(strings.Count(s, "\r\n"), len(want)) {
					c.expect(want[0])
					want = want[1:]
				}
			}
			if tc.closed {
				c.expect("421 4.7.0 Too many errors")
				c.expectClosed()
				if st := srv.Stats(); st.TooManyErrors != 1 {
					t.Errorf("TooManyErrors = %d, want 1", st.TooManyErrors)
				}
				return
			}
			c.send("QUIT\r\n")
			c.expect("221 ")
		})
	}
}

// TestLimits_unauthenticatedConnections: a connection that does not
// complete AUTH within AuthTimeout is closed with 421 4.7.0, however
// often it sends a NOOP; and NOOP, RSET and HELP before AUTH count toward
// MaxBadCommands (issue 16, finding 4: a NOOP every few minutes held a
// connection forever).
func TestLimits_unauthenticatedConnections(t *testing.T) {
	t.Parallel()
	t.Run("lifetime", func(t *testing.T) {
		t.Parallel()
		srv, addr, _ := startServers(t, smtpd.Config{AuthTimeout: 300 * time.Millisecond, MaxBadCommands: 1000}, &fakeBackend{}, false)
		c := dial(t, addr)
		c.expect("220 ")
		start := time.Now()
		for time.Since(start) < 2*time.Second {
			c.send("NOOP\r\n")
			if l := c.expect(""); strings.HasPrefix(l, "421 ") {
				if !strings.HasPrefix(l, "421 4.7.0") {
					t.Errorf("got %q, want 421 4.7.0", l)
				}
				c.expectClosed()
				if st := srv.Stats(); st.AuthTimeouts != 1 {
					t.Errorf("AuthTimeouts = %d, want 1", st.AuthTimeouts)
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("the connection outlived AuthTimeout by seconds")
	})
	t.Run("an authenticated connection stays", func(t *testing.T) {
		t.Parallel()
		_, addr, _ := startServers(t, smtpd.Config{AuthTimeout: 200 * time.Millisecond}, &fakeBackend{}, false)
		c := dial(t, addr)
		c.expect("220 ")
		c.ehlo()
		c.send(authAlice)
		c.expect("235 ")
		time.Sleep(400 * time.Millisecond)
		c.send("NOOP\r\n")
		c.expect("250 ")
	})
	for _, cmd := range []string{"NOOP", "RSET", "HELP"} {
		t.Run(cmd+" counts before AUTH", func(t *testing.T) {
			t.Parallel()
			_, addr, _ := startServers(t, smtpd.Config{MaxBadCommands: 3}, &fakeBackend{}, false)
			c := dial(t, addr)
			c.expect("220 ")
			c.ehlo()
			c.send(cmd + "\r\n" + cmd + "\r\n" + cmd + "\r\n")
			for range 3 {
				c.expect("2")
			}
			c.expect("421 4.7.0 Too many errors")
			c.expectClosed()
			// After AUTH they are free.
			c = dial(t, addr)
			c.expect("220 ")
			c.ehlo()
			c.send(authAlice)
			c.expect("235 ")
			for range 5 {
				c.send(cmd + "\r\n")
				c.expect("2")
			}
		})
	}
}

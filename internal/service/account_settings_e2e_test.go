package service_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestRelay_inFlightCapRefusesAtMail: with max_concurrent_messages 1, a
// second client of the account is refused at MAIL while the first one
// holds its transaction open, and may send once that one has ended.
func TestRelay_inFlightCapRefusesAtMail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(_ map[string]any, accts []map[string]any) {
		accts[0]["max_concurrent_messages"] = 1
	}})
	first := e.dial(t)
	first.authPlain(userA, password, "235")
	second := e.dial(t)
	second.authPlain(userA, password, "235")

	first.cmd("MAIL FROM:<"+userA+">", "250")
	second.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": too many messages in flight for this account")

	first.cmd("RCPT TO:<r1@example.net>", "250")
	first.cmd("DATA", "354")
	first.send("Subject: first\r\n\r\nx\r\n.\r\n")
	first.expect("250")
	second.deliver(userA, "r2@example.net", "Subject: second\r\n\r\ny\r\n")
	if n := len(e.fp.Messages()); n != 2 {
		t.Fatalf("provider stored %d messages, want 2", n)
	}
}

// TestRelay_sessionCapWaitsThenBusy: with one upstream session per account,
// a second transaction waits connection_acquire_timeout for it and then
// gets 451 4.7.0; the first transaction is not disturbed.
func TestRelay_sessionCapWaitsThenBusy(t *testing.T) {
	t.Parallel()
	const acquire = time.Second
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, accts []map[string]any) {
		cfg["global"].(map[string]any)["timeouts"] = map[string]any{"connection_acquire_timeout": acquire.Seconds()}
		accts[0]["connection_settings"] = map[string]any{"max_connections_per_account": 1}
		accts[0]["max_concurrent_messages"] = 10
	}})
	first := e.dial(t)
	first.authPlain(userA, password, "235")
	second := e.dial(t)
	second.authPlain(userA, password, "235")

	first.cmd("MAIL FROM:<"+userA+">", "250") // leases the only session
	start := time.Now()
	second.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": all upstream sessions busy")
	// A timer never fires early: the refusal came after the wait.
	if waited := time.Since(start); waited < acquire {
		t.Errorf("refused after %v, before connection_acquire_timeout %v", waited, acquire)
	}

	first.cmd("RCPT TO:<r@example.net>", "250")
	first.cmd("DATA", "354")
	first.send("Subject: first\r\n\r\nx\r\n.\r\n")
	first.expect("250")
	st := e.fp.Stats()
	if st.Messages != 1 || st.Logins != 1 || st.MaxConcurrentSessionsPerUser != 1 {
		t.Fatalf("provider: %+v; want one message over one session", st)
	}
}

// TestRelay_longestLineRelayedNextRefused: a body line of exactly
// max_line_length (default 10,000 bytes, CRLF excluded) reaches the
// provider byte for byte; one byte more is refused with the engine's
// line-length reply and nothing is stored.
func TestRelay_longestLineRelayedNextRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	line := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789abcdefghijklmnopqrstuvwxyz"[i%36]
		}
		return string(b)
	}
	body := "Subject: long line\r\n\r\n" + line(10000) + "\r\nend\r\n"
	c.deliver(userA, "r@example.net", body)
	msgs := e.fp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("provider stored %d messages, want 1", len(msgs))
	}
	if !bytes.Equal(msgs[0].Data, []byte(body)) {
		t.Fatalf("body changed in transit: %d bytes stored, %d sent", len(msgs[0].Data), len(body))
	}

	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: too long\r\n\r\n" + line(10001) + "\r\nend\r\n.\r\n")
	c.expect("500 5.5.2 Message line too long")
	if n := len(e.fp.Messages()); n != 1 {
		t.Fatalf("provider stored %d messages, want only the first", n)
	}
	// The session is in step and can send again.
	c.deliver(userA, "r@example.net", "Subject: after\r\n\r\nx\r\n")
}

// TestRelay_oauthBearerMechanism: an account with auth_mechanism
// oauthbearer logs in upstream with OAUTHBEARER; the others keep XOAUTH2.
func TestRelay_oauthBearerMechanism(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(_ map[string]any, accts []map[string]any) {
		accts[0]["auth_mechanism"] = "oauthbearer"
	}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "Subject: bearer\r\n\r\nx\r\n")
	c2 := e.dial(t)
	c2.authPlain(userPlain, password, "235")
	c2.deliver(userPlain, "r@example.net", "Subject: xoauth2\r\n\r\nx\r\n")

	mechs := map[string]string{}
	for _, m := range e.fp.Messages() {
		mechs[m.AuthUser] = m.AuthMech
	}
	if mechs[userA] != "OAUTHBEARER" || mechs[userPlain] != "XOAUTH2" {
		t.Fatalf("upstream mechanisms by account: %v; want %s OAUTHBEARER, %s XOAUTH2", mechs, userA, userPlain)
	}
}

// TestRelay_ipv6SourceWithoutUseIPv6: an account whose ip_address is IPv6
// while use_ipv6 is off does not send at all (never from another address)
// and makes no upstream connection. validate_source_ip is off so that
// the use_ipv6 rule alone refuses it.
func TestRelay_ipv6SourceWithoutUseIPv6(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnv(t, envOptions{
		logger: slog.New(slog.NewTextHandler(&logs, nil)),
		edit: func(cfg map[string]any, accts []map[string]any) {
			smtp := cfg["global"].(map[string]any)["smtp"].(map[string]any)
			smtp["use_source_ip_binding"] = true
			smtp["validate_source_ip"] = false
			smtp["use_ipv6"] = false
			accts[0]["ip_address"] = "::1"
		},
	})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.cmd("MAIL FROM:<"+userA+">", "451 4.4.0 "+userA+": configured source address unavailable")
	if st := e.fp.Stats(); st.Connections != 0 {
		t.Fatalf("the account reached the provider: %+v", st)
	}
	if !strings.Contains(logs.String(), "use_ipv6 is off") {
		t.Errorf("the refusal's log line does not name use_ipv6:\n%s", logs.String())
	}
}

// TestRelay_bcryptVersions: smtp_password hashes with the $2b$ and $2y$
// prefixes (PHP's, htpasswd's) authenticate like $2a$.
func TestRelay_bcryptVersions(t *testing.T) {
	t.Parallel()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(h, []byte("$2a$")) {
		t.Fatalf("bcrypt made %q; the test rewrites a $2a$ prefix", h[:4])
	}
	h2b := "$2b$" + string(h[4:])
	h2y := "$2y$" + string(h[4:])
	e := newEnv(t, envOptions{edit: func(_ map[string]any, accts []map[string]any) {
		accts[0]["smtp_password"] = h2b // alice
		accts[2]["smtp_password"] = h2y // onemsg
	}})
	tests := []struct{ name, user string }{
		{"$2b$", userA},
		{"$2y$", userOne},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.dial(t)
			c.authPlain(tc.user, "wrong", "535 5.7.8")
			c.authPlain(tc.user, password, "235 2.7.0")
		})
	}
}

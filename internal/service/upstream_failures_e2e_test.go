package service_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// idleTimeout is how a provider closes a session it found idle too long:
// an unsolicited 421, then the connection is closed (RFC 5321 §3.8).
var idleTimeout = reply.New(421, "4.4.2", "Error: timeout exceeded, closing connection")

// faultOn returns a SessionFault that gives connection n (1, 2, ...)
// the fault f[n], and every other connection none.
func faultOn(f map[int64]fakeprovider.Fault) func(int64) fakeprovider.Fault {
	return func(n int64) fakeprovider.Fault { return f[n] }
}

// TestRelay_idleClosedPooledSessionReplaced: the provider timed a pooled
// session out and says so with a 421 before hanging up; nothing of the
// transaction was accepted, so it moves to a fresh session, once, and
// the message arrives exactly once. Pipelined and one command at a time.
func TestRelay_idleClosedPooledSessionReplaced(t *testing.T) {
	t.Parallel()
	for _, pipelined := range []bool{true, false} {
		name := "pipelined"
		if !pipelined {
			name = "lockstep"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
				1: {Stage: fakeprovider.StageReuse, Action: fakeprovider.ActReply, Reply: idleTimeout},
			})}})
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			c.deliver(userA, "r@example.net", "Subject: one\r\n\r\nx\r\n")
			if pipelined {
				c.deliver(userA, "r@example.net", "Subject: two\r\n\r\nx\r\n")
			} else {
				c.cmd("MAIL FROM:<"+userA+">", "250")
				c.cmd("RCPT TO:<r@example.net>", "250")
				c.cmd("DATA", "354")
				c.cmd("Subject: two\r\n\r\nx\r\n.", "250")
			}
			msgs := e.fp.Messages()
			if len(msgs) != 2 {
				t.Fatalf("provider has %d messages, want 2", len(msgs))
			}
			for i, want := range []string{"Subject: one", "Subject: two"} {
				if !strings.HasPrefix(string(msgs[i].Data), want) {
					t.Errorf("message %d = %q", i, msgs[i].Data)
				}
			}
			if st := e.fp.Stats(); st.SessionFaults != 1 || st.Connections != 2 {
				t.Errorf("provider stats %+v, want 1 fault on 2 connections", st)
			}
			if got := e.svc.Relay.Stats.Retried.Load(); got != 1 {
				t.Errorf("retried = %d, want 1", got)
			}
		})
	}
}

// TestRelay_idleClosedSessionRetriedOnlyOnce: the fresh session that
// replaces a timed-out pooled one fails too; the client gets a 4xx, not
// a 421, and the proxy does not try a third session.
func TestRelay_idleClosedSessionRetriedOnlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
		1: {Stage: fakeprovider.StageReuse, Action: fakeprovider.ActReply, Reply: idleTimeout},
		2: {Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActDrop},
	})}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "x\r\n")
	got := sendOne(c, userA, "r@example.net")
	if !strings.HasPrefix(got[0], "451 ") || !strings.HasPrefix(got[1], "503 ") || !strings.HasPrefix(got[2], "503 ") {
		t.Fatalf("replies %q, want 451 then 503s", got)
	}
	if st := e.fp.Stats(); st.Connections != 2 || st.Messages != 1 {
		t.Errorf("provider stats %+v, want 2 connections and 1 message", st)
	}
	// The account recovers on the next session.
	c.deliver(userA, "r@example.net", "x\r\n")
}

// TestRelay_upstream421NeverReachesClient: a 421 from the provider closes
// the upstream session, not the client's; the client gets a 451 with the
// provider's text at whichever command it came, and its connection stays.
func TestRelay_upstream421NeverReachesClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tests := []struct {
		name, from, rcpt string
		want             []string // replies after MAIL, RCPT, DATA and the final one
	}{
		{"MAIL", "failmail-421-4.4.2@example.com", "r@example.net", []string{"451 4.4.2 ", "451 4.4.2 ", "451 4.4.2 "}},
		{"RCPT", userA, "reject-421-4.4.2@example.net", []string{"250 ", "451 4.4.2 ", "451 4.4.2 "}},
		{"DATA", userA, "faildatacmd-421-4.4.2@example.net", []string{"250 ", "250 ", "451 4.4.2 "}},
		{"end of data", userA, "faildata-421-4.4.2@example.net", []string{"250 ", "250 ", "354 ", "451 4.4.2 "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			got := sendOne(c, tc.from, tc.rcpt)
			if len(got) != len(tc.want) {
				t.Fatalf("replies %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Fatalf("replies %q, want %q", got, tc.want)
				}
			}
			if i := len(got) - 1; strings.HasPrefix(tc.want[i], "451 4.4.2") && !strings.Contains(got[i], "421 4.4.2 Injected failure.") &&
				!strings.HasPrefix(got[i], "451 4.4.2 Upstream connection lost") {
				t.Errorf("%q does not carry the provider's reply", got[i])
			}
			c.deliver(userA, "ok@example.net", "x\r\n")
		})
	}
}

// microsoftRefusal is Microsoft's answer to a revoked or expired token
// (PROVIDERS.md): a plain 535, no challenge, no reason.
var microsoftRefusal = reply.New(535, "5.7.3", "Authentication unsuccessful")

// TestRelay_plain535RefreshesCachedTokenOnce: a new session's AUTH with
// the cached token gets a plain 535; the proxy drops that token, refreshes
// once, logs in with the new one on the same session, and the message is
// delivered.
func TestRelay_plain535RefreshesCachedTokenOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
		2: {Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply, Reply: microsoftRefusal},
	})}})
	c := e.dial(t)
	c.authPlain(userOne, password, "235") // one message per upstream session
	c.deliver(userOne, "r@example.net", "x\r\n")
	before := e.fp.Stats()
	c.deliver(userOne, "r@example.net", "x\r\n") // session 2: 535, refresh, 235
	after := e.fp.Stats()
	if got := after.TokenRefreshes - before.TokenRefreshes; got != 1 {
		t.Errorf("token refreshes = %d, want 1", got)
	}
	if after.SessionFaults != 1 || after.Logins-before.Logins != 1 || after.Messages != 2 {
		t.Errorf("provider stats %+v, want one refused AUTH, one login, 2 messages", after)
	}
}

// TestRelay_plain535AfterRefreshGivesUp: the refreshed token is refused
// too; after exactly two AUTH attempts the client gets the failure reply
// and nothing is sent.
func TestRelay_plain535AfterRefreshGivesUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
		2: {Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply, Reply: microsoftRefusal, Repeat: true},
	})}})
	c := e.dial(t)
	c.authPlain(userOne, password, "235")
	c.deliver(userOne, "r@example.net", "x\r\n")
	before := e.fp.Stats()
	got := sendOne(c, userOne, "r@example.net")
	after := e.fp.Stats()
	if !strings.HasPrefix(got[0], "454 4.7.0 "+userOne+": upstream authentication failed: 535 5.7.3") {
		t.Fatalf("replies %q, want the upstream authentication failure", got)
	}
	if after.SessionFaults != 2 {
		t.Errorf("AUTH attempts on the refusing session = %d, want 2", after.SessionFaults)
	}
	if got := after.TokenRefreshes - before.TokenRefreshes; got != 1 {
		t.Errorf("token refreshes = %d, want 1", got)
	}
	if after.Connections != 2 || after.Messages != 1 {
		t.Errorf("provider stats %+v, want 2 connections, 1 message", after)
	}
}

// TestRelay_plain535OnFreshTokenNotRefreshed: a token just issued and
// refused with a plain 535 is not refreshed: a new one would fare no
// better. One AUTH, one token request.
func TestRelay_plain535OnFreshTokenNotRefreshed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
		1: {Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply, Reply: microsoftRefusal, Repeat: true},
	})}})
	c := e.dial(t)
	c.authPlain(userOne, password, "235")
	got := sendOne(c, userOne, "r@example.net")
	if !strings.HasPrefix(got[0], "454 4.7.0 ") {
		t.Fatalf("replies %q", got)
	}
	if st := e.fp.Stats(); st.SessionFaults != 1 || st.TokenRefreshes != 1 {
		t.Errorf("provider stats %+v, want 1 AUTH and 1 token issued", st)
	}
}

// TestRelay_throttlingRepliesCoolTheAccountDown: a provider reply that
// throttles the account, at session open or in the transaction, reaches
// the client that triggered it as 451 4.7.0 with the provider's reply;
// the account's next transaction is refused early for the cool-down, and
// another account sends on.
func TestRelay_throttlingRepliesCoolTheAccountDown(t *testing.T) {
	t.Parallel()
	say := func(st fakeprovider.Stage, r reply.Reply) map[int64]fakeprovider.Fault {
		return map[int64]fakeprovider.Fault{1: {Stage: st, Action: fakeprovider.ActReply, Reply: r}}
	}
	tests := []struct {
		name     string
		faults   map[int64]fakeprovider.Fault // by connection; the first is the account's
		rcpt     string
		at       int    // index of the translated reply in sendOne's result
		provider string // the provider's reply as quoted
	}{
		{name: "session open: Microsoft 432 concurrency",
			faults: say(fakeprovider.StageAuth, reply.New(432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded")),
			rcpt:   "r@example.net", provider: "432 4.3.2 STOREDRV.ClientSubmit"},
		{name: "session open: Gmail 454 too many logins",
			faults: say(fakeprovider.StageAuth, reply.New(454, "4.7.0", "Too many login attempts, please try again later.")),
			rcpt:   "r@example.net", provider: "454 4.7.0 Too many login attempts"},
		{name: "session open: Gmail 421 4.7.0 rate",
			faults: say(fakeprovider.StageGreeting, reply.New(421, "4.7.0", "Try again later, closing connection.")),
			rcpt:   "r@example.net", provider: "421 4.7.0 Try again later"},
		{name: "session open: Gmail 421 4.3.0 parallel sessions",
			faults: say(fakeprovider.StageEHLO, reply.New(421, "4.3.0", "Temporary System Problem.  Try again later.")),
			rcpt:   "r@example.net", provider: "421 4.3.0 Temporary System Problem"},
		{name: "MAIL: 421 4.7.0", rcpt: "r@example.net", provider: "421 4.7.0 Try again later"},
		{name: "RCPT: 450 4.2.1", rcpt: "reject-450-4.2.1@example.net", at: 1, provider: "450 4.2.1 "},
		{name: "end of data: 450 4.2.1", rcpt: "faildata-450-4.2.1@example.net", at: 3, provider: "450 4.2.1 "},
		{name: "end of data: 421 4.7.0", rcpt: "faildata-421@example.net", at: 3, provider: "421 4.7.0 Try again later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(tc.faults)}})
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			from := userA
			if tc.name == "MAIL: 421 4.7.0" {
				from = "failmail-421@example.com"
			}
			got := sendOne(c, from, tc.rcpt)
			if want := "451 4.7.0 " + userA + ": provider says: " + tc.provider; len(got) <= tc.at || !strings.HasPrefix(got[tc.at], want) {
				t.Fatalf("replies %q, want %q at %d", got, want, tc.at)
			}
			if n := len(e.fp.Messages()); n != 0 {
				t.Fatalf("provider holds %d messages", n)
			}
			next := c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": cooling down until ")
			if !strings.Contains(next, tc.provider) {
				t.Errorf("early refusal %q does not name the provider's reply %q", next, tc.provider)
			}
			c2 := e.dial(t)
			c2.authPlain(userPlain, password, "235")
			c2.deliver(userPlain, "r@example.net", "x\r\n")
		})
	}
}

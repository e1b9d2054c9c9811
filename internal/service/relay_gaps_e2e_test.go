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

package service_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

// TestRelay_bodyDroppedWhenUpstreamLacks8BITMIME: RFC 6152 §2 lets a
// client send BODY= only to a server that offers 8BITMIME. An upstream
// without it gets MAIL FROM without the parameter (the fake would refuse
// it with 555), and the message is delivered.
func TestRelay_bodyDroppedWhenUpstreamLacks8BITMIME(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{No8BITMIME: true}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.send("MAIL FROM:<" + userA + "> BODY=8BITMIME\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: caf\xc3\xa9\r\n\r\n8-bit body \xc3\xa9\r\n.\r\n")
	c.expect("250")
	msgs := e.fp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("provider has %d messages, want 1", len(msgs))
	}
	if m := msgs[0]; slices.ContainsFunc(m.MailParams, func(p string) bool { return strings.HasPrefix(strings.ToUpper(p), "BODY=") }) {
		t.Errorf("MAIL params %q carry BODY= to an upstream without 8BITMIME", m.MailParams)
	}
}

// TestRelay_smtpUTF8RefusedWhenUpstreamLacksIt: a message that needs
// SMTPUTF8 cannot be relayed to an upstream without it (RFC 6531 §3.4:
// 553 5.6.7 from the proxy itself); nothing reaches the provider, and the
// session can go on with a message that does not need it.
func TestRelay_smtpUTF8RefusedWhenUpstreamLacksIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{NoSMTPUTF8: true}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	// The fake would answer 555 5.5.4 had the parameter reached it.
	c.cmd("MAIL FROM:<"+userA+"> SMTPUTF8", "553 5.6.7")
	if n := len(e.fp.Messages()); n != 0 {
		t.Fatalf("provider has %d messages after the refused MAIL", n)
	}
	c.deliver(userA, "r@example.net", "Subject: plain\r\n\r\nascii\r\n")
	msgs := e.fp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("provider has %d messages, want 1", len(msgs))
	}
	if slices.Contains(msgs[0].MailParams, "SMTPUTF8") {
		t.Errorf("MAIL params %q", msgs[0].MailParams)
	}
}

// TestRelay_chunkingUpstream: over an upstream that offers CHUNKING (as
// Gmail and Exchange Online do) the proxy answers DATA itself once a
// recipient is accepted and sends the body with BDAT, in chunks when it
// is long. A client that does not pipeline gets every reply in turn; the
// provider receives the exact bytes, dot lines included, and refusals of
// recipients and of the message still reach the client as they were.
func TestRelay_chunkingUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{Chunking: true}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	bodies := [][]byte{
		testBody(),
		[]byte("Subject: long\r\n\r\n" + strings.Repeat(".dotted line of text that repeats\r\n", 4000)), // 140 KB: five chunks
		[]byte("Subject: empty body\r\n\r\n"),
	}
	for i, body := range bodies {
		c.cmd("MAIL FROM:<"+userA+">", "250")
		c.cmd("RCPT TO:<r@example.net>", "250")
		c.cmd("RCPT TO:<reject-550@example.net>", "550")
		c.cmd("DATA", "354")
		c.send(stuff(body) + ".\r\n")
		c.expect("250 2.0.0 OK")
		msgs := e.fp.Messages()
		if len(msgs) != i+1 {
			t.Fatalf("message %d: provider has %d messages", i, len(msgs))
		}
		if got := msgs[i].Data; string(got) != string(body) {
			t.Errorf("message %d: provider got %d bytes, sent %d; first difference near %q", i, len(got), len(body), trunc(got))
		}
		if got := strings.Join(msgs[i].Rcpts, ","); got != "r@example.net" {
			t.Errorf("message %d: recipients %q", i, got)
		}
	}
	if st := e.fp.Stats(); st.ChunkedMessages != int64(len(bodies)) {
		t.Errorf("messages delivered with BDAT: %d of %d", st.ChunkedMessages, len(bodies))
	}
	// A message the provider refuses at the end (chosen by recipient):
	// the client hears the refusal after its body, not a 250.
	for _, tc := range []struct{ rcpt, want string }{
		{"faildata-552@example.net", "552"},    // after the last chunk
		{"faildatacmd-550@example.net", "550"}, // at the first chunk, where DATA would have been refused
	} {
		c.cmd("MAIL FROM:<"+userA+">", "250")
		c.cmd("RCPT TO:<"+tc.rcpt+">", "250")
		c.cmd("DATA", "354")
		c.send("Subject: refused\r\n\r\nno\r\n.\r\n")
		c.expect(tc.want)
	}
	if n := len(e.fp.Messages()); n != len(bodies) {
		t.Errorf("provider has %d messages after the refusals, want %d", n, len(bodies))
	}
	// No recipient accepted: DATA is refused here, no body asked for.
	c.cmd("MAIL FROM:<"+userA+">", "250")
	c.cmd("RCPT TO:<reject-550@example.net>", "550")
	c.cmd("DATA", "554")
	c.cmd("QUIT", "221")
}

// TestRelay_chunkingUpstreamFaults: the connection lost during a BDAT
// body is a 4xx for the client, never a 250: before the last chunk
// nothing is delivered, after it the outcome is unknown and reported so.
func TestRelay_chunkingUpstreamFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rcpt      string
		delivered int
	}{
		{"drop-in-body@example.net", 0},
		{"drop-after-dot@example.net", 1},
		{"drop-at-data@example.net", 0},
	} {
		t.Run(tc.rcpt, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{provider: fakeprovider.Options{Chunking: true}})
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			c.cmd("MAIL FROM:<"+userA+">", "250")
			c.cmd("RCPT TO:<"+tc.rcpt+">", "250")
			c.cmd("DATA", "354")
			c.send("Subject: x\r\n\r\n" + strings.Repeat("body line\r\n", 10000) + ".\r\n")
			c.expect("4")
			if n := len(e.fp.Messages()); n != tc.delivered {
				t.Errorf("provider has %d messages, want %d", n, tc.delivered)
			}
			// The session goes on: the next message goes over a new upstream session.
			c.deliver(userA, "r@example.net", "Subject: next\r\n\r\nok\r\n")
		})
	}
}

// TestRelay_chunkingClientGoneMidBody: a client that disconnects in the
// middle of its body leaves nothing delivered: the LAST chunk never went.
func TestRelay_chunkingClientGoneMidBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{provider: fakeprovider.Options{Chunking: true}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.cmd("MAIL FROM:<"+userA+">", "250")
	c.cmd("RCPT TO:<r@example.net>", "250")
	c.cmd("DATA", "354")
	c.send("Subject: cut\r\n\r\n" + strings.Repeat("body line\r\n", 20000)) // 220 KB, several chunks, no final dot
	c.nc.Close()
	// A second client's message shows the proxy went on; the first must
	// not be among the provider's messages.
	c2 := e.dial(t)
	c2.authPlain(userA, password, "235")
	c2.deliver(userA, "r@example.net", "Subject: next\r\n\r\nok\r\n")
	for _, m := range e.fp.Messages() {
		if strings.Contains(string(m.Data), "Subject: cut") {
			t.Fatal("the cut message was delivered")
		}
	}
}

// TestRelay_chunkingSwitchedOff: upstream_chunking false keeps DATA
// even where the provider offers CHUNKING.
func TestRelay_chunkingSwitchedOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{
		provider: fakeprovider.Options{Chunking: true},
		edit: func(cfg map[string]any, _ []map[string]any) {
			cfg["global"].(map[string]any)["smtp"].(map[string]any)["upstream_chunking"] = false
		},
	})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "Subject: via DATA\r\n\r\nok\r\n")
	if st := e.fp.Stats(); st.Messages != 1 || st.ChunkedMessages != 0 {
		t.Errorf("delivered %d, with BDAT %d; want 1 and 0", st.Messages, st.ChunkedMessages)
	}
}

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

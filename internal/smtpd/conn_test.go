package smtpd_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// TestConn_greetingAndHello: the banner and the EHLO and HELO replies
// carry the configured hostname; EHLO lists the extensions we serve
// (RFC 2920, 6152, 6531, 2034, 1870, 4954), and after HELO, AUTH works.
func TestConn_greetingAndHello(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		hostname string // Config.Hostname
		want     string // the name in the replies
	}{
		{"default name", "", "xoauth2-proxy"},
		{"configured name", "mx.example.test", "mx.example.test"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startServer(t, smtpd.Config{Hostname: tc.hostname, MaxMessageBytes: 1234567}, &fakeBackend{})

			c := dial(t, addr)
			c.expect("220 " + tc.want + " ")
			c.send("EHLO client.test\r\n")
			lines := c.readReply()
			if want := "250-" + tc.want + " "; !strings.HasPrefix(lines[0], want) {
				t.Errorf("EHLO first line %q, want prefix %q", lines[0], want)
			}
			var kw []string
			for _, l := range lines[1:] {
				kw = append(kw, l[4:])
			}
			for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 1234567", "AUTH PLAIN LOGIN"} {
				if !slices.Contains(kw, want) {
					t.Errorf("EHLO keywords %q lack %q", kw, want)
				}
			}

			c = dial(t, addr)
			c.expect("220 " + tc.want + " ")
			c.send("HELO client.test\r\n")
			if got := c.readReply(); len(got) != 1 || got[0] != "250 "+tc.want {
				t.Errorf("HELO: %q, want %q", got, "250 "+tc.want)
			}
			c.send(authAlice)
			c.expect("235 ")
			c.send("QUIT\r\n")
			c.expect("221 2.0.0 " + tc.want + " ")
		})
	}
}

// TestConn_maxRecipients: RCPTs beyond the listener's cap get 452 4.5.3
// (RFC 5321 §4.5.3.1.10) and do not reach the upstream; the message goes
// to the ones accepted.
func TestConn_maxRecipients(t *testing.T) {
	t.Parallel()
	const rcpt = "RCPT TO:<r@example.net>\r\n"
	cases := []struct {
		name      string
		pipelined bool
	}{
		{"pipelined", true},
		{"one at a time", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &fakeBackend{}
			c := dial(t, startServer(t, smtpd.Config{MaxRecipients: 2}, b))
			c.expect("220 ")
			c.ehlo()
			c.send(authAlice)
			c.expect("235 ")
			cmds := []string{"MAIL FROM:<a@example.com>\r\n", rcpt, rcpt, rcpt, rcpt, "DATA\r\n"}
			want := []string{"250 ", "250 ", "250 ", "452 4.5.3", "452 4.5.3", "354 "}
			if tc.pipelined {
				c.send(strings.Join(cmds, ""))
				for _, w := range want {
					c.expect(w)
				}
			} else {
				for i, cmd := range cmds {
					c.send(cmd)
					c.expect(want[i])
				}
			}
			c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
			c.expect("250 ")
			b.mu.Lock()
			defer b.mu.Unlock()
			var rcpts int
			for _, batch := range b.batches {
				for _, cmd := range batch {
					if cmd.Verb == smtpd.VerbRcpt {
						rcpts++
					}
				}
			}
			if rcpts != 2 || len(b.messages) != 1 {
				t.Errorf("upstream got %d RCPTs and %d messages, want 2 and 1", rcpts, len(b.messages))
			}
		})
	}
}

package fakeprovider_test

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

func TestData_dotUnstuffingIsByteExact(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100000) // longer than the server's read buffer
	tests := []struct {
		name string
		wire string // what the client sends after 354, terminator included
		want string // Message.Data: the content with its last CRLF
	}{
		{"simple", "Subject: x\r\n\r\nhello\r\n.\r\n", "Subject: x\r\n\r\nhello\r\n"},
		{"empty", ".\r\n", ""},
		{"one empty line", "\r\n.\r\n", "\r\n"},
		{"two empty lines", "\r\n\r\n.\r\n", "\r\n\r\n"},
		{"stuffed dot line", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},
		{"stuffed dots", "..x\r\n...\r\n.\r\n", ".x\r\n..\r\n"},
		{"first line stuffed", "..\r\n.\r\n", ".\r\n"},
		{"dot inside a line", "a.b\r\n.c\r\n.\r\n", "a.b\r\nc\r\n"},
		{"bare LF is content", "a\n.\nb\r\n.\r\n", "a\n.\nb\r\n"},
		{"bare LF before the dot", "a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n"},
		{"bare CR", "a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n"},
		{"LF dot CRLF not an end", "a\r\n\n.\r\n.\r\n", "a\r\n\n.\r\n"},
		{"dot space", ". \r\n.\r\n", " \r\n"},
		{"8-bit and NUL", "\xff\x00\xc3\xa9\r\n.\r\n", "\xff\x00\xc3\xa9\r\n"},
		{"long line", long + "\r\n.\r\n", long + "\r\n"},
		{"long stuffed line", "." + long + "\r\n..\r\n.\r\n", long + "\r\n.\r\n"},
		{"long line ending in dot line", long + "\r\n.\r\n", long + "\r\n"},
	}
	for _, discard := range []bool{false, true} {
		p := start(t, fakeprovider.Options{DiscardBodies: discard})
		tok := accessToken(t, p, "a@example.com")
		for i, tt := range tests {
			t.Run(tt.name+"/discard="+strconv.FormatBool(discard), func(t *testing.T) {
				t.Parallel()
				c := dial(t, p)
				c.login("a@example.com", tok)
				from := "m" + strconv.Itoa(i) + "@example.com"
				got := c.send(from, []string{"r@example.net"}, tt.wire)
				if !strings.HasPrefix(got, "250 2.0.0 OK ") || !strings.HasSuffix(got, " - gsmtp") {
					t.Fatalf("after dot: %q", got)
				}
				c.do("NOOP", 250, "2.0.0") // the dialogue stays in step
				m := findMessage(t, p, from)
				if discard {
					if m.Data != nil {
						t.Errorf("Data kept with DiscardBodies")
					}
				} else if !bytes.Equal(m.Data, []byte(tt.want)) {
					t.Errorf("Data = %q, want %q", trunc(m.Data), trunc([]byte(tt.want)))
				}
				if m.Size != len(tt.want) || m.SHA256 != sha256.Sum256([]byte(tt.want)) {
					t.Errorf("Size %d SHA %x, want %d %x", m.Size, m.SHA256, len(tt.want), sha256.Sum256([]byte(tt.want)))
				}
				if !strings.Contains(got, m.ID) {
					t.Errorf("reply %q does not carry id %q", got, m.ID)
				}
			})
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 60 {
		return string(b[:30]) + "..." + string(b[len(b)-30:])
	}
	return string(b)
}

func findMessage(t *testing.T, p *fakeprovider.Provider, from string) fakeprovider.Message {
	t.Helper()
	for _, m := range p.Messages() {
		if m.From == from {
			return m
		}
	}
	t.Fatalf("no message from %s", from)
	return fakeprovider.Message{}
}

func TestData_pipelinedTransaction(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.ehlo()
	c.write("AUTH XOAUTH2 " + xoauth2("a@example.com", tok) + "\r\n" +
		"MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8 SIZE=12\r\n" +
		"RCPT TO:<r1@example.net>\r\nRCPT TO:<reject-550@example.net>\r\nRCPT TO:<r2@example.net>\r\nDATA\r\n")
	for _, want := range []string{"235 2.7.0", "250 2.1.0", "250 2.1.5", "550 5.1.1 The email account that you tried to reach does not exist.", "250 2.1.5", "354 "} {
		if got := c.reply(); !strings.HasPrefix(got, want) {
			t.Fatalf("reply %q, want %q", got, want)
		}
	}
	c.write("hi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<r3@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 2.0.0 OK", "250 2.1.0", "250 2.1.5", "354 "} {
		if got := c.reply(); !strings.HasPrefix(got, want) {
			t.Fatalf("reply %q, want %q", got, want)
		}
	}
	c.write(".\r\nQUIT\r\n")
	c.expect(250, "2.0.0 OK")
	c.expect(221, "2.0.0")
	c.expectClosed()

	msgs := p.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.AuthUser != "a@example.com" || m.From != "a@example.com" || strings.Join(m.Rcpts, ",") != "r1@example.net,r2@example.net" ||
		strings.Join(m.MailParams, " ") != "BODY=8BITMIME SMTPUTF8 SIZE=12" || string(m.Data) != "hi\r\n" {
		t.Errorf("message %+v", m)
	}
	if msgs[1].From != "" || msgs[1].MailParams != nil {
		t.Errorf("second message %+v", msgs[1])
	}
	if st := p.Stats(); st.Messages != 2 || st.Recipients != 3 || st.Logins != 1 || st.Connections != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestData_sizeLimits(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{MaxMessageBytes: 100})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	if ext := strings.Join(c.ehlo(), "\n"); !strings.Contains(ext, "SIZE 100\n") {
		t.Errorf("EHLO: %q", ext)
	}
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 235, "")
	c.do("MAIL FROM:<a@example.com> SIZE=101", 552, "5.3.4")
	c.do("MAIL FROM:<a@example.com> SIZE=lots", 501, "5.5.4")
	c.do("MAIL FROM:<a@example.com> SIZE=100", 250, "2.1.0")
	c.do("RCPT TO:<r@example.net>", 250, "2.1.5")
	c.do("DATA", 354, "")
	c.write(strings.Repeat("y", 99) + "\r\n.\r\n")
	c.expect(552, "5.3.4")
	// Exactly at the limit is fine: 98 bytes and the line's CRLF.
	if got := c.send("a@example.com", []string{"r@example.net"}, strings.Repeat("y", 98)+"\r\n.\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("at the limit: %q", got)
	}
	if n := len(p.Messages()); n != 1 {
		t.Errorf("%d messages stored", n)
	}
}

func TestSMTP_commandSequence(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.do("MAIL FROM:<a@example.com>", 503, "5.5.1 EHLO/HELO first.")
	c.do("EHLO", 501, "5.5.4")
	c.do("HELO client.example", 250, "fake.provider")
	c.do("MAIL FROM:<a@example.com>", 530, "5.7.0 Authentication Required")
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 235, "2.7.0 Accepted")
	c.do("RCPT TO:<r@example.net>", 503, "5.5.1")
	c.do("DATA", 503, "5.5.1")
	c.do("MAIL FROM:a@example.com", 555, "5.5.2")
	c.do("MAIL FROM:<a@example.com> NOTIFY=NEVER", 555, "5.5.4")
	c.do("MAIL FROM:<a@example.com> BODY=BINARYMIME", 555, "5.5.4")
	c.do("MAIL FROM: <a@example.com>", 250, "2.1.0")
	c.do("MAIL FROM:<a@example.com>", 503, "5.5.1 Nested MAIL command.")
	c.do("DATA", 554, "5.5.1 Error: no valid recipients")
	c.do("RCPT TO:<>", 555, "5.5.2")
	c.do("RCPT TO:<r@example.net> NOTIFY=SUCCESS", 555, "5.5.4")
	c.do("RCPT TO:<r@example.net>", 250, "2.1.5")
	c.do("AUTH XOAUTH2", 503, "5.5.1")
	c.do("RSET", 250, "2.1.5")
	c.do("RCPT TO:<r@example.net>", 503, "5.5.1")
	c.do("NOOP", 250, "2.0.0")
	c.do("VRFY x", 252, "2.1.5")
	c.do("XYZZY", 502, "5.5.1")
	c.do("", 502, "5.5.1")
	c.do("NOOP "+strings.Repeat("a", 5000), 500, "5.5.2")
	c.do("QUIT", 221, "2.0.0")
	c.expectClosed()
}

func TestSMTP_ehloAdvertisesGmailExtensions(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	c := dial(t, p)
	got := strings.Join(c.ehlo(), ",")
	want := "SIZE 35882577,8BITMIME,AUTH XOAUTH2 OAUTHBEARER,ENHANCEDSTATUSCODES,PIPELINING,SMTPUTF8"
	if got != want {
		t.Errorf("EHLO extensions %q, want %q", got, want)
	}
}

func TestSMTP_recipientLimit(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.login("a@example.com", tok)
	c.do("MAIL FROM:<a@example.com>", 250, "2.1.0")
	var b strings.Builder
	for i := range 101 {
		b.WriteString("RCPT TO:<r" + strconv.Itoa(i) + "@example.net>\r\n")
	}
	c.write(b.String())
	for i := range 100 {
		if got := c.reply(); !strings.HasPrefix(got, "250 2.1.5") {
			t.Fatalf("RCPT %d: %q", i, got)
		}
	}
	c.expect(452, "4.5.3")
	if got := c.send2("x\r\n.\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("after dot: %q", got)
	}
	if m := p.Messages(); len(m) != 1 || len(m[0].Rcpts) != 100 {
		t.Errorf("messages %d", len(m))
	}
}

// send2 sends DATA and body for a transaction already set up.
func (c *client) send2(body string) string {
	c.t.Helper()
	c.do("DATA", 354, "")
	c.write(body)
	return c.reply()
}

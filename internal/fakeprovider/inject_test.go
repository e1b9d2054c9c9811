package fakeprovider_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

// Each case is one transaction (see runTransaction): want lists the
// unusual replies as "step reply", where step is mail, rcptN, data or dot,
// and "closed" means the server hung up instead of replying.
func TestInject_localPartChoosesTheFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		from   string
		rcpts  []string
		want   string // as runTransaction returns it
		stored bool
	}{
		{"reject-550", "a@example.com", []string{"ok@x.test", "reject-550@x.test"}, "rcpt1 550 5.1.1 The email account that you tried to reach does not exist.; dot 250", true},
		{"reject-452", "a@example.com", []string{"ok@x.test", "reject-452@x.test"}, "rcpt1 452 4.2.2 mailbox full; dot 250", true},
		{"reject other code", "a@example.com", []string{"ok@x.test", "Reject-553+tag@x.test"}, "rcpt1 553 5.0.0 Injected failure.; dot 250", true},
		{"reject with enhanced", "a@example.com", []string{"ok@x.test", "reject-550-5.4.5@x.test"}, "rcpt1 550 5.4.5 Daily user sending limit exceeded.; dot 250", true},
		{"reject-421 closes", "a@example.com", []string{"reject-421@x.test"}, "rcpt0 421 4.7.0 Try again later, closing connection.|closed", false},
		{"failmail", "failmail-550-5.2.252@example.com", nil, "mail 550 5.2.252 SendAsDenied; not allowed to send as this address", false},
		{"failmail temporary", "failmail-451@example.com", nil, "mail 451 4.0.0 Injected failure.", false},
		{"faildata-550", "a@example.com", []string{"ok@x.test", "faildata-550@x.test"}, "dot 550 5.7.1 Message rejected as unsolicited mail.", false},
		{"faildata-451", "a@example.com", []string{"faildata-451@x.test"}, "dot 451 4.3.0 Temporary System Problem.  Try again later.", false},
		{"faildata Microsoft quota", "a@example.com", []string{"faildata-554@x.test"}, "dot 554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", false},
		{"faildata in sender", "faildata-550@example.com", []string{"ok@x.test"}, "dot 550 5.7.1 Message rejected as unsolicited mail.", false},
		{"faildatacmd", "a@example.com", []string{"faildatacmd-554@x.test"}, "data 554 5.0.0 Injected failure.", false},
		{"faildatacmd 421", "a@example.com", []string{"faildatacmd-421@x.test"}, "data 421 4.7.0 Try again later, closing connection.|closed", false},
		{"drop-at-rcpt", "a@example.com", []string{"ok@x.test", "drop-at-rcpt@x.test"}, "rcpt1 closed", false},
		{"drop-at-data", "a@example.com", []string{"drop-at-data@x.test"}, "data closed", false},
		{"drop-in-body", "a@example.com", []string{"drop-in-body@x.test"}, "dot closed", false},
		{"drop-after-dot", "a@example.com", []string{"drop-after-dot@x.test"}, "dot closed", true},
		{"ordinary look-alikes", "failmail@example.com", []string{"reject-55@x.test", "reject-5500@x.test", "reject-250@x.test", "slow-@x.test", "dropped@x.test"}, "dot 250", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, fakeprovider.Options{})
			tok := accessToken(t, p, "a@example.com")
			c := dial(t, p)
			c.login("a@example.com", tok)
			got := runTransaction(c, tt.from, tt.rcpts)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if n := len(p.Messages()); (n == 1) != tt.stored {
				t.Errorf("%d messages stored, want stored=%v", n, tt.stored)
			}
		})
	}
}

// runTransaction returns the unusual replies as "step reply", joined by
// "; ", with "|closed" appended when the server hung up after one. A
// rejected recipient does not end the transaction; any other unusual
// reply does.
func runTransaction(c *client, from string, rcpts []string) string {
	c.t.Helper()
	var events []string
	// step sends line (if any) and reads the reply; it reports whether
	// the reply was the usual wantCode.
	step := func(name, line string, wantCode int) bool {
		if line != "" {
			c.write(line)
		}
		code, lines, err := c.readReply()
		if err != nil {
			events = append(events, name+" closed")
			return false
		}
		if code == wantCode {
			return true
		}
		r := name + " " + strconv.Itoa(code) + " " + strings.Join(lines, "|")
		if code == 421 {
			if _, _, err := c.readReply(); err != nil {
				r += "|closed"
			}
		}
		events = append(events, r)
		return false
	}
	done := func() string { return strings.Join(events, "; ") }
	if !step("mail", "MAIL FROM:<"+from+">\r\n", 250) {
		return done()
	}
	accepted := 0
	for i, rc := range rcpts {
		if step("rcpt"+strconv.Itoa(i), "RCPT TO:<"+rc+">\r\n", 250) {
			accepted++
		} else if strings.HasSuffix(events[len(events)-1], "closed") {
			return done()
		}
	}
	if accepted == 0 {
		return done()
	}
	if !step("data", "DATA\r\n", 354) {
		return done()
	}
	// 4 KiB of body, so drop-in-body has something to cut. The server may
	// hang up while we write; the reply read tells.
	c.conn.Write([]byte(strings.Repeat("0123456789abcde\r\n", 240) + ".\r\n"))
	if step("dot", "", 250) {
		events = append(events, "dot 250")
	}
	return done()
}

func TestInject_slowDelaysTheFinalReply(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.login("a@example.com", tok)
	begin := time.Now()
	if got := c.send("a@example.com", []string{"ok@x.test", "slow-120@x.test"}, "x\r\n.\r\n"); !strings.HasPrefix(got, "250 2.0.0") {
		t.Fatalf("after dot: %q", got)
	}
	// A lower bound only: the delay is a floor, never a ceiling.
	if d := time.Since(begin); d < 120*time.Millisecond {
		t.Errorf("reply after %v, want at least 120ms", d)
	}
}

func TestInject_dropAfterDotStoresTheMessage(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.login("a@example.com", tok)
	c.do("MAIL FROM:<a@example.com>", 250, "2.1.0")
	c.do("RCPT TO:<drop-after-dot@x.test>", 250, "2.1.5")
	c.do("DATA", 354, "")
	c.write("exact\r\n.\r\n")
	c.expectClosed()
	m := p.Messages()
	if len(m) != 1 || string(m[0].Data) != "exact\r\n" || m[0].Rcpts[0] != "drop-after-dot@x.test" {
		t.Errorf("messages %+v", m)
	}
	if st := p.Stats(); st.Messages != 1 || st.Recipients != 1 {
		t.Errorf("stats %+v", st)
	}
}

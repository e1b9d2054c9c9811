package fakeprovider_test

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// stalled reports whether the next read times out after d: the server
// neither answers nor hangs up.
func stalled(c *client, d time.Duration) bool {
	c.conn.SetReadDeadline(time.Now().Add(d))
	_, _, err := c.readReply()
	return isTimeout(err)
}

func TestInject_stallsResetAndTrickle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, from string
		rcpts      []string
		want       string // "stall", "reset" or "closed" at the step
		step       string // mail, rcpt, data, dot
		stored     bool
	}{
		{"drop-at-mail", "drop-at-mail@example.com", nil, "closed", "mail", false},
		{"stall-at-mail", "stall-at-mail@example.com", nil, "stall", "mail", false},
		{"stall-at-rcpt", "a@example.com", []string{"stall-at-rcpt@x.test"}, "stall", "rcpt", false},
		{"stall-at-data", "a@example.com", []string{"stall-at-data@x.test"}, "stall", "data", false},
		{"stall-in-body", "a@example.com", []string{"stall-in-body@x.test"}, "stall", "dot", false},
		{"stall-after-dot", "a@example.com", []string{"stall-after-dot@x.test"}, "stall", "dot", false},
		{"reset-in-body", "a@example.com", []string{"reset-in-body@x.test"}, "reset", "dot", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, fakeprovider.Options{})
			tok := accessToken(t, p, "a@example.com")
			c := dial(t, p)
			c.login("a@example.com", tok)
			at := func(step string) bool { return step == tt.step }
			check := func() {
				t.Helper()
				switch tt.want {
				case "stall":
					if !stalled(c, 300*time.Millisecond) {
						t.Fatalf("%s: server did not stall", tt.step)
					}
				case "reset":
					c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _, err := c.readReply()
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("%s: got %v, want a connection reset", tt.step, err)
					}
				default:
					c.expectClosed()
				}
			}
			c.write("MAIL FROM:<" + tt.from + ">\r\n")
			if at("mail") {
				check()
				return
			}
			c.expect(250, "2.1.0")
			c.write("RCPT TO:<" + tt.rcpts[0] + ">\r\n")
			if at("rcpt") {
				check()
				return
			}
			c.expect(250, "2.1.5")
			c.write("DATA\r\n")
			if at("data") {
				check()
				return
			}
			c.expect(354, "")
			c.conn.Write([]byte(strings.Repeat("0123456789abcde\r\n", 240) + ".\r\n"))
			check()
			if n := len(p.Messages()); (n == 1) != tt.stored {
				t.Errorf("%d messages stored", n)
			}
		})
	}
}

func TestInject_trickleSlowsEveryLaterReply(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{TrickleInterval: 5 * time.Millisecond})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.login("a@example.com", tok)
	c.do("MAIL FROM:<a@example.com>", 250, "2.1.0")
	begin := time.Now()
	c.do("RCPT TO:<trickle@x.test>", 250, "2.1.5")
	c.do("DATA", 354, "")
	c.write("x\r\n.\r\n")
	c.expect(250, "2.0.0")
	// About 70 bytes of replies at 5ms each: a floor, never a ceiling.
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Errorf("trickled replies took %v", d)
	}
}

// TestSessionFaults: every stage before the transaction can fail in every
// way; the client sees exactly that.
func TestSessionFaults(t *testing.T) {
	t.Parallel()
	serverTLS, roots, _, err := fakeprovider.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	tests := []struct {
		name string
		f    fakeprovider.Fault
		want string // what the client sees at that stage: "closed", "reset", "stall", "garbage", a reply prefix, or "slow"
	}{
		{"greeting drop", fakeprovider.Fault{Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActDrop}, "closed"},
		{"greeting reset", fakeprovider.Fault{Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActReset}, "reset"},
		{"greeting stall", fakeprovider.Fault{Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActStall}, "stall"},
		{"greeting 554", fakeprovider.Fault{Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActReply, Reply: reply.New(554, "5.3.2", "no service")}, "554 5.3.2"},
		{"greeting trickle", fakeprovider.Fault{Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActTrickle}, "slow"},
		{"greeting garbage", fakeprovider.Fault{Stage: fakeprovider.StageGreeting, Action: fakeprovider.ActGarbage}, "garbage"},
		{"ehlo 421", fakeprovider.Fault{Stage: fakeprovider.StageEHLO, Action: fakeprovider.ActReply, Reply: reply.New(421, "4.7.0", "go away")}, "421 4.7.0"},
		{"ehlo stall", fakeprovider.Fault{Stage: fakeprovider.StageEHLO, Action: fakeprovider.ActStall}, "stall"},
		{"starttls 454", fakeprovider.Fault{Stage: fakeprovider.StageSTARTTLS, Action: fakeprovider.ActReply, Reply: reply.New(454, "4.7.0", "TLS not available")}, "454 4.7.0"},
		{"tls garbage", fakeprovider.Fault{Stage: fakeprovider.StageTLS, Action: fakeprovider.ActGarbage}, "garbage"},
		{"tls stall", fakeprovider.Fault{Stage: fakeprovider.StageTLS, Action: fakeprovider.ActStall}, "stall"},
		{"tls trickle", fakeprovider.Fault{Stage: fakeprovider.StageTLS, Action: fakeprovider.ActTrickle}, "slow"},
		{"auth 454", fakeprovider.Fault{Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply, Reply: reply.New(454, "4.7.0", "Too many login attempts")}, "454 4.7.0"},
		{"auth drop", fakeprovider.Fault{Stage: fakeprovider.StageAuth, Action: fakeprovider.ActDrop}, "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, fakeprovider.Options{
				TLSConfig:       serverTLS,
				TrickleInterval: 2 * time.Millisecond,
				SessionFault: func(n int64) fakeprovider.Fault {
					if n == 1 {
						return tt.f
					}
					return fakeprovider.Fault{}
				},
			})
			tok := accessToken(t, p, "a@example.com")
			conn, err := net.Dial("tcp", p.SMTPAddr())
			if errors.Is(err, syscall.ECONNRESET) && tt.want == "reset" {
				// The reset can win the race with the end of the
				// handshake: the client then sees it at connect.
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, conn)
			begin := time.Now()
			see := func() string {
				c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				code, lines, err := c.readReply()
				switch {
				case err == nil:
					return strconv.Itoa(code) + " " + strings.Join(lines, " ")
				case isTimeout(err):
					return "stall"
				case errors.Is(err, syscall.ECONNRESET):
					return "reset"
				case strings.Contains(err.Error(), "short reply") || strings.Contains(err.Error(), "invalid syntax"):
					return "garbage"
				}
				return "closed"
			}
			got := ""
			switch tt.f.Stage {
			case fakeprovider.StageGreeting:
				got = see()
			case fakeprovider.StageEHLO:
				c.expect(220, "")
				c.write("EHLO x\r\n")
				got = see()
			case fakeprovider.StageSTARTTLS:
				c.expect(220, "")
				c.ehlo()
				c.write("STARTTLS\r\n")
				got = see()
			case fakeprovider.StageTLS:
				c.expect(220, "")
				c.ehlo()
				c.do("STARTTLS", 220, "")
				tc := tls.Client(c.conn, clientTLS)
				tc.SetDeadline(time.Now().Add(300 * time.Millisecond))
				err := tc.Handshake()
				switch {
				case err == nil:
					got = "ok"
				case isTimeout(err) && tt.want == "slow":
					got = "slow"
				case isTimeout(err):
					got = "stall"
				default:
					got = "garbage"
				}
			case fakeprovider.StageAuth:
				c.expect(220, "")
				c.ehlo()
				c.write("AUTH XOAUTH2 " + xoauth2("a@example.com", tok) + "\r\n")
				got = see()
			}
			if tt.want == "slow" && got != "slow" {
				// A trickled reply arrives whole, only late.
				if time.Since(begin) < 20*time.Millisecond {
					t.Errorf("reply %q came at once", got)
				}
				return
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// Later sessions are healthy.
			c2 := dial(t, p)
			c2.ehlo()
		})
	}
}

// TestSessionFault_reuseAndRepeat: a StageReuse fault answers the first
// command after a delivered message (here an idle-timeout 421, which also
// closes), and a Repeat fault strikes every AUTH of its session.
func TestSessionFault_reuseAndRepeat(t *testing.T) {
	t.Parallel()
	t.Run("reuse", func(t *testing.T) {
		t.Parallel()
		idle := reply.New(421, "4.4.2", "Idle timeout, closing connection")
		p := start(t, fakeprovider.Options{SessionFault: func(int64) fakeprovider.Fault {
			return fakeprovider.Fault{Stage: fakeprovider.StageReuse, Action: fakeprovider.ActReply, Reply: idle}
		}})
		tok := accessToken(t, p, "a@example.com")
		c := dial(t, p)
		c.login("a@example.com", tok)
		if got := c.send("a@example.com", []string{"r@x.test"}, "x\r\n.\r\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("first message: %q", got)
		}
		c.write("MAIL FROM:<a@example.com>\r\nRCPT TO:<r@x.test>\r\n")
		c.expect(421, "4.4.2 Idle timeout")
		c.expectClosed()
		if st := p.Stats(); st.SessionFaults != 1 || st.Messages != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("repeat", func(t *testing.T) {
		t.Parallel()
		p := start(t, fakeprovider.Options{SessionFault: func(int64) fakeprovider.Fault {
			return fakeprovider.Fault{Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply,
				Reply: reply.New(535, "5.7.3", "Authentication unsuccessful"), Repeat: true}
		}})
		tok := accessToken(t, p, "a@example.com")
		c := dial(t, p)
		c.ehlo()
		for range 3 {
			c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 535, "5.7.3")
		}
		if st := p.Stats(); st.SessionFaults != 3 || st.Logins != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

package relay

// An internal test: refusal is the relay's one error→reply function, and
// its table is the list of what a client can hear from the relay itself.

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

type ambiguous struct{}

func (ambiguous) Error() string   { return "reply lost" }
func (ambiguous) Ambiguous() bool { return true }

func TestRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string // code, enhanced code and a piece of the text
	}{
		{"account gone", errAccountGone, "451 4.7.1 a@example.com: account removed or disabled"},
		{"in flight cap", fmt.Errorf("begin: %w", errInFlight), "451 4.7.0 a@example.com: too many messages in flight"},
		{"recipients per message", tooManyRcpts{max: 3}, "452 4.5.3 Too many recipients for a@example.com (at most 3 per message)"},
		{"budget", &quota.Denial{Limit: "daily message budget", ResetIn: 3*time.Hour + 12*time.Minute}, "451 4.7.0 a@example.com: daily message budget exhausted, resets in 3h12m"},
		{"cool-down", &quota.Denial{Cause: "550 5.4.5 Daily user sending limit exceeded", Until: time.Unix(0, 0)}, "451 4.7.0 a@example.com: cooling down until 1970-01-01T00:00:00Z after the provider said: 550 5.4.5"},
		{"no SMTPUTF8", errNoSMTPUTF8, "553 5.6.7 Upstream does not support SMTPUTF8"},
		{"354 without recipients", errNoRecipients, "554 5.5.1 No valid recipients"},
		{"not sent after a failure", errNotSent, "503 5.5.1 Sender not accepted"},
		{"no session", errNoSession, "451 4.4.1 Cannot connect"},
		{"the account layer's reply", &account.OpenError{Reply: reply.New(454, "4.7.0", "a@example.com: cannot obtain an OAuth2 access token"), Err: errors.New("x")}, "454 4.7.0 a@example.com: cannot obtain"},
		{"final reply lost", fmt.Errorf("body: %w", ambiguous{}), "451 4.4.2 Upstream connection lost after the message was sent"},
		{"body refused with a reply", &upstream.Error{Stage: "end", Reply: &reply.Reply{Code: 552, Enhanced: "5.3.4", Lines: []string{"too big"}}}, "552 5.3.4 too big"},
		{"body refused with a 421", &upstream.Error{Stage: "end", Reply: &reply.Reply{Code: 421, Enhanced: "4.4.2", Lines: []string{"bye"}}}, "451 4.4.2 Upstream connection lost"},
		{"session lost", errUpstreamLost, "451 4.4.2 Upstream connection lost"},
		{"a client-side reply", reply.New(552, "5.3.4", "Message too big"), "552 5.3.4 Message too big"},
		{"anything else: no internal text", errors.New("open /etc/secret: permission denied"), "451 4.3.0 local error, try again later (ref c9)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := refusal("a@example.com", tc.err, "c9").String(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("refusal = %q, want %q…", got, tc.want)
			}
		})
	}
}

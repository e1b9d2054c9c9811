package provider

import (
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Kind is what an upstream reply means for the account.
type Kind uint8

const (
	Normal      Kind = iota // nothing to learn
	DailyQuota              // the account's daily quota is used up (clears within 24 h)
	Rate                    // sending too fast: slow down for minutes
	LoginRate               // too many logins: stop opening sessions for a while
	Concurrency             // too many sessions at once
)

func (k Kind) String() string {
	switch k {
	case DailyQuota:
		return "daily quota exhausted"
	case Rate:
		return "rate limited"
	case LoginRate:
		return "too many logins"
	case Concurrency:
		return "too many concurrent sessions"
	}
	return "normal"
}

// Verdict is the meaning of one reply.
type Verdict struct {
	Kind Kind
	// Temporary tells that, whatever its code, the condition clears by
	// itself: a 5xx with this verdict should reach the client as a 4xx so
	// that the sender retries later instead of bouncing.
	Temporary bool
}

// rule matches a reply by code, enhanced-code prefix and text fragments
// (lower case; any of them, or none to match all).
type rule struct {
	code     int
	enhanced string
	text     []string
	v        Verdict
}

// rules is the table, most specific first (PROVIDERS.md "Over-limit replies").
var rules = []rule{
	// Gmail: 550 5.4.5 Daily user sending limit exceeded.
	{550, "5.4.5", nil, Verdict{DailyQuota, true}},
	// Microsoft: 554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException.
	{554, "5.2.0", []string{"quotaexceeded", "quota exceeded"}, Verdict{DailyQuota, true}},
	{550, "5.2.0", []string{"quotaexceeded", "quota exceeded"}, Verdict{DailyQuota, true}},
	// Microsoft: 432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded.
	{432, "", nil, Verdict{Concurrency, true}},
	// Gmail: 454 4.7.0 Too many login attempts, please try again later.
	{454, "4.7.0", []string{"too many login"}, Verdict{LoginRate, true}},
	// Gmail: 421 4.3.0 Temporary System Problem with too many parallel sessions.
	{421, "4.3.0", []string{"temporary system problem"}, Verdict{Concurrency, true}},
	// Rate replies: 421 4.7.0 / 450 4.2.1 (Gmail "unusual rate", Microsoft throttling).
	{421, "4.7.0", nil, Verdict{Rate, true}},
	{450, "4.2.1", nil, Verdict{Rate, true}},
	{451, "4.7.500", nil, Verdict{Rate, true}},
}

// Classify returns the verdict for an upstream reply. Genuinely permanent
// refusals (such as Microsoft's 554 5.2.252 SendAsDenied) are Normal.
func Classify(r reply.Reply) Verdict {
	if r.Positive() || r.Intermediate() {
		return Verdict{}
	}
	var text string
	for _, rl := range rules {
		if rl.code != r.Code || (rl.enhanced != "" && r.Enhanced != rl.enhanced) {
			continue
		}
		if len(rl.text) == 0 {
			return rl.v
		}
		if text == "" {
			text = strings.ToLower(r.Text())
		}
		for _, t := range rl.text {
			if strings.Contains(text, t) {
				return rl.v
			}
		}
	}
	return Verdict{}
}

// sessionRate matches a 421 4.7.0 at session open that is about the
// account's sending or connecting rate rather than its sessions: Gmail's
// "421 4.7.0 Try again later, closing connection." and its "unusual rate"
// replies (not in PROVIDERS.md's list; the wording Gmail is reported to
// use), Microsoft's throttling.
var sessionRate = rule{421, "4.7.0", []string{"rate", "unusual", "try again later"}, Verdict{Rate, true}}

// ClassifySession is Classify for a reply that refused a new session (at
// the greeting, EHLO or AUTH): there a 421 4.7.0 whose text speaks of rate
// or "try again later" is a rate reply, and any other 421 means "too many
// sessions or connections", whatever its text.
func ClassifySession(r reply.Reply) Verdict {
	if r.Code == 421 {
		if matches(sessionRate, r) {
			return sessionRate.v
		}
		return Verdict{Concurrency, true}
	}
	return Classify(r)
}

// matches reports whether rl matches r.
func matches(rl rule, r reply.Reply) bool {
	if rl.code != r.Code || (rl.enhanced != "" && r.Enhanced != rl.enhanced) {
		return false
	}
	if len(rl.text) == 0 {
		return true
	}
	text := strings.ToLower(r.Text())
	for _, t := range rl.text {
		if strings.Contains(text, t) {
			return true
		}
	}
	return false
}

package account

import (
	"context"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// Budget is one account's sending budgets and cool-downs: the registry's
// quota.Budget (Options.Budget, kept by account_id, so it outlives
// reloads by itself) bound to the account and to the limits of its
// configuration. Without a quota.Budget, or with rate_limiting off for
// the account, it admits everything and keeps no cool-down.
type Budget struct {
	b      quota.Budget
	id     string
	limits quota.Limits
	on     bool
	warmup config.Warmup    // rate_limiting.warmup: lowers the daily budget by date (quota.Ramp)
	now    func() time.Time // Options.Now
}

// current is the limits that apply now: the configured ones, lowered
// by the warm-up ramp while it lasts.
func (b Budget) current() (quota.Limits, *quota.Warmup) {
	if !b.warmup.On() {
		return b.limits, nil
	}
	return quota.Ramp(b.limits, b.warmup, b.now())
}

// noTicket is the Ticket when budgets are off: it reserves nothing.
type noTicket struct{}

func (noTicket) Rcpt(context.Context) (bool, *quota.Denial) { return false, nil }
func (noTicket) RcptRefused()                               {}
func (noTicket) Done(bool)                                  {}

// Admit reserves one message, or says why not. The ticket reserves each
// recipient (Rcpt), refunds one the upstream refused (RcptRefused) and
// ends with the outcome (Done).
func (b Budget) Admit(ctx context.Context) (quota.Ticket, *quota.Denial) {
	if !b.on {
		return noTicket{}, nil
	}
	l, _ := b.current()
	return b.b.Admit(ctx, b.id, l)
}

// Limits are the account's budgets now, the warm-up ramp applied (zero
// when off).
func (b Budget) Limits() quota.Limits {
	l, _ := b.current()
	return l
}

// CoolDown stops new messages for d because the provider said cause; it
// reports whether a cool-down started (budgets on, d > 0).
func (b Budget) CoolDown(cause string, d time.Duration) bool {
	if !b.on || d <= 0 {
		return false
	}
	b.b.CoolDown(b.id, cause, d)
	return true
}

// Status is the account's use of its budgets, for the admin API; false
// when there is no quota.Budget (dry-run).
func (b Budget) Status() (quota.Status, bool) {
	if b.b == nil {
		return quota.Status{}, false
	}
	l, w := b.current()
	st := b.b.Status(b.id, l)
	if w != nil && b.on {
		w.Remaining = l.MessagesPerDay
		for _, u := range st.Budgets {
			if u.Name == "messages_per_day" {
				w.Remaining = max(0, u.Limit-u.Used)
			}
		}
		st.Warmup = w
	}
	return st, true
}

// Lift ends a cool-down now (an operator's action); it reports whether
// the account has budgets to lift one from.
func (b Budget) Lift() bool {
	if b.b == nil {
		return false
	}
	b.b.Clear(b.id)
	return true
}

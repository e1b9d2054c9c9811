package account

import (
	"math"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// Accepted is the recipients the upstream accepted for the account over
// the rolling 24 h of its recipients_per_day budget (counted whatever the
// limit), the denominator of the bounce rate (package feedback); false
// when budgets are off for the account.
func (b Budget) Accepted() (int, bool) {
	if !b.on {
		return 0, false
	}
	st := b.b.Status(b.id, quota.Limits{RecipientsPerDay: math.MaxInt32})
	for _, u := range st.Budgets {
		if u.Name == "recipients_per_day" {
			return u.Used, true
		}
	}
	return 0, false
}

// Clear ends the account's cool-down, whatever started it (the
// operator's resume after a bounce-rate cool-down).
func (b Budget) Clear() {
	if b.b != nil {
		b.b.Clear(b.id)
	}
}

package quota

import (
	"fmt"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// LimitsFor resolves an account's budgets from its rate_limiting block
// (docs/config.md): zero when disabled; the old per-connection rate counts
// once per allowed session; max_messages_per_hour overrides the hourly
// budget.
func LimitsFor(a *config.Account) Limits {
	r := a.RateLimiting
	if !r.Enabled {
		return Limits{}
	}
	l := Limits{
		MessagesPerMinute:    r.MessagesPerMinute,
		MessagesPerHour:      r.MessagesPerHour,
		MessagesPerDay:       r.MessagesPerDay,
		RecipientsPerDay:     r.RecipientsPerDay,
		RecipientsPerMessage: r.RecipientsPerMessage,
	}
	if l.MessagesPerMinute == 0 && r.MessagesPerMinutePerConnection > 0 {
		l.MessagesPerMinute = r.MessagesPerMinutePerConnection * max(1, a.Pool.MaxConnectionsPerAccount)
	}
	if a.MaxMessagesPerHour > 0 {
		l.MessagesPerHour = a.MaxMessagesPerHour
	}
	return l
}

// Human formats a wait for a reply text: "3h12m", "4m05s", "9s".
func Human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", max(1, int(d.Seconds())))
}

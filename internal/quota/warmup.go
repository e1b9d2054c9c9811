package quota

import (
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// Warmup is the state of an account's warm-up ramp at one instant, for
// the admin API and /metrics.
type Warmup struct {
	Day        int  `json:"day"`         // day of the ramp, 1-based (1 = the start date)
	Days       int  `json:"days"`        // length of the ramp in days
	DailyLimit int  `json:"daily_limit"` // today's message limit
	Remaining  int  `json:"remaining"`   // messages still allowed in the rolling 24 h (filled by Status)
	Started    bool `json:"started"`     // false before the start date: day 1's limit applies
}

// Ramp applies w to the account's limits at now: during the ramp the
// daily message budget is the day's entry (or the normal
// messages_per_day, when that is lower); after the last day, l unchanged
// and a nil Warmup. Before the start date day 1's limit applies, so an
// account configured ahead of time does not send at full rate first.
//
// The day derives from the configured start date and the clock only, so
// every process (restarted, reloaded, or another proxy sharing a Redis
// budget) computes the same limits: both Budget implementations apply the
// ramp by receiving these Limits.
func Ramp(l Limits, w config.Warmup, now time.Time) (Limits, *Warmup) {
	if !w.On() {
		return l, nil
	}
	day := 0
	started := !now.Before(w.Start)
	if started {
		day = int(now.Sub(w.Start) / (24 * time.Hour))
	}
	if day >= len(w.Daily) {
		return l, nil
	}
	limit := w.Daily[day]
	if l.MessagesPerDay > 0 && l.MessagesPerDay < limit {
		limit = l.MessagesPerDay
	}
	l.MessagesPerDay = limit
	return l, &Warmup{Day: day + 1, Days: len(w.Daily), DailyLimit: limit, Started: started}
}

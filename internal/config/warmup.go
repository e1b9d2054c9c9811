package config

import (
	"encoding/json"
	"time"
)

// Warmup is "rate_limiting.warmup": a new account's daily message budget
// rising from a start date, one entry per day, after which the normal
// budget applies. Day 0 is the start date (UTC); Daily[d] is the day's
// message limit (never above the normal messages_per_day when that is
// set). Zero (no start or no days) means no ramp. quota.Ramp turns it
// into the limits of a given instant, so the ramp follows the calendar:
// a restart, a reload or another proxy of the cluster computes the same
// day.
type Warmup struct {
	Start time.Time // "start": "2026-12-01" (a date, UTC) or an RFC 3339 time
	Daily []int     // "daily": e.g. [50, 100, 200, 400, 800, 1500, 2000]
}

// On reports whether the ramp is configured.
func (w Warmup) On() bool { return !w.Start.IsZero() && len(w.Daily) > 0 }

// maxWarmupDays bounds the ramp: a year is far longer than any provider's
// reputation building needs.
const maxWarmupDays = 366

func parseWarmup(o *object, w *Warmup) {
	if o == nil {
		return
	}
	var start string
	if o.str("start", &start) {
		t, err := time.Parse(time.DateOnly, start)
		if err != nil {
			t, err = time.Parse(time.RFC3339, start)
		}
		if err != nil {
			o.errorf("start", "must be a date like 2026-12-01 or an RFC 3339 time, not %q", start)
		} else {
			w.Start = t.UTC()
		}
	}
	if v, ok := o.get("daily"); ok {
		arr, isArr := v.([]any)
		switch {
		case !isArr:
			o.errorf("daily", "must be an array of daily message limits, not %s", jsonType(v))
		case len(arr) == 0 || len(arr) > maxWarmupDays:
			o.errorf("daily", "must list 1 to %d daily limits, not %d", maxWarmupDays, len(arr))
		default:
			days := make([]int, 0, len(arr))
			for i, e := range arr {
				n, ok := wholeOf(e)
				if !ok || n < 1 {
					o.errorf("daily", "entry %d must be a whole number of messages of at least 1, not %v", i, e)
					return
				}
				days = append(days, n)
			}
			w.Daily = days
		}
	}
	if w.Start.IsZero() != (len(w.Daily) == 0) {
		o.errorf("start", "warmup needs both start and daily")
	}
	o.finish()
}

// wholeOf reads one JSON number as a count.
func wholeOf(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	if err != nil || i > maxCount {
		return 0, false
	}
	return int(i), true
}

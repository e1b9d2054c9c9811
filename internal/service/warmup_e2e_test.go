package service_test

import (
	"strings"
	"testing"
	"time"
)

// TestWarmup_rampLimitsTheDayAndShowsInMetrics: an account on day 1 of a
// warm-up ramp of [1, 5] sends one message, the next MAIL is refused
// with the daily budget, and /metrics shows the day, limit and
// remaining budget. Without the ramp Gmail's 2,000 a day would apply.
func TestWarmup_rampLimitsTheDayAndShowsInMetrics(t *testing.T) {
	t.Parallel()
	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	e := newEnv(t, withBudget(map[string]any{"warmup": map[string]any{"start": start, "daily": []int{1, 5}}}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	if got := sendOne(c, userA, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("first message: %q", got)
	}
	if got := c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0"); !strings.Contains(got, "daily message budget exhausted") {
		t.Fatalf("second MAIL: %q", got)
	}
	mfs, err := e.svc.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"account_warmup_day": 1, "account_warmup_daily_limit": 1, "account_warmup_remaining": 0}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		delete(want, mf.GetName())
		if len(mf.Metric) != 1 || mf.Metric[0].GetLabel()[0].GetValue() != "alice" || mf.Metric[0].GetGauge().GetValue() != w {
			t.Errorf("%s = %v, want one series for alice = %v", mf.GetName(), mf.Metric, w)
		}
	}
	if len(want) != 0 {
		t.Errorf("metrics missing: %v", want)
	}
}

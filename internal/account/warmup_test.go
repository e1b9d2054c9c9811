package account_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// TestBudget_warmupRamp: during the ramp the account sends no more than
// the day's entry per 24 h; the day follows the configured start date and
// the clock, not the process; after the ramp the normal budget applies.
func TestBudget_warmupRamp(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ramp := config.Warmup{Start: start, Daily: []int{2, 4, 8}}
	for _, tc := range []struct {
		name    string
		at      time.Time
		admit   int // messages admitted before the first refusal
		day     int // 0: no ramp in the status
		normal  int // messages_per_day configured
		limitIs int // daily limit shown
	}{
		{"before the start: day 1's limit", start.Add(-48 * time.Hour), 2, 1, 100, 2},
		{"day 1", start.Add(time.Hour), 2, 1, 100, 2},
		{"day 2, late", start.Add(47 * time.Hour), 4, 2, 100, 4},
		{"day 3", start.Add(50 * time.Hour), 8, 3, 100, 8},
		{"day 3 with a lower normal budget", start.Add(50 * time.Hour), 5, 3, 5, 5},
		{"after the ramp: the normal budget", start.Add(73 * time.Hour), 10, 0, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := func() time.Time { return tc.at }
			a := config.Account{ID: "a", Email: "a@example.com", RateLimiting: config.RateLimiting{
				Enabled: true, MessagesPerDay: tc.normal, Warmup: ramp,
			}}
			r, err := account.NewRegistry(snapOf(a), noRuntime, account.Options{Budget: quota.NewBook(now), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			b := r.Lookup("a").Budget()
			if got := sendUntilRefused(t, b, 50); got != tc.admit {
				t.Errorf("admitted %d messages, want %d", got, tc.admit)
			}
			st, _ := b.Status()
			switch {
			case tc.day == 0 && st.Warmup != nil:
				t.Errorf("warmup status after the ramp: %+v", st.Warmup)
			case tc.day != 0 && st.Warmup == nil:
				t.Error("no warmup in the status during the ramp")
			case tc.day != 0 && (st.Warmup.Day != tc.day || st.Warmup.DailyLimit != tc.limitIs || st.Warmup.Remaining != 0 || st.Warmup.Days != 3):
				t.Errorf("warmup status = %+v, want day %d, limit %d, remaining 0", st.Warmup, tc.day, tc.limitIs)
			}
			if got := b.Limits().MessagesPerDay; got != tc.limitIs {
				t.Errorf("Limits().MessagesPerDay = %d, want %d", got, tc.limitIs)
			}
		})
	}
}

// TestBudget_warmupAcrossRestart: a restarted proxy (new registry, budget
// counters loaded from the saved state) keeps the day's ramp limit: the
// messages sent before the restart count against it.
func TestBudget_warmupAcrossRestart(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := start.Add(25 * time.Hour) // day 2: limit 4
	now := func() time.Time { return clock }
	a := config.Account{ID: "a", Email: "a@example.com", RateLimiting: config.RateLimiting{
		Enabled: true, MessagesPerDay: 2000, Warmup: config.Warmup{Start: start, Daily: []int{2, 4, 8}},
	}}
	book := quota.NewBook(now)
	r, err := account.NewRegistry(snapOf(a), noRuntime, account.Options{Budget: book, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if got := sendUntilRefused(t, r.Lookup("a").Budget(), 3); got != 3 {
		t.Fatalf("admitted %d of 3 before the restart", got)
	}
	var saved bytes.Buffer
	if err := book.Save(&saved); err != nil {
		t.Fatal(err)
	}

	clock = clock.Add(time.Hour) // still day 2
	book2 := quota.NewBook(now)
	if err := book2.Load(&saved); err != nil {
		t.Fatal(err)
	}
	r2, err := account.NewRegistry(snapOf(a), noRuntime, account.Options{Budget: book2, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	b := r2.Lookup("a").Budget()
	if got := sendUntilRefused(t, b, 10); got != 1 {
		t.Errorf("after the restart admitted %d, want 1 (day 2 allows 4, 3 were sent)", got)
	}
	st, _ := b.Status()
	if st.Warmup == nil || st.Warmup.Day != 2 || st.Warmup.Remaining != 0 {
		t.Errorf("warmup status after the restart = %+v", st.Warmup)
	}
}

// sendUntilRefused admits and completes messages until the budget
// refuses one or max were sent; it returns how many were admitted.
func sendUntilRefused(t *testing.T, b account.Budget, max int) int {
	t.Helper()
	for i := range max {
		tk, d := b.Admit(context.Background())
		if d != nil {
			if d.Limit != "daily message budget" {
				t.Errorf("refused by %q, want the daily message budget", d.Limit)
			}
			return i
		}
		tk.Done(true)
	}
	return max
}

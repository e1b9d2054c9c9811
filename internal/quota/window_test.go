package quota_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// TestWindow_countNeverLeavesBeforeItsSpan: a count made late in its
// bucket (100 ms before the bucket ends) still counts a full span later
// (the provider's rolling window), on every window. Without the ring's
// extra bucket the count would leave with its bucket, up to a bucket
// early.
func TestWindow_countNeverLeavesBeforeItsSpan(t *testing.T) {
	t.Parallel()
	const late = 100 * time.Millisecond
	tests := []struct {
		name   string
		l      quota.Limits
		span   time.Duration
		bucket time.Duration
	}{
		{"minute", quota.Limits{MessagesPerMinute: 1}, time.Minute, time.Second},
		{"hour", quota.Limits{MessagesPerHour: 1}, time.Hour, time.Minute},
		{"day", quota.Limits{MessagesPerDay: 1}, 24 * time.Hour, 10 * time.Minute},
		{"day recipients", quota.Limits{RecipientsPerDay: 1}, 24 * time.Hour, 10 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock() // 12:00:00, on a bucket boundary of every window
			c.add(tc.bucket - late)
			b := quota.NewBook(c.now)
			if d := send(t, b, "a", tc.l, 1); d != nil {
				t.Fatal(d)
			}
			c.add(tc.span - 2*late)
			if _, d := b.Admit(t.Context(), "a", tc.l); d == nil {
				t.Fatalf("admitted %v after the only allowed message, before its %v span ended", tc.span-2*late, tc.span)
			}
			c.add(2*late + tc.bucket) // one bucket after the span
			if d := send(t, b, "a", tc.l, 1); d != nil {
				t.Fatalf("still refused a bucket after the span: %+v", d)
			}
		})
	}
}

// TestWindow_dailyRecipientsRefillAfter24h: fill the daily recipient
// budget, and the room comes back once 24 h (plus at most one bucket)
// have passed since the recipients were sent, not before.
func TestWindow_dailyRecipientsRefillAfter24h(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := quota.NewBook(c.now)
	l := quota.Limits{RecipientsPerDay: 10}
	if d := send(t, b, "a", l, 6); d != nil {
		t.Fatal(d)
	}
	c.add(3 * time.Hour)
	if d := send(t, b, "a", l, 4); d != nil {
		t.Fatal(d)
	}
	_, d := b.Admit(t.Context(), "a", l)
	if d == nil || d.Limit != "daily recipient budget" {
		t.Fatalf("admit with 10 of 10 recipients used: %+v", d)
	}
	if d.ResetIn != 21*time.Hour+10*time.Minute {
		t.Errorf("resets in %v, want 21h10m (the first 6 leave 24 h and a bucket after they were sent)", d.ResetIn)
	}
	c.add(21*time.Hour - time.Second) // 24 h after the first 6, less a second
	if _, d := b.Admit(t.Context(), "a", l); d == nil {
		t.Fatal("room before 24 h had passed")
	}
	c.add(10*time.Minute + time.Second) // past 24 h plus the 10-minute bucket
	tk, d := b.Admit(t.Context(), "a", l)
	if d != nil {
		t.Fatalf("no room after 24 h: %+v", d)
	}
	for i := 0; i < 6; i++ {
		if tooMany, d := tk.Rcpt(t.Context()); tooMany || d != nil {
			t.Fatalf("recipient %d of the freed 6: %v %+v", i, tooMany, d)
		}
	}
	if _, d := tk.Rcpt(t.Context()); d == nil {
		t.Fatal("a 7th recipient fitted while the later 4 are still in the window")
	}
	tk.Done(true)
	c.add(3 * time.Hour) // the later 4 have left as well
	if st := b.Status("a", l); st.Budgets[0].Used != 6 {
		t.Fatalf("used %d, want the 6 sent after the refill", st.Budgets[0].Used)
	}
}

// TestLoad_stateWithoutTheExtraBucket: budgets.json written before the
// rings had their extra bucket loads, and keeps its counts.
func TestLoad_stateWithoutTheExtraBucket(t *testing.T) {
	t.Parallel()
	c := newClock()
	head := func(bucket int64) int64 { return c.now().Unix() / bucket }
	ring := func(n int, bucket int64) map[string]any {
		counts := make([]int32, n)
		counts[head(bucket)%int64(n)] = 2 // two messages now
		return map[string]any{"bucket_s": bucket, "counts": counts, "head": head(bucket)}
	}
	old, err := json.Marshal(map[string]any{"version": 1, "accounts": map[string]any{"a": map[string]any{
		"msg_minute": ring(60, 1), "msg_hour": ring(60, 60), "msg_day": ring(144, 600), "rcpt_day": ring(144, 600),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	b := quota.NewBook(c.now)
	if err := b.Load(bytes.NewReader(old)); err != nil {
		t.Fatalf("old state refused: %v", err)
	}
	l := quota.Limits{MessagesPerMinute: 100, MessagesPerHour: 100, MessagesPerDay: 100, RecipientsPerDay: 100}
	for _, u := range b.Status("a", l).Budgets {
		if u.Used != 2 {
			t.Errorf("%s: used %d after loading, want 2", u.Name, u.Used)
		}
	}
	c.add(time.Hour)
	if d := send(t, b, "a", l, 1); d != nil {
		t.Fatal(d)
	}
}

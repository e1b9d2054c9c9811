package quota_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)} }

// send admits and completes one accepted message with n recipients.
func send(t *testing.T, b *quota.Book, acct string, l quota.Limits, n int) *quota.Denial {
	t.Helper()
	tk, d := b.Admit(t.Context(), acct, l)
	if d != nil {
		return d
	}
	for i := 0; i < n; i++ {
		if tooMany, d := tk.Rcpt(t.Context()); tooMany || d != nil {
			t.Fatalf("rcpt %d refused: %v %+v", i, tooMany, d)
		}
	}
	tk.Done(true)
	return nil
}

func TestWindows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		l         quota.Limits
		step      time.Duration // clock advance between messages
		allowed   int           // messages before the denial
		limit     string
		resetIn   time.Duration // the oldest message's span plus one bucket (window.go)
		afterWait time.Duration // wait that admits again
	}{
		{"per minute", quota.Limits{MessagesPerMinute: 30}, time.Second, 30, "per-minute message budget", 32 * time.Second, 32 * time.Second},
		{"per hour", quota.Limits{MessagesPerHour: 10}, time.Minute, 10, "hourly message budget", 52 * time.Minute, 52 * time.Minute},
		{"per day", quota.Limits{MessagesPerDay: 5}, time.Hour, 5, "daily message budget", 20*time.Hour + 10*time.Minute, 20*time.Hour + 10*time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			b := quota.NewBook(c.now)
			for i := 0; i < tc.allowed; i++ {
				if d := send(t, b, "a", tc.l, 1); d != nil {
					t.Fatalf("message %d denied: %+v", i, d)
				}
				c.add(tc.step)
			}
			c.add(-tc.step)
			d := send(t, b, "a", tc.l, 1)
			if d == nil || d.Limit != tc.limit {
				t.Fatalf("over the limit: %+v", d)
			}
			if d.ResetIn != tc.resetIn {
				t.Errorf("reset in %v, want %v", d.ResetIn, tc.resetIn)
			}
			if send(t, b, "other", tc.l, 1) != nil {
				t.Error("another account affected")
			}
			c.add(tc.afterWait - time.Second)
			if send(t, b, "a", tc.l, 1) == nil {
				t.Error("admitted a second early")
			}
			c.add(time.Second)
			if d := send(t, b, "a", tc.l, 1); d != nil {
				t.Errorf("not admitted after the reset: %+v", d)
			}
		})
	}
}

func TestRecipients(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := quota.NewBook(c.now)
	l := quota.Limits{RecipientsPerDay: 10, RecipientsPerMessage: 4}
	tk, d := b.Admit(t.Context(), "a", l)
	if d != nil {
		t.Fatal(d)
	}
	for i := 0; i < 4; i++ {
		if tooMany, d := tk.Rcpt(t.Context()); tooMany || d != nil {
			t.Fatal(i, tooMany, d)
		}
	}
	if tooMany, _ := tk.Rcpt(t.Context()); !tooMany {
		t.Fatal("5th recipient of a message allowed over RecipientsPerMessage 4")
	}
	tk.RcptRefused() // the upstream refused one: it does not count
	tk.Done(true)    // 3 accepted
	if st := b.Status("a", l); st.Budgets[0].Used != 3 {
		t.Fatalf("recipients counted %d, want 3", st.Budgets[0].Used)
	}
	tk2, _ := b.Admit(t.Context(), "a", l)
	for i := 0; i < 4; i++ {
		tk2.Rcpt(t.Context())
	}
	tk2.Done(false) // upstream refused the message: nothing counts
	send(t, b, "a", l, 4)
	send(t, b, "a", l, 3) // 10 used
	if _, d := b.Admit(t.Context(), "a", l); d == nil || d.Limit != "daily recipient budget" {
		t.Fatalf("admit with the recipient budget used up: %+v", d)
	}
}

func TestReservationsPreventOvershoot(t *testing.T) {
	t.Parallel()
	b := quota.NewBook(newClock().now)
	l := quota.Limits{MessagesPerDay: 5}
	var tickets []quota.Ticket
	for i := 0; i < 10; i++ {
		if tk, d := b.Admit(t.Context(), "a", l); d == nil {
			tickets = append(tickets, tk)
		}
	}
	if len(tickets) != 5 {
		t.Fatalf("%d messages in flight admitted for a budget of 5", len(tickets))
	}
	tickets[0].Done(false) // failed upstream: its slot comes back
	if _, d := b.Admit(t.Context(), "a", l); d != nil {
		t.Fatalf("slot of a failed message not given back: %+v", d)
	}
}

func TestCoolDown(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := quota.NewBook(c.now)
	b.CoolDown("a", "550 5.4.5 Daily user sending limit exceeded", 24*time.Hour)
	_, d := b.Admit(t.Context(), "a", quota.Limits{})
	if d == nil || !d.Cooldown() || d.ResetIn != 24*time.Hour || !strings.Contains(d.Cause, "5.4.5") {
		t.Fatalf("%+v", d)
	}
	if _, d := b.Admit(t.Context(), "b", quota.Limits{}); d != nil {
		t.Fatal("cool-down spilled onto another account")
	}
	c.add(24 * time.Hour)
	if _, d := b.Admit(t.Context(), "a", quota.Limits{}); d != nil {
		t.Fatalf("still cooling after 24h: %+v", d)
	}
}

func TestDisabledLimits(t *testing.T) {
	t.Parallel()
	b := quota.NewBook(newClock().now)
	for i := 0; i < 5000; i++ {
		if d := send(t, b, "a", quota.Limits{}, 3); d != nil {
			t.Fatalf("zero limits denied: %+v", d)
		}
	}
}

func TestSaveLoadSurvivesRestart(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := quota.NewBook(c.now)
	l := quota.Limits{MessagesPerDay: 3}
	send(t, b, "a", l, 1)
	send(t, b, "a", l, 1)
	b.CoolDown("c", "421 4.7.0 rate", time.Hour)
	var buf bytes.Buffer
	if err := b.Save(&buf); err != nil {
		t.Fatal(err)
	}
	b2 := quota.NewBook(c.now)
	if err := b2.Load(&buf); err != nil {
		t.Fatal(err)
	}
	send(t, b2, "a", l, 1)
	if d := send(t, b2, "a", l, 1); d == nil {
		t.Fatal("counts lost across the restart")
	}
	if _, d := b2.Admit(t.Context(), "c", quota.Limits{}); d == nil || !d.Cooldown() {
		t.Fatal("cool-down lost across the restart")
	}
	if err := quota.NewBook(nil).Load(strings.NewReader(`{"version":1,"accounts":{"x":{"msg_minute":{"bucket_s":1,"counts":[1]}}}}`)); err == nil {
		t.Fatal("malformed state accepted")
	}
}

func FuzzLoad(f *testing.F) {
	var buf bytes.Buffer
	b := quota.NewBook(newClock().now)
	send(&testing.T{}, b, "a", quota.Limits{}, 2)
	_ = b.Save(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"version":1,"accounts":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := quota.NewBook(newClock().now)
		if err := b.Load(bytes.NewReader(data)); err != nil {
			return
		}
		// Whatever loaded must be usable.
		tk, _ := b.Admit(t.Context(), "a", quota.Limits{MessagesPerDay: 10, RecipientsPerDay: 10})
		if tk != nil {
			tk.Rcpt(t.Context())
			tk.Done(true)
		}
		b.Status("a", quota.Limits{MessagesPerMinute: 1, MessagesPerHour: 1, MessagesPerDay: 1, RecipientsPerDay: 1})
	})
}

func BenchmarkAdmit1000Accounts(b *testing.B) {
	book := quota.NewBook(nil)
	l := quota.Limits{MessagesPerMinute: 1 << 30, MessagesPerDay: 1 << 30, RecipientsPerDay: 1 << 30, RecipientsPerMessage: 100}
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "acct" + string(rune('a'+i%26)) + time.Duration(i).String()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk, _ := book.Admit(b.Context(), ids[i%len(ids)], l)
		tk.Rcpt(b.Context())
		tk.Done(true)
	}
}

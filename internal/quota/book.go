package quota

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Limits are one account's budgets; 0 means no limit.
type Limits struct {
	MessagesPerMinute    int
	MessagesPerHour      int
	MessagesPerDay       int
	RecipientsPerDay     int
	RecipientsPerMessage int
}

// Denial says why a message or recipient may not be sent now.
type Denial struct {
	Limit   string        // e.g. "daily recipient budget", or "cooling down"
	ResetIn time.Duration // when it may be tried again
	Until   time.Time
	Cause   string // for a cool-down: what the provider said
}

// Cooldown reports a denial caused by a provider's reply.
func (d *Denial) Cooldown() bool { return d.Cause != "" }

// Error makes a Denial an error, for the refusal that answers it.
func (d *Denial) Error() string {
	if d.Cooldown() {
		return "cooling down after the provider said: " + d.Cause
	}
	return d.Limit + " exhausted, resets in " + Human(d.ResetIn)
}

// Budget keeps the accounts' sending budgets. Book implements it in
// memory for one process; a store shared by several proxies (Redis) is
// another implementation of the same methods.
type Budget interface {
	// Admit reserves one message for account, or says why not. ctx bounds
	// a shared store's round trip (the in-memory Book never blocks).
	Admit(ctx context.Context, account string, l Limits) (Ticket, *Denial)
	// CoolDown stops new messages for account for d, because of cause.
	CoolDown(account, cause string, d time.Duration)
	// Clear ends a cool-down.
	Clear(account string)
	// Status is account's use of each budget, for the admin API.
	Status(account string, l Limits) Status
}

// Ticket is one admitted message's reservation, ended by Done.
type Ticket interface {
	// Rcpt reserves one more recipient of the message, or says why not.
	// A nil Denial with tooMany set means the per-message limit
	// (452 4.5.3).
	Rcpt(ctx context.Context) (tooMany bool, d *Denial)
	// RcptRefused returns the last reserved recipient: the upstream
	// refused it.
	RcptRefused()
	// Done ends the reservation; only the first call counts. When the
	// upstream accepted the message, it counts as one message and its
	// remaining recipients as accepted ones.
	Done(accepted bool)
}

// Book is the local, in-memory Budget.
type Book struct {
	mu    sync.Mutex
	now   func() time.Time
	accts map[string]*usage
}

// usage is one account's counters. Book.mu guards it.
type usage struct {
	MsgMinute *window   `json:"msg_minute"`
	MsgHour   *window   `json:"msg_hour"`
	MsgDay    *window   `json:"msg_day"`
	RcptDay   *window   `json:"rcpt_day"`
	CoolUntil time.Time `json:"cool_until,omitzero"`
	CoolCause string    `json:"cool_cause,omitempty"`
	pendMsgs  int
	pendRcpts int
}

func newUsage() *usage {
	return &usage{
		MsgMinute: newWindow(time.Minute, time.Second),
		MsgHour:   newWindow(time.Hour, time.Minute),
		MsgDay:    newWindow(24*time.Hour, 10*time.Minute),
		RcptDay:   newWindow(24*time.Hour, 10*time.Minute),
	}
}

// NewBook returns an empty book; now nil means time.Now.
func NewBook(now func() time.Time) *Book {
	if now == nil {
		now = time.Now
	}
	return &Book{now: now, accts: map[string]*usage{}}
}

func (b *Book) get(account string) *usage {
	u := b.accts[account]
	if u == nil {
		u = newUsage()
		b.accts[account] = u
	}
	return u
}

// bookTicket is a Book's Ticket.
type bookTicket struct {
	b       *Book
	account string
	l       Limits
	rcpts   int // recipients reserved
	done    bool
}

// Admit reserves one message for account, or says why not.
func (b *Book) Admit(_ context.Context, account string, l Limits) (Ticket, *Denial) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	u := b.get(account)
	if now.Before(u.CoolUntil) {
		return nil, &Denial{Limit: "cooling down", Until: u.CoolUntil, ResetIn: u.CoolUntil.Sub(now), Cause: u.CoolCause}
	}
	sec := now.Unix()
	for _, c := range []struct {
		name  string
		w     *window
		limit int
		room  int
	}{
		{"per-minute message budget", u.MsgMinute, l.MessagesPerMinute, u.pendMsgs + 1},
		{"hourly message budget", u.MsgHour, l.MessagesPerHour, u.pendMsgs + 1},
		{"daily message budget", u.MsgDay, l.MessagesPerDay, u.pendMsgs + 1},
		{"daily recipient budget", u.RcptDay, l.RecipientsPerDay, u.pendRcpts + 1},
	} {
		if c.limit > 0 && c.w.sum(sec)+c.room > c.limit {
			d := c.w.freeIn(sec, c.limit, c.room)
			if d <= 0 {
				d = time.Second // only reservations in flight: soon
			}
			return nil, &Denial{Limit: c.name, ResetIn: d, Until: now.Add(d)}
		}
	}
	u.pendMsgs++
	return &bookTicket{b: b, account: account, l: l}, nil
}

// Rcpt reserves one more recipient of the message, or says why not. A
// nil Denial with tooMany set means the per-message limit (452 4.5.3).
func (t *bookTicket) Rcpt(context.Context) (tooMany bool, d *Denial) {
	if t.l.RecipientsPerMessage > 0 && t.rcpts >= t.l.RecipientsPerMessage {
		return true, nil
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	u := b.get(t.account)
	if l := t.l.RecipientsPerDay; l > 0 && u.RcptDay.sum(now.Unix())+u.pendRcpts+1 > l {
		in := u.RcptDay.freeIn(now.Unix(), l, u.pendRcpts+1)
		if in <= 0 {
			in = time.Second
		}
		return false, &Denial{Limit: "daily recipient budget", ResetIn: in, Until: now.Add(in)}
	}
	u.pendRcpts++
	t.rcpts++
	return false, nil
}

// RcptRefused releases a recipient reservation the upstream refused.
func (t *bookTicket) RcptRefused() {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.rcpts > 0 {
		t.rcpts--
		b.get(t.account).pendRcpts--
	}
}

// Done ends the reservation. When the upstream accepted the message, it
// counts as one message and its remaining recipients as accepted ones.
func (t *bookTicket) Done(accepted bool) {
	if t == nil || t.done {
		return
	}
	t.done = true
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.get(t.account)
	u.pendMsgs--
	u.pendRcpts -= t.rcpts
	if !accepted {
		return
	}
	sec := b.now().Unix()
	u.MsgMinute.add(sec, 1)
	u.MsgHour.add(sec, 1)
	u.MsgDay.add(sec, 1)
	u.RcptDay.add(sec, t.rcpts)
}

// CoolDown stops new messages for account for d, because of cause.
func (b *Book) CoolDown(account, cause string, d time.Duration) {
	if d <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.get(account)
	until := b.now().Add(d)
	if until.After(u.CoolUntil) {
		u.CoolUntil, u.CoolCause = until, cause
	}
}

// Clear ends a cool-down (admin action).
func (b *Book) Clear(account string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u := b.accts[account]; u != nil {
		u.CoolUntil, u.CoolCause = time.Time{}, ""
	}
}

// Use is one budget's state for display.
type Use struct {
	Name    string    `json:"name"`
	Used    int       `json:"used"`
	Limit   int       `json:"limit"`
	ResetAt time.Time `json:"reset_at,omitzero"` // when at least one more fits, if none does now
}

// Status is an account's budgets and cool-down.
type Status struct {
	Budgets       []Use     `json:"budgets"`
	CoolingUntil  time.Time `json:"cooling_down_until,omitzero"`
	CoolingCause  string    `json:"cooling_down_cause,omitempty"`
	NearOrAtLimit bool      `json:"near_or_at_limit"` // some budget is 80% used or more, or cooling down
	Warmup        *Warmup   `json:"warmup,omitempty"` // the warm-up ramp, while it lasts (set by the caller of Status: Ramp)
}

// Status reports account's use of l.
func (b *Book) Status(account string, l Limits) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	sec := now.Unix()
	u := b.accts[account]
	if u == nil {
		u = newUsage()
	}
	var st Status
	for _, c := range []struct {
		name  string
		w     *window
		limit int
	}{
		{"messages_per_minute", u.MsgMinute, l.MessagesPerMinute},
		{"messages_per_hour", u.MsgHour, l.MessagesPerHour},
		{"messages_per_day", u.MsgDay, l.MessagesPerDay},
		{"recipients_per_day", u.RcptDay, l.RecipientsPerDay},
	} {
		if c.limit == 0 {
			continue
		}
		use := Use{Name: c.name, Used: c.w.sum(sec), Limit: c.limit}
		if use.Used >= c.limit {
			use.ResetAt = now.Add(c.w.freeIn(sec, c.limit, 1))
		}
		if use.Used*5 >= c.limit*4 {
			st.NearOrAtLimit = true
		}
		st.Budgets = append(st.Budgets, use)
	}
	if now.Before(u.CoolUntil) {
		st.CoolingUntil, st.CoolingCause, st.NearOrAtLimit = u.CoolUntil, u.CoolCause, true
	}
	return st
}

// Save writes the counters (not the reservations in flight) as JSON.
func (b *Book) Save(w io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return json.NewEncoder(w).Encode(struct {
		Version  int               `json:"version"`
		Accounts map[string]*usage `json:"accounts"`
	}{1, b.accts})
}

// Load replaces the counters with those Save wrote.
func (b *Book) Load(r io.Reader) error {
	var f struct {
		Version  int               `json:"version"`
		Accounts map[string]*usage `json:"accounts"`
	}
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return fmt.Errorf("budget state: %w", err)
	}
	if f.Version != 1 {
		return fmt.Errorf("budget state: unknown version %d", f.Version)
	}
	fresh := newUsage()
	for id, u := range f.Accounts {
		if u == nil || !sameShape(u.MsgMinute, fresh.MsgMinute) || !sameShape(u.MsgHour, fresh.MsgHour) ||
			!sameShape(u.MsgDay, fresh.MsgDay) || !sameShape(u.RcptDay, fresh.RcptDay) {
			return fmt.Errorf("budget state: account %s: malformed windows", id)
		}
		for _, w := range []struct{ got, want *window }{
			{u.MsgMinute, fresh.MsgMinute}, {u.MsgHour, fresh.MsgHour}, {u.MsgDay, fresh.MsgDay}, {u.RcptDay, fresh.RcptDay},
		} {
			if len(w.got.Counts) != len(w.want.Counts) {
				w.got.widen(len(w.want.Counts))
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, u := range f.Accounts {
		old := b.accts[id]
		if old != nil {
			u.pendMsgs, u.pendRcpts = old.pendMsgs, old.pendRcpts
		}
		b.accts[id] = u
	}
	return nil
}

// sameShape reports whether w fits want's layout: the same bucket, and
// the same number of buckets or one fewer (state saved before windows had
// their extra bucket; Load widens it).
func sameShape(w, want *window) bool {
	if w == nil {
		return false
	}
	n := len(w.Counts)
	return w.Bucket == want.Bucket && (n == len(want.Counts) || n == len(want.Counts)-1) && w.Head >= 0
}

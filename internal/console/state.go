package console

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// The states an account is shown in, in the order of the overview.
const (
	StateOK           = "ok"
	StateRefreshing   = "refreshing"
	StateRetrying     = "retrying"
	StateNeedsConsent = "needs_consent"
	StateDisabled     = "disabled"
	StateCoolingDown  = "cooling_down"
)

// States lists the states in display order.
var States = []string{StateOK, StateRefreshing, StateRetrying, StateNeedsConsent, StateDisabled, StateCoolingDown}

// row is what the console shows of one account: no secret, built field
// by field.
type row struct {
	ID, Email, Provider string
	State               string
	Token               admin.TokenStatus
	Sessions            account.SessionStats
	InFlight            int64
	Budget              quota.Status
	HasBudget           bool
	// Day is the use of the daily message budget (or the most used one
	// when there is no daily budget); Limit 0 when none.
	Day quota.Use
	// LastError is the latest failure in words, and when it happened
	// (zero when unknown).
	LastError   string
	LastErrorAt time.Time
	Disabled    bool
}

// rowOf reads one account's live state.
func (c *Console) rowOf(a *account.Account, now time.Time) row {
	r := row{ID: a.Cfg.ID, Email: a.Cfg.Email, Provider: a.Cfg.Provider, Disabled: a.Cfg.Disabled,
		Token: c.b.TokenStatus(a), Sessions: a.SessionStats(), InFlight: a.Inflight()}
	r.Budget, r.HasBudget = c.b.Budget(a)
	for _, u := range r.Budget.Budgets {
		if u.Name == "messages_per_day" || r.Day.Limit == 0 ||
			(r.Day.Name != "messages_per_day" && u.Used*r.Day.Limit > r.Day.Used*u.Limit) {
			r.Day = u
		}
	}
	cooling := now.Before(r.Budget.CoolingUntil)
	switch {
	case r.Disabled || r.Token.State == StateDisabled:
		r.State = StateDisabled
	case r.Token.State == StateNeedsConsent:
		r.State = StateNeedsConsent
	case cooling:
		r.State = StateCoolingDown
	case r.Token.State == StateRetrying:
		r.State = StateRetrying
	case r.Token.State == StateRefreshing:
		r.State = StateRefreshing
	default:
		r.State = StateOK
	}
	if r.Token.LastError != "" {
		r.LastError = "token: " + r.Token.LastError
	}
	if lr, ok := a.LastReply(); ok && !strings.HasPrefix(lr.Text, "2") {
		if r.LastError == "" {
			r.LastError, r.LastErrorAt = "upstream: "+lr.Text, lr.At
		}
	}
	if cooling && r.LastError == "" {
		r.LastError = "provider: " + r.Budget.CoolingCause
	}
	return r
}

// attention is an account that needs an operator, with its urgency.
type attention struct {
	adminclient.Attention
	rank int
}

// needs says why r needs attention, and how urgently (lower first);
// false when it does not.
func needs(r row, now time.Time) (attention, bool) {
	at := attention{Attention: adminclient.Attention{AccountID: r.ID, Email: r.Email, State: r.State}}
	switch {
	case r.State == StateDisabled:
		return at, false // the operator's own doing
	case r.State == StateNeedsConsent:
		at.rank = 0
		at.Reason = "refresh token refused"
		if !r.Token.LastRefresh.IsZero() {
			at.Reason += " (last good refresh " + day(r.Token.LastRefresh) + ")"
		}
		at.Reason += ": needs consent"
		if r.Token.LastError != "" {
			at.Reason += " — " + r.Token.LastError
		}
	case r.State == StateCoolingDown:
		at.rank = 1
		at.Reason = "cooling down until " + clock(r.Budget.CoolingUntil, now) + " after the provider said: " + r.Budget.CoolingCause
	case r.State == StateRetrying:
		at.rank = 2
		at.Reason = fmt.Sprintf("token requests failing (%d in a row)", r.Token.Failures)
		if r.Token.LastError != "" {
			at.Reason += ": " + r.Token.LastError
		}
		if !r.Token.NextRefresh.IsZero() {
			at.Reason += "; next try " + clock(r.Token.NextRefresh, now)
		}
	default:
		for _, u := range r.Budget.Budgets {
			if !u.ResetAt.IsZero() {
				at.rank = 3
				at.State = "budget_used"
				at.Reason = budgetWords(u.Name) + " used, resets " + clock(u.ResetAt, now)
				return at, true
			}
		}
		return at, false
	}
	return at, true
}

// budgetWords names a quota budget for people.
func budgetWords(name string) string {
	switch name {
	case "messages_per_minute":
		return "per-minute message budget"
	case "messages_per_hour":
		return "hourly message budget"
	case "messages_per_day":
		return "daily budget"
	case "recipients_per_day":
		return "daily recipient budget"
	}
	return name
}

// clock shows a time today as 15:04, another day with its date (UTC).
func clock(t, now time.Time) string {
	t, now = t.UTC(), now.UTC()
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04")
	}
	return t.Format("2 Jan 15:04")
}

func day(t time.Time) string { return t.UTC().Format("2 Jan") }

// Overview is the console's first page and the body of /live and GET
// /admin/overview: numbers only, no secret.
type Overview = adminclient.Overview

// maxAttention bounds the attention list of the overview.
const maxAttention = 50

// overviewNow computes the overview: one pass over the accounts.
func (c *Console) overviewNow() Overview {
	now := c.o.Now()
	ov := Overview{At: now.UTC(), ByState: map[string]int{}, Totals: c.b.MessageTotals(), Minutes: c.b.Traffic(now),
		Attention: []adminclient.Attention{}}
	var att []attention
	for _, s := range States {
		ov.ByState[s] = 0
	}
	all := c.b.Registry().All()
	ov.Accounts = len(all)
	for _, a := range all {
		r := c.rowOf(a, now)
		ov.ByState[r.State]++
		ov.SessionsBusy += r.Sessions.Busy
		ov.SessionsOpen += r.Sessions.Open
		ov.InFlight += r.InFlight
		if at, ok := needs(r, now); ok {
			att = append(att, at)
		}
	}
	for _, m := range ov.Minutes {
		ov.LastHour.Accepted += m.Accepted
		ov.LastHour.Deferred += m.Deferred
		ov.LastHour.Rejected += m.Rejected
	}
	slices.SortStableFunc(att, func(a, b attention) int { return a.rank - b.rank })
	ov.AttentionTotal = len(att)
	for _, a := range att[:min(len(att), maxAttention)] {
		ov.Attention = append(ov.Attention, a.Attention)
	}
	return ov
}

package adminclient

import (
	"context"
	"net/http"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
)

// Overview is the proxy at a glance, as GET /admin/overview and the
// console's live numbers show it: numbers only, never a secret. Package
// console writes this type.
type Overview struct {
	At       time.Time `json:"at"`
	Accounts int       `json:"accounts"`
	// ByState counts the accounts by state: ok, refreshing, retrying,
	// needs_consent, disabled, cooling_down.
	ByState map[string]int `json:"accounts_by_state"`
	// SessionsBusy are the upstream sessions in use; SessionsOpen also
	// counts idle ones.
	SessionsBusy int64 `json:"upstream_sessions_busy"`
	SessionsOpen int64 `json:"upstream_sessions_open"`
	InFlight     int64 `json:"messages_in_flight"`
	// Totals are messages_total's sent, deferred and rejected since
	// start; LastHour and Minutes the same over the last hour.
	Totals   traffic.Totals   `json:"messages_total"`
	LastHour traffic.Totals   `json:"messages_last_hour"`
	Minutes  []traffic.Minute `json:"per_minute"`
	// Attention lists the accounts that need an operator, most urgent
	// first (at most 50); AttentionTotal counts them all.
	Attention      []Attention `json:"attention"`
	AttentionTotal int         `json:"attention_total"`
}

// Attention is one account that needs an operator, and why, in words.
type Attention struct {
	AccountID string `json:"account_id"`
	Email     string `json:"email"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
}

// Overview returns the proxy's overview (GET /admin/overview).
func (c *Client) Overview(ctx context.Context) (Overview, error) {
	var ov Overview
	_, err := c.do(ctx, "GET", "/admin/overview", nil, &ov, http.StatusOK)
	return ov, err
}

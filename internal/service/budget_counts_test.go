package service_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// last is the final reply of a sendOne.
func last(got []string) string { return got[len(got)-1] }

// TestBudget_refusedAtEndOfDataDoesNotCount: messages whose final reply is
// a 5xx or a 4xx were not sent, and leave the message budgets as they
// were: with messages_per_day 2, two refused ones and then two accepted
// ones go through, and only the next is refused.
func TestBudget_refusedAtEndOfDataDoesNotCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBudget(map[string]any{"messages_per_day": 2, "messages_per_minute": 2}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	for _, rcpt := range []string{"faildata-554-5.2.252@example.net", "faildata-451-4.3.0@example.net"} {
		got := sendOne(c, userA, rcpt)
		if code := last(got)[:1]; code != "5" && code != "4" || !strings.HasPrefix(got[2], "354") {
			t.Fatalf("%s: %q", rcpt, got)
		}
	}
	for i := 0; i < 2; i++ {
		if got := sendOne(c, userA, "r@example.net"); !strings.HasPrefix(last(got), "250") {
			t.Fatalf("accepted message %d refused after 2 refused at end of data: %q", i+1, got)
		}
	}
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": per-minute message budget exhausted")
	if m := e.fp.Messages(); len(m) != 2 {
		t.Fatalf("provider stored %d messages, want 2", len(m))
	}
}

// TestBudget_recipientRefusedUpstreamDoesNotCount: recipients the
// provider refused (550, 452) are not counted in recipients_per_day: with
// a budget of 3, a message to two refused and one accepted recipient
// leaves room for two more, and no third.
func TestBudget_recipientRefusedUpstreamDoesNotCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBudget(map[string]any{"recipients_per_day": 3}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	got := sendOne(c, userA, "reject-550@example.net", "reject-452@example.net", "ok1@example.net")
	if !strings.HasPrefix(got[1], "550") || !strings.HasPrefix(got[2], "452") || !strings.HasPrefix(got[3], "250") ||
		!strings.HasPrefix(last(got), "250") {
		t.Fatalf("first message: %q", got)
	}
	got = sendOne(c, userA, "ok2@example.net", "ok3@example.net", "ok4@example.net")
	if !strings.HasPrefix(got[1], "250") || !strings.HasPrefix(got[2], "250") ||
		!strings.HasPrefix(got[3], "451 4.7.0 "+userA+": daily recipient budget exhausted") || !strings.HasPrefix(last(got), "250") {
		t.Fatalf("second message (2 of 3 recipients should fit): %q", got)
	}
	if m := e.fp.Messages(); len(m) != 2 || len(m[0].Rcpts) != 1 || len(m[1].Rcpts) != 2 {
		t.Fatalf("provider got %+v", m)
	}
}

// TestBudget_periodicFlushWritesCountsBeforeShutdown: while the proxy
// runs, budgets.json is rewritten every BudgetFlushInterval, so a crash
// (no shutdown save) keeps the counts.
func TestBudget_periodicFlushWritesCountsBeforeShutdown(t *testing.T) {
	t.Parallel()
	o := withBudget(map[string]any{"messages_per_day": 5})
	o.budgetFlush = 20 * time.Millisecond
	e := newEnv(t, o)
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	for i := 0; i < 2; i++ {
		if got := sendOne(c, userA, "r@example.net"); !strings.HasPrefix(last(got), "250") {
			t.Fatalf("message %d: %q", i+1, got)
		}
	}
	path := filepath.Join(e.dir, "budgets.json")
	l := quota.Limits{MessagesPerDay: 5}
	used := -1
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		book := quota.NewBook(nil)
		if err := book.Load(bytes.NewReader(b)); err != nil {
			t.Fatalf("flushed state: %v", err)
		}
		if st := book.Status("alice", l); len(st.Budgets) == 1 {
			if used = st.Budgets[0].Used; used == 2 {
				return // on disk, and the proxy still running
			}
		}
	}
	t.Fatalf("budgets.json did not reach 2 messages while running (last read: %d)", used)
}

// accountBudgets is the budgets part of GET /admin/accounts/{email}.
type accountBudgets struct {
	Account struct {
		Budgets *quota.Status `json:"budgets"`
	} `json:"account"`
}

// TestBudget_adminShowsCoolDownAndNearLimits: after a provider quota
// reply the account's status carries the cool-down's cause and end, its
// refusals count as cooling_down, and /admin/budgets lists the accounts
// at 80% of a budget or more, not those below.
func TestBudget_adminShowsCoolDownAndNearLimits(t *testing.T) {
	t.Parallel()
	o := envOptions{edit: func(_ map[string]any, accts []map[string]any) {
		accts[0]["rate_limiting"] = map[string]any{"messages_per_hour": 5} // alice: near at 4
		accts[3]["rate_limiting"] = map[string]any{"messages_per_hour": 2} // plain: at 2
	}}
	o.admin = service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken()}
	e := newEnv(t, o)

	listed := func() map[string]map[string]any {
		t.Helper()
		code, m, raw := e.call(t, "GET", "/admin/budgets", adminToken, nil)
		if code != 200 {
			t.Fatalf("%d %s", code, raw)
		}
		out := map[string]map[string]any{}
		rows, _ := m["accounts"].([]any)
		for _, r := range rows {
			row := r.(map[string]any)
			out[row["email"].(string)] = row
		}
		return out
	}
	ca := e.dial(t)
	ca.authPlain(userA, password, "235")
	for i := 0; i < 3; i++ {
		sendOne(ca, userA, "r@example.net")
	}
	if l := listed(); len(l) != 0 {
		t.Fatalf("listed below 80%%: %v", l)
	}
	sendOne(ca, userA, "r@example.net") // 4 of 5: near
	cp := e.dial(t)
	cp.authPlain(userPlain, password, "235")
	sendOne(cp, userPlain, "r@example.net")
	sendOne(cp, userPlain, "r@example.net") // 2 of 2: at
	l := listed()
	near, at := l[userA], l[userPlain]
	if len(l) != 2 || near == nil || at == nil {
		t.Fatalf("want alice (near) and plain (at) listed, got %v", l)
	}
	nb := near["budgets"].([]any)[0].(map[string]any)
	ab := at["budgets"].([]any)[0].(map[string]any)
	if nb["used"] != float64(4) || nb["limit"] != float64(5) || nb["reset_at"] != nil || near["near_or_at_limit"] != true {
		t.Errorf("near row: %v", near)
	}
	if ab["used"] != float64(2) || ab["limit"] != float64(2) || ab["reset_at"] == nil {
		t.Errorf("at row: %v", at)
	}

	// A provider quota reply: cool-down with cause and end in the status.
	start := time.Now()
	cu := e.dial(t)
	cu.authPlain(userOne, password, "235")
	if got := sendOne(cu, userOne, "reject-550-5.4.5@example.net"); !strings.HasPrefix(got[1], "451 4.7.0") {
		t.Fatalf("quota reply: %q", got)
	}
	_, _, raw := e.call(t, "GET", "/admin/accounts/"+userOne, adminToken, nil)
	var st accountBudgets
	if err := json.Unmarshal([]byte(raw), &st); err != nil || st.Account.Budgets == nil {
		t.Fatalf("status without budgets (%v): %s", err, raw)
	}
	b := st.Account.Budgets
	if !strings.Contains(b.CoolingCause, "550 5.4.5") || !b.NearOrAtLimit {
		t.Errorf("cool-down cause %q, near_or_at_limit %v", b.CoolingCause, b.NearOrAtLimit)
	}
	if lo, hi := start.Add(24*time.Hour-time.Minute), time.Now().Add(24*time.Hour+time.Minute); b.CoolingUntil.Before(lo) || b.CoolingUntil.After(hi) {
		t.Errorf("cooling_down_until %v, want about 24 h from now", b.CoolingUntil)
	}
	if _, ok := listed()[userOne]; !ok {
		t.Error("cooling account not in /admin/budgets")
	}
	cu.cmd("MAIL FROM:<"+userOne+">", "451 4.7.0 "+userOne+": cooling down until")
	cu.cmd("MAIL FROM:<"+userOne+">", "451 4.7.0 "+userOne+": cooling down until")
	_, _, met := e.call(t, "GET", "/metrics", "", nil)
	if !strings.Contains(met, `budget_refusals_total{reason="cooling_down"} 2`) {
		t.Errorf("cooling_down refusals not counted:\n%s", grepLines(met, "budget_refusals_total"))
	}
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

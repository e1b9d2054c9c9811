package service_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// sendOne runs one pipelined transaction to rcpts and returns the replies
// after MAIL: one per RCPT, then DATA's and, after a 354, the final one.
func sendOne(c *conn, from string, rcpts ...string) []string {
	c.t.Helper()
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + from + ">\r\n")
	for _, r := range rcpts {
		b.WriteString("RCPT TO:<" + r + ">\r\n")
	}
	b.WriteString("DATA\r\n")
	c.send(b.String())
	mail := c.expect("")
	out := []string{mail}
	if !strings.HasPrefix(mail, "250") {
		for range rcpts {
			out = append(out, c.expect(""))
		}
		out = append(out, c.expect(""))
		return out
	}
	for range rcpts {
		out = append(out, c.expect(""))
	}
	d := c.expect("")
	out = append(out, d)
	if strings.HasPrefix(d, "354") {
		c.send("Subject: budget\r\n\r\nx\r\n.\r\n")
		out = append(out, c.expect(""))
	}
	return out
}

func withBudget(rl map[string]any) envOptions {
	return envOptions{edit: func(_ map[string]any, accts []map[string]any) { accts[0]["rate_limiting"] = rl }}
}

func TestBudget_messagesPerMinuteRefusedAtMail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBudget(map[string]any{"messages_per_minute": 2}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	for i := 0; i < 2; i++ {
		if got := sendOne(c, userA, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	got := c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0")
	if !strings.Contains(got, userA+": per-minute message budget exhausted, resets in ") {
		t.Fatalf("refusal %q", got)
	}
	// Another account is unaffected.
	c2 := e.dial(t)
	c2.authPlain(userPlain, password, "235")
	if got := sendOne(c2, userPlain, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("other account: %q", got)
	}
}

func TestBudget_recipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBudget(map[string]any{"recipients_per_message": 2, "recipients_per_day": 3}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	got := sendOne(c, userA, "r1@example.net", "r2@example.net", "r3@example.net")
	if !strings.HasPrefix(got[3], "452 4.5.3") || !strings.HasPrefix(got[5], "250") {
		t.Fatalf("surplus recipient: %q", got)
	}
	// 2 of 3 daily recipients used: one more fits, the next does not.
	got = sendOne(c, userA, "r4@example.net", "r5@example.net")
	if !strings.HasPrefix(got[1], "250") || !strings.HasPrefix(got[2], "451 4.7.0 "+userA+": daily recipient budget exhausted, resets in 2") {
		t.Fatalf("daily recipients: %q", got)
	}
	if m := e.fp.Messages(); len(m) != 2 || len(m[0].Rcpts) != 2 || len(m[1].Rcpts) != 1 {
		t.Fatalf("provider got %+v", m)
	}
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": daily recipient budget exhausted")
}

// TestBudget_providerQuotaCoolsDown: Gmail's 550 5.4.5 reaches the client
// as a 4xx, and the account then refuses early, alone.
func TestBudget_providerQuotaCoolsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	got := sendOne(c, userA, "reject-550-5.4.5@example.net")
	if !strings.HasPrefix(got[1], "451 4.7.0 "+userA+": provider says: 550 5.4.5 Daily user sending limit exceeded") {
		t.Fatalf("quota reply not translated: %q", got)
	}
	got2 := c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0")
	if !strings.Contains(got2, "cooling down until") || !strings.Contains(got2, "5.4.5") {
		t.Fatalf("no early refusal: %q", got2)
	}
	c2 := e.dial(t)
	c2.authPlain(userPlain, password, "235")
	if got := sendOne(c2, userPlain, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("other account: %q", got)
	}
	// A genuinely permanent sender error stays a 5xx and cools nothing.
	got = sendOne(c2, userPlain, "faildata-554-5.2.252@example.net")
	if !strings.HasPrefix(got[len(got)-1], "554 5.2.252") {
		t.Fatalf("SendAsDenied: %q", got)
	}
	if got := sendOne(c2, userPlain, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("after SendAsDenied: %q", got)
	}
}

func TestBudget_disabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBudget(map[string]any{"enabled": false, "recipients_per_message": 1}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	rcpts := make([]string, 150) // over gmail's built-in 100 per message
	for i := range rcpts {
		rcpts[i] = "r" + string(rune('a'+i%26)) + "@example.net"
	}
	got := sendOne(c, userA, rcpts...)
	if !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("with budgets off: %q", got[len(got)-2:])
	}
}

// TestBudget_countersSurviveRestart: a clean shutdown saves the counters,
// and the next process refuses where the last one stopped.
func TestBudget_countersSurviveRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBudget(map[string]any{"messages_per_day": 2}))
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	sendOne(c, userA, "r@example.net")
	sendOne(c, userA, "r@example.net")
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "budgets.json")); err != nil {
		t.Fatalf("no budget state written: %v", err)
	}
	e2 := restart(t, e)
	c2 := e2.dial(t)
	c2.authPlain(userA, password, "235")
	c2.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": daily message budget exhausted")
}

func TestBudget_adminView(t *testing.T) {
	t.Parallel()
	o := withBudget(map[string]any{"messages_per_hour": 2})
	o.admin = service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken()}
	e := newEnv(t, o)
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	sendOne(c, userA, "r@example.net")
	sendOne(c, userA, "r@example.net")
	code, m, raw := e.call(t, "GET", "/admin/budgets", adminToken, nil)
	if code != 200 || m["count"] != float64(1) || !strings.Contains(raw, `"messages_per_hour"`) || !strings.Contains(raw, `"reset_at"`) {
		t.Fatalf("%d %s", code, raw)
	}
	_, _, raw = e.call(t, "GET", "/admin/accounts/"+userA, adminToken, nil)
	if !strings.Contains(raw, `"budgets"`) || !strings.Contains(raw, `"used": 2`) {
		t.Fatalf("account status without budgets: %s", raw)
	}
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0")
	_, _, met := e.call(t, "GET", "/metrics", "", nil)
	if !strings.Contains(met, `budget_refusals_total{reason="hourly message budget"} 1`) {
		t.Fatalf("refusal not counted")
	}
}

// TestBudget_disablingLiftsCoolDown: an operator who switches an account's
// budgets off (rate_limiting.enabled false, then reload) gets it sending at
// once, even while a cool-down from the provider's quota reply is running.
func TestBudget_disablingLiftsCoolDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	if got := sendOne(c, userA, "reject-550-5.4.5@example.net"); !strings.HasPrefix(got[1], "451 4.7.0") {
		t.Fatalf("quota reply: %q", got)
	}
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0")

	accts := cloneAccts(e.accts)
	accts[0]["rate_limiting"] = map[string]any{"enabled": false}
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	c2 := e.dial(t)
	c2.authPlain(userA, password, "235")
	if got := sendOne(c2, userA, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("budgets off, still refused: %q", got)
	}
}

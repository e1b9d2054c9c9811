package service_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// Operations behaviours (README "Operations") that no other test pins
// down: shutdown QUITs, per-account and error metrics, reloads under
// traffic, the admin API's refusals and live status, /readyz.

// TestShutdown_idleUpstreamSessionsAreQuit: at shutdown the pooled
// upstream sessions end with QUIT, not a plain close.
func TestShutdown_idleUpstreamSessionsAreQuit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, u := range []string{userA, userPlain} {
		c := e.dial(t)
		c.authPlain(u, password, "235")
		c.deliver(u, "r@example.net", "x\r\n")
	}
	if st := e.fp.Stats(); st.Quits != 0 || st.Logins != 2 {
		t.Fatalf("before shutdown: %+v", st)
	}
	if err := e.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run waits for the QUITs it started; the provider counts each one
	// before it answers 221.
	if st := e.fp.Stats(); st.Quits != 2 {
		t.Fatalf("provider saw %d QUITs for 2 idle sessions at shutdown", st.Quits)
	}
}

func scrapeMetrics(t *testing.T, e *env) string {
	t.Helper()
	_, _, raw := e.call(t, "GET", "/metrics", "", nil)
	return raw
}

// TestMetrics_perAccountSeriesWithOptIn: --metrics-per-account adds
// messages_by_account_total{account,result}, one series per account and
// outcome.
func TestMetrics_perAccountSeriesWithOptIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{admin: service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken(), MetricsPerAccount: true}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "x\r\n")
	c.deliver(userA, "r@example.net", "y\r\n")
	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<faildata-550@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("z\r\n.\r\n")
	c.expect("550")
	out := scrapeMetrics(t, e)
	for _, want := range []string{
		`messages_by_account_total{account="alice",result="sent"} 2`,
		`messages_by_account_total{account="alice",result="rejected"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(out, `account="plain"`) {
		t.Error("a series for an account that sent nothing")
	}
}

// TestMetrics_errorsTotalByType: the old tool's errors_total{error_type}
// counts a failure to open an upstream session by its kind.
func TestMetrics_errorsTotalByType(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	if out := scrapeMetrics(t, e); strings.Contains(out, "errors_total{") {
		t.Fatalf("errors before any failure:\n%s", out)
	}
	e.fp.Revoke(userOne)
	c := e.dial(t)
	c.authPlain(userOne, password, "235")
	c.cmd("MAIL FROM:<"+userOne+">", "454 4.7.0")
	if out := scrapeMetrics(t, e); !strings.Contains(out, `errors_total{error_type="token_final"} 1`) {
		t.Errorf("metrics lack errors_total{error_type=\"token_final\"} 1:\n%s", grepLines(out, "errors_total"))
	}
}

// TestReload_changedAccountFinishesTransactionInFlight: a reload that
// changes an account while one of its messages is in DATA lets that
// message finish with the provider's 250 on the old session; the
// client's next MAIL must authenticate again.
func TestReload_changedAccountFinishesTransactionInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userPlain, password, "235")
	c.send("MAIL FROM:<" + userPlain + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: in flight\r\n\r\nfirst half\r\n")

	accts := cloneAccts(e.accts)
	accts[3]["smtp_password"] = "changed-" + password // plain
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}

	c.send("second half\r\n.\r\n")
	c.expect("250 2.0.0")
	m := e.fp.Messages()
	if len(m) != 1 || !strings.Contains(string(m[0].Data), "second half") {
		t.Fatalf("provider got %+v", m)
	}
	c.cmd("MAIL FROM:<"+userPlain+">", "451 4.7.1")
	if st := e.fp.Stats(); st.Messages != 1 {
		t.Fatalf("provider has %d messages", st.Messages)
	}
	e.dial(t).authPlain(userPlain, "changed-"+password, "235")
}

// TestReload_removedAccountRefusesItsClients: after a reload that
// removes an account, a client that had authenticated as it is refused
// at its next MAIL, and new logins fail.
func TestReload_removedAccountRefusesItsClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "x\r\n")

	e.writeAccounts(t, cloneAccts(e.accts)[1:]) // alice removed
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.1")
	e.dial(t).authPlain(userA, password, "535 5.7.8")
	if st := e.fp.Stats(); st.Messages != 1 {
		t.Fatalf("provider has %d messages, want only the one before the reload", st.Messages)
	}
	// The removed account's idle session is closed politely.
	waitUntil(t, "the removed account's session to be QUIT", func() bool { return e.fp.Stats().Quits == 1 })
}

// TestAdmin_deleteInvalidKeepsAccountsWhoseEndpointFails: an account
// whose token endpoint is down (503) or answers 500 is only retrying; the
// cleanup of dead credentials must not remove it. A revoked one goes.
func TestAdmin_deleteInvalidKeepsAccountsWhoseEndpointFails(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	refresh := func(email string) {
		t.Helper()
		if code, _, raw := e.call(t, "POST", "/admin/accounts/"+email+"/refresh", adminToken, nil); code == 200 {
			t.Fatalf("refresh of %s succeeded: %s", email, raw)
		}
	}
	state := func(email string) string {
		t.Helper()
		_, m, raw := e.call(t, "GET", "/admin/accounts/"+email, adminToken, nil)
		acc, ok := m["account"].(map[string]any)
		if !ok {
			t.Fatalf("GET %s: %s", email, raw)
		}
		return fmt.Sprint(acc["token"].(map[string]any)["state"])
	}

	e.fp.SetTokenFault(userPlain, fakeprovider.TokenFault{Status: 500})
	refresh(userPlain)
	e.fp.Revoke(userOne)
	refresh(userOne)
	e.fp.SetTokenEndpointDown(true) // every other account: 503
	refresh(userA)
	for email, want := range map[string]string{userPlain: "retrying", userA: "retrying", userOne: "needs_consent"} {
		if got := state(email); got != want {
			t.Fatalf("%s token state %q, want %q", email, got, want)
		}
	}

	code, m, raw := e.call(t, "DELETE", "/admin/accounts/invalid", adminToken, nil)
	if code != 200 || m["deleted_count"] != float64(1) || fmt.Sprint(m["deleted_accounts"]) != "["+userOne+"]" {
		t.Fatalf("delete invalid: %d %s", code, raw)
	}
	for _, email := range []string{userA, userPlain} {
		if e.svc.Reg.Find(email) == nil {
			t.Errorf("%s (token endpoint failing, not rejected) was deleted", email)
		}
	}
	if e.svc.Reg.Find(userOne) != nil {
		t.Error("the revoked account was kept")
	}
}

// TestAdmin_reloadInvalidFileAnswers400AndKeepsRunningSet: POST
// /admin/reload with an accounts file that does not validate says why
// (file, account, field) and changes nothing.
func TestAdmin_reloadInvalidFileAnswers400AndKeepsRunningSet(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	accts := cloneAccts(e.accts)
	accts = accts[:2]                                         // would remove four accounts
	accts[0]["oauth_token_url"] = "http://token.example.com/" // not loopback: refused
	e.writeAccounts(t, accts)

	code, m, raw := e.call(t, "POST", "/admin/reload", adminToken, nil)
	if code != 400 || m["success"] != false {
		t.Fatalf("reload of an invalid file: %d %s", code, raw)
	}
	msg := fmt.Sprint(m["error"])
	for _, want := range []string{"accounts.json", "alice", "oauth_token_url"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if n := len(e.svc.Reg.All()); n != len(e.accts) {
		t.Errorf("%d accounts in force, want %d", n, len(e.accts))
	}
	if _, m, _ = e.call(t, "GET", "/admin/status", adminToken, nil); m["total_accounts"] != float64(len(e.accts)) {
		t.Errorf("status after refused reload: %v", m)
	}
	c := e.dial(t)
	c.authPlain(userPlain, password, "235") // would have been removed
	c.deliver(userPlain, "r@example.net", "x\r\n")
	if got := e.svc.Snapshot().Accounts[0].TokenURL; strings.Contains(got, "token.example.com") {
		t.Errorf("the refused token URL is in force: %s", got)
	}
}

// TestAdmin_accountStatusCarriesTokenAndInFlight: GET
// /admin/accounts/{email} shows the token's expiry, in_flight while a
// message is in DATA and after, and the last error of a failed refresh.
func TestAdmin_accountStatusCarriesTokenAndInFlight(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	get := func() map[string]any {
		t.Helper()
		code, m, raw := e.call(t, "GET", "/admin/accounts/"+userA, adminToken, nil)
		acc, ok := m["account"].(map[string]any)
		if code != 200 || !ok {
			t.Fatalf("GET: %d %s", code, raw)
		}
		return acc
	}
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	if got := get()["in_flight"]; got != float64(1) {
		t.Errorf("in_flight during DATA = %v, want 1", got)
	}
	c.send("x\r\n.\r\n")
	c.expect("250")

	acc := get()
	if got, ok := acc["in_flight"]; !ok || got != float64(0) {
		t.Errorf("in_flight after the message = %v (present %v), want 0", got, ok)
	}
	tok := acc["token"].(map[string]any)
	exp, err := time.Parse(time.RFC3339Nano, fmt.Sprint(tok["expiry"]))
	if err != nil {
		t.Fatalf("token expiry %v: %v", tok["expiry"], err)
	}
	if now := time.Now(); !exp.After(now) || exp.After(now.Add(2*time.Hour)) {
		t.Errorf("token expiry %v not within the next two hours", exp)
	}
	if _, ok := tok["last_error"]; ok {
		t.Errorf("last_error before any failure: %v", tok)
	}

	e.fp.SetTokenFault(userA, fakeprovider.TokenFault{Status: 500})
	if code, _, raw := e.call(t, "POST", "/admin/accounts/"+userA+"/refresh", adminToken, nil); code == 200 {
		t.Fatalf("refresh against a 500 succeeded: %s", raw)
	}
	tok = get()["token"].(map[string]any)
	if le := fmt.Sprint(tok["last_error"]); tok["last_error"] == nil || !strings.Contains(le, "500") {
		t.Errorf("last_error after a 500 = %q", le)
	}
	if tok["failures"] == nil || tok["failures"].(float64) < 1 || tok["state"] != "retrying" {
		t.Errorf("token after a failed refresh: %v", tok)
	}
	if found := secretsIn(fmt.Sprint(tok)); len(found) > 0 {
		t.Errorf("token status has secrets %v", found)
	}
}

// TestAdmin_readyzNotReadyDuringShutdown: once shutdown begins /readyz
// answers 503 (while a transaction in flight keeps the admin API up),
// and /healthz still 200.
func TestAdmin_readyzNotReadyDuringShutdown(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	// Run serves the admin API a moment before it marks the SMTP side
	// ready: 503 first is right.
	waitUntil(t, "/readyz to answer 200 while serving", func() bool {
		code, _, _ := e.call(t, "GET", "/readyz", "", nil)
		return code == 200
	})
	busy := e.dial(t)
	busy.authPlain(userA, password, "235")
	busy.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	busy.expect("250")
	busy.expect("250")
	busy.expect("354")
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	waitUntil(t, "/readyz to answer 503", func() bool {
		code, m, _ := e.call(t, "GET", "/readyz", "", nil)
		return code == http.StatusServiceUnavailable && m["status"] == "not ready"
	})
	if code, _, _ := e.call(t, "GET", "/healthz", "", nil); code != 200 {
		t.Errorf("healthz during shutdown: %d", code)
	}
	busy.send("x\r\n.\r\n")
	busy.expect("250")
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}

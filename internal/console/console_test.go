package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
)

// TestSignIn_cookieAndRefusals: the admin token gives a session cookie
// (HttpOnly, SameSite=Strict, expiring); pages without one redirect to the
// sign-in; a wrong token is refused and, repeated, held back like the
// API's; a state change without the CSRF token is refused and changes
// nothing; after sign-out the old cookie is refused.
func TestSignIn_cookieAndRefusals(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 3})

	anon := p.client(t)
	for _, path := range []string{"/", "/accounts", "/accounts/" + id(0), "/onboarding"} {
		if code, h, _ := anon.do("GET", path, nil, nil); code != http.StatusSeeOther || h.Get("Location") != "/signin" {
			t.Errorf("GET %s without a session: %d → %q, want 303 → /signin", path, code, h.Get("Location"))
		}
	}
	if code, _ := anon.get("/live"); code != http.StatusUnauthorized {
		t.Errorf("/live without a session: %d", code)
	}
	if code, _, _ := anon.do("POST", "/accounts/"+id(0)+"/disable", url.Values{"confirm": {"yes"}}, nil); code != http.StatusUnauthorized {
		t.Errorf("POST without a session: %d", code)
	}

	// A wrong token: 401, no cookie; the sixth in a row holds the address back.
	wrong := p.client(t)
	for i := range 5 {
		code, h, body := wrong.do("POST", "/signin", url.Values{"token": {"not-the-token-" + adminToken}}, nil)
		if code != http.StatusUnauthorized || h.Get("Set-Cookie") != "" || !strings.Contains(body, "Wrong token") {
			t.Fatalf("wrong token %d: %d, Set-Cookie %q", i, code, h.Get("Set-Cookie"))
		}
	}
	wrong.do("POST", "/signin", url.Values{"token": {"still wrong"}}, nil)
	if code, h, _ := wrong.do("POST", "/signin", url.Values{"token": {adminToken}}, nil); code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("after 6 failures even the right token: %d (Retry-After %q), want 429 held back", code, h.Get("Retry-After"))
	}
	if n := p.metric(t, `admin_auth_failures_total{result="refused"}`); n != 6 {
		t.Errorf("admin_auth_failures_total{refused} = %d, want 6 (shared with the API)", n)
	}
}

// TestCSRFAndSignOut run from another address than the failures above:
// each test has its own proxy, so its own hold-back table.
func TestCSRFAndSignOut(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 3})
	c := p.client(t)
	code, h, _ := c.do("POST", "/signin", url.Values{"token": {adminToken}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", code)
	}
	ck := h.Get("Set-Cookie")
	for _, want := range []string{"xp_console=", "HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("cookie %q lacks %s", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Errorf("cookie %q: Secure over plain HTTP would never come back", ck)
	}
	tok := c.csrf("/accounts/" + id(1))
	before := p.login(t, 1) // logged in before the account is disabled

	// No CSRF token, a wrong one: refused, the account stays enabled.
	for name, form := range map[string]url.Values{
		"none":  {"confirm": {"yes"}},
		"wrong": {"confirm": {"yes"}, "csrf": {tok + "x"}},
		"empty": {"confirm": {"yes"}, "csrf": {""}},
	} {
		if code, _, _ := c.do("POST", "/accounts/"+id(1)+"/disable", form, nil); code != http.StatusForbidden {
			t.Errorf("CSRF %s: %d, want 403", name, code)
		}
	}
	if p.svc.Reg.Find(id(1)).Cfg.Disabled {
		t.Fatal("disabled without a CSRF token")
	}
	// Disabling asks for confirmation first.
	c.do("POST", "/accounts/"+id(1)+"/disable", url.Values{"csrf": {tok}}, nil)
	if p.svc.Reg.Find(id(1)).Cfg.Disabled {
		t.Fatal("disabled without the confirmation")
	}
	// The header works as the field does.
	code, h, _ = c.do("POST", "/accounts/"+id(1)+"/disable", url.Values{"confirm": {"yes"}}, http.Header{"X-Csrf-Token": {tok}})
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=disabled") || !p.svc.Reg.Find(id(1)).Cfg.Disabled {
		t.Fatalf("disable with the CSRF header: %d %s", code, h.Get("Location"))
	}
	if _, body := c.get(h.Get("Location")); !strings.Contains(body, "Disabled: new mail") {
		t.Error("no outcome shown after disabling")
	}
	if got := before.send(email(1), "r@example.net"); !strings.HasPrefix(got, "4") && !strings.HasPrefix(got, "5") {
		t.Errorf("a message of the disabled account: %q, want refused", got)
	}
	code, _, _ = c.do("POST", "/accounts/"+id(1)+"/enable", url.Values{"csrf": {tok}}, nil)
	if code != http.StatusSeeOther || p.svc.Reg.Find(id(1)).Cfg.Disabled {
		t.Fatalf("enable: %d", code)
	}

	// Sign out (with the CSRF token), then the old cookie is refused.
	old := c.hc.Jar.Cookies(mustURL(t, p.base))
	if code, _, _ := c.do("POST", "/signout", url.Values{"csrf": {tok}}, nil); code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", code)
	}
	replay := p.client(t)
	replay.hc.Jar.SetCookies(mustURL(t, p.base), old)
	if code, h, _ := replay.do("GET", "/", nil, nil); code != http.StatusSeeOther || h.Get("Location") != "/signin" {
		t.Errorf("old cookie after sign-out: GET / %d → %q", code, h.Get("Location"))
	}
	if code, _, _ := replay.do("POST", "/accounts/"+id(1)+"/disable", url.Values{"confirm": {"yes"}, "csrf": {tok}}, nil); code != http.StatusUnauthorized {
		t.Errorf("old cookie after sign-out: POST %d", code)
	}
	if p.svc.Reg.Find(id(1)).Cfg.Disabled {
		t.Error("disabled with a signed-out cookie")
	}

	// The API's routes are unchanged beside the console.
	code, _, body := c.do("GET", "/admin/status", nil, http.Header{"Authorization": {"Bearer " + adminToken}})
	if code != 200 || !strings.Contains(body, `"total_accounts": 3`) {
		t.Errorf("/admin/status beside the console: %d %s", code, body)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAdminOverview_matchesMetrics: GET /admin/overview (what `status`
// prints), read with the API client and its bearer token, counts what
// /metrics counts after a few messages, and the accounts by state.
func TestAdminOverview_matchesMetrics(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 4})
	c := p.login(t, 0)
	for _, rcpt := range []string{"a@example.net", "b@example.net", "faildata-451@example.net", "faildata-550-5.7.1@example.net"} {
		c.send(email(0), rcpt)
	}
	p.login(t, 1).send(email(1), "reject-550-5.4.5@example.net")
	cl, err := adminclient.New(p.base, secret.New(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	ov, err := cl.Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := traffic.Totals{Accepted: p.metric(t, `messages_total{result="sent"}`),
		Deferred: p.metric(t, `messages_total{result="deferred"}`), Rejected: p.metric(t, `messages_total{result="rejected"}`)}
	if ov.Totals != want || want != (traffic.Totals{Accepted: 2, Deferred: 1, Rejected: 1}) {
		t.Errorf("overview %+v, /metrics %+v, want 2, 1, 1", ov.Totals, want)
	}
	if ov.LastHour != want {
		t.Errorf("last hour %+v, want %+v", ov.LastHour, want)
	}
	if ov.Accounts != 4 || ov.ByState["ok"] != 3 || ov.ByState["cooling_down"] != 1 || ov.AttentionTotal != 1 ||
		ov.Attention[0].AccountID != id(1) || !strings.Contains(ov.Attention[0].Reason, "550 5.4.5") {
		t.Errorf("overview: %+v", ov)
	}
	bad, err := adminclient.New(p.base, secret.New("wrong-token-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Overview(context.Background()); err == nil {
		t.Error("overview with a wrong token answered")
	}
}

// TestSendTest: the account page's test message goes through the relay
// to the provider; a refusal and a bad address are shown, not sent; no
// CSRF token, no message.
func TestSendTest(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 2})
	c := p.client(t)
	c.signIn()
	tok := c.csrf("/accounts/" + id(0))
	tests := []struct {
		name, rcpt, csrf string
		code             int
		page             string
		delivered        int
	}{
		{"no CSRF", "ops@example.net", "", http.StatusForbidden, "CSRF", 0},
		{"bad address", "ops@example.net\r\nRCPT TO:<x@y>", tok, http.StatusBadRequest, "No test message sent: the recipient must be one address", 0},
		{"refused upstream", "reject-550@example.net", tok, http.StatusOK, "refused: 550 5.1.1", 0},
		{"accepted", "ops@example.net", tok, http.StatusOK, "Test message to ops@example.net accepted: 250", 1},
	}
	for _, tc := range tests {
		code, _, body := c.do("POST", "/accounts/"+id(0)+"/test", url.Values{"rcpt": {tc.rcpt}, "csrf": {tc.csrf}}, nil)
		if code != tc.code || !strings.Contains(body, tc.page) {
			t.Errorf("%s: %d, want %d with %q", tc.name, code, tc.code, tc.page)
		}
		if n := len(p.fp.Messages()); n != tc.delivered {
			t.Errorf("%s: %d messages at the provider, want %d", tc.name, n, tc.delivered)
		}
	}
	if m := p.fp.Messages(); len(m) == 1 && (m[0].From != email(0) || len(m[0].Rcpts) != 1 || m[0].Rcpts[0] != "ops@example.net") {
		t.Errorf("delivered %+v", m[0])
	}
	if _, body := c.get("/accounts/" + id(0)); !strings.Contains(body, "<code>250") {
		t.Error("the test message's reply is not among the last upstream replies")
	}
}

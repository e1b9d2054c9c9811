package service_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/browsertest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// freePort returns a loopback port that was free a moment ago: the
// onboarding listener's public_url must name its port before it starts.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestOnboarding_invitationInBrowser drives Chromium through invitations
// on the proxy's own onboarding listener, with the fake provider's consent
// page: Deny, a tampered state, another address signing in and an expired
// link each end on a page that says so and store nothing; Allow ends on
// the success page, lifts needs_consent and the account sends; the used
// link is refused. Every page: no console error or CSP violation, and a
// screenshot.
func TestOnboarding_invitationInBrowser(t *testing.T) {
	t.Parallel()
	b := browsertest.New(t)
	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	stateDir := t.TempDir()
	expiredToken := "expired-link-token-0123456789abcdefghijklmnopq"
	sum := sha256.Sum256([]byte(expiredToken))
	old := time.Now().Add(-8 * 24 * time.Hour).UTC().Format(time.RFC3339)
	writeJSON(t, filepath.Join(stateDir, "invitations.json"), map[string]any{"invitations": []map[string]any{{
		"id": "inv_expired", "account_id": "alice", "email": userA, "state": "pending",
		"created_at": old, "updated_at": old, "expires_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
		"token_sha256": hex.EncodeToString(sum[:]),
	}}})
	logs := &syncBuffer{}
	e := newEnv(t, envOptions{
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		admin:  service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken()},
		edit: func(cfg map[string]any, accts []map[string]any) {
			cfg["onboarding"] = map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", port), "public_url": public,
				"state_file": filepath.Join(stateDir, "invitations.json")}
			authURL := strings.TrimSuffix(accts[0]["oauth_token_url"].(string), "/token") + "/authorize"
			cfg["providers"] = map[string]any{"gmail": map[string]any{"oauth_app": map[string]any{"auth_url": authURL}}}
		},
	})
	waitUntil(t, "/readyz to answer 200", func() bool { code, _, _ := e.call(t, "GET", "/readyz", "", nil); return code == 200 })

	// The provider lost alice's grant: she needs consent; her mail waits.
	e.fp.Revoke(userA)
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.cmd("MAIL FROM:<"+userA+">", "454 4.7.0")
	c.send("QUIT\r\n")

	code, res, raw := e.call(t, "POST", "/api/invitations", adminToken, map[string]any{"accounts": []string{"alice", "alice", "alice", "alice", userA, "nobody@example.com"}})
	if code != http.StatusPartialContent {
		t.Fatalf("POST /api/invitations: %d %s", code, raw)
	}
	var links []string
	for _, v := range res["invitations"].([]any) {
		links = append(links, v.(map[string]any)["link"].(string))
	}
	if len(links) != 5 || !strings.HasPrefix(links[0], public+"/i/") {
		t.Fatalf("links %q", links)
	}
	deny, tampered, other, allow := links[0], links[1], links[2], links[3]

	text := func(id string) string {
		return browsertest.Get(b, 30*time.Second, chromedp.Text(chromedp.ID(id)))
	}
	// atConsent opens a link and waits for the provider's consent page.
	atConsent := func(link string) {
		b.Do(30*time.Second, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("allow")))
		if h := text("title"); !strings.Contains(h, "Allow access") {
			t.Fatalf("%s: not the consent page: %q", link, h)
		}
	}
	// page checks the page the owner ends on.
	page := func(name, wantHeading, wantDetail string) {
		t.Helper()
		b.Do(30*time.Second, chromedp.WaitVisible(chromedp.ID("heading")))
		if h, d := text("heading"), text("detail"); !strings.Contains(h, wantHeading) || !strings.Contains(d, wantDetail) {
			t.Errorf("%s: page says %q / %q; want %q / %q", name, h, d, wantHeading, wantDetail)
		}
		b.NoErrors(name)
		b.Screenshot(name)
	}

	atConsent(deny)
	b.Do(30*time.Second, chromedp.Click(chromedp.ID("deny")))
	page("deny", "Access was not given", "nothing was changed")

	atConsent(tampered)
	b.Do(30*time.Second, chromedp.SetValue(chromedp.CSS(`input[name="state"]`), "tampered-state"), chromedp.Click(chromedp.ID("allow")))
	page("tampered-state", "does not belong to an open invitation", "altered")

	atConsent(other)
	b.Do(30*time.Second, chromedp.SetValue(chromedp.ID("email"), "mallory@example.net"), chromedp.Click(chromedp.ID("allow")))
	page("different-address", "different address", "You signed in as mallory@example.net, but this invitation is for "+userA)

	b.Do(30*time.Second, chromedp.Navigate(public+"/i/"+expiredToken))
	page("expired-link", "has expired", "new invitation")

	atConsent(allow)
	b.Do(30*time.Second, chromedp.Click(chromedp.ID("allow")))
	page("allow", "Access given", userA+" can now send")

	b.Do(30*time.Second, chromedp.Navigate(allow))
	page("reused-link", "already used", "works once")
	b.Do(30*time.Second, chromedp.Navigate(deny))
	page("reused-denied-link", "already used", "works once")

	// The account sends again: the consent gave it a new grant.
	c = e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "after-consent@example.net", "Subject: x\r\n\r\nhello\r\n")

	_, res, _ = e.call(t, "GET", "/api/invitations", adminToken, nil)
	states := map[string]int{}
	for _, v := range res["invitations"].([]any) {
		states[v.(map[string]any)["state"].(string)]++
	}
	if want := map[string]int{"consented": 1, "failed": 2, "opened": 1, "expired": 1, "pending": 1}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("invitation states %v, want %v", states, want)
	}
	_, _, metrics := e.call(t, "GET", "/metrics", "", nil)
	for _, want := range []string{`invitations{state="consented"} 1`, `invitations{state="failed"} 2`, `invitations{state="expired"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// No link token and no new refresh token in the log, the API or the
	// state file.
	_, _, listed := e.call(t, "GET", "/api/invitations", adminToken, nil)
	state, _ := os.ReadFile(filepath.Join(stateDir, "invitations.json"))
	rt := e.fp.RefreshToken(userA)
	for _, l := range links {
		tok := l[strings.LastIndex(l, "/")+1:]
		for what, s := range map[string]string{"log": logs.String(), "GET /api/invitations": listed, "state file": string(state)} {
			if strings.Contains(s, tok) || strings.Contains(s, rt) {
				t.Errorf("a link token or the refresh token is in the %s", what)
			}
		}
	}
	// The onboarding listener serves the flow only.
	for _, p := range []string{"/admin/accounts", "/metrics", "/api/invitations", "/health"} {
		resp, err := http.Get(public + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("onboarding listener GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

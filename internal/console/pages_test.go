package console_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/console"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// fakeOnboarding stands in for issue 13's package: invitations in
// memory, each with a secret link.
type fakeOnboarding struct {
	mu      sync.Mutex
	list    []console.InvitationView
	links   []string
	emailOf func(id string) string
}

func (f *fakeOnboarding) Invite(_ context.Context, accountID string, ttl time.Duration) (console.InvitationView, secret.String, error) {
	if strings.HasPrefix(accountID, "refuse") {
		return console.InvitationView{}, secret.String{}, errors.New("refused")
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	link := "https://onboard.test/i/" + base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	v := console.InvitationView{ID: fmt.Sprint("inv", len(f.list)), AccountID: accountID, Email: f.emailOf(accountID),
		State: "pending", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(ttl)}
	f.list = append(f.list, v)
	f.links = append(f.links, link)
	return v, secret.New(link), nil
}

func (f *fakeOnboarding) Invitations() []console.InvitationView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]console.InvitationView(nil), f.list...)
}

func (f *fakeOnboarding) Links() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.links...)
}

var countRE = regexp.MustCompile(`(\d+) of (\d+) accounts; page (\d+) of (\d+)`)

// TestAccountsPage_searchFilterSortPage: the table's query parameters
// work on the server, without script.
func TestAccountsPage_searchFilterSortPage(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 120})
	c := p.client(t)
	c.signIn()
	c.do("POST", "/accounts/"+id(7)+"/disable", url.Values{"confirm": {"yes"}, "csrf": {c.csrf("/")}}, nil)

	tests := []struct {
		query          string
		matched, pages int
		first, absent  string // an email on the page, one not on it
	}{
		{"", 120, 3, email(0), email(50)},
		{"page=2", 120, 3, email(50), email(0)},
		{"page=3&per=50", 120, 3, email(119), email(99)},
		{"per=200", 120, 1, email(119), ""},
		{"q=SENDER00042", 1, 1, email(42), email(41)},
		{"q=acct0011", 10, 1, email(119), email(42)},
		{"provider=outlook", 30, 1, email(3), email(0)},
		{"state=disabled", 1, 1, email(7), email(0)},
		{"state=needs_consent", 0, 1, "No account matches", email(0)},
		{"sort=email&dir=desc", 120, 3, email(119), email(0)},
		{"sort=state&dir=desc&per=100", 120, 2, email(7), ""},
	}
	for _, tc := range tests {
		code, body := c.get("/accounts?" + tc.query)
		m := countRE.FindStringSubmatch(body)
		if code != 200 || m == nil {
			t.Errorf("%s: %d, no count", tc.query, code)
			continue
		}
		if m[1] != fmt.Sprint(tc.matched) || m[2] != "120" || m[4] != fmt.Sprint(tc.pages) {
			t.Errorf("%s: %q, want %d of 120 in %d pages", tc.query, m[0], tc.matched, tc.pages)
		}
		if !strings.Contains(body, tc.first) {
			t.Errorf("%s: %s not on the page", tc.query, tc.first)
		}
		if tc.absent != "" && strings.Contains(body, tc.absent+"<") {
			t.Errorf("%s: %s on the page", tc.query, tc.absent)
		}
	}
	// The desc sort by state puts the disabled account first.
	_, body := c.get("/accounts?sort=state&dir=desc")
	if i, j := strings.Index(body, email(7)), strings.Index(body, email(0)); i < 0 || j >= 0 && j < i {
		t.Errorf("sorted by state, descending: disabled account not first")
	}
}

// TestNoSecretInPagesOrStream greps every page, the live stream, the
// overview route and the onboarding page for the test accounts' secrets:
// refresh tokens, the client secret, the access tokens issued, password
// hashes and the invitation links (which only the CSV download carries).
func TestNoSecretInPagesOrStream(t *testing.T) {
	t.Parallel()
	ob := &fakeOnboarding{emailOf: func(id string) string { return strings.Replace(id, "acct", "sender", 1) + "@example.com" }}
	p := startProxy(t, proxyOptions{n: 6, hashed: 3, onboarding: ob})
	c := p.client(t)
	c.signIn()

	// Traffic and trouble: mail sent, a quota cool-down, a revoked grant.
	for i := range 3 {
		s := p.login(t, i)
		if got := s.send(email(i), "r@example.net"); got != "250" {
			t.Fatalf("send: %q", got)
		}
	}
	p.login(t, 4).send(email(4), "reject-550-5.4.5@example.net")
	p.fp.Revoke(email(5))
	tok := c.csrf("/accounts/" + id(5))
	c.do("POST", "/accounts/"+id(5)+"/refresh", url.Values{"csrf": {tok}}, nil)

	// Invitations: the links come once, in the CSV download.
	form := url.Values{"csrf": {tok}, "accounts": {id(0) + "\n" + email(1) + "\nnobody@example.com"}}
	code, h, dl := c.do("POST", "/onboarding", form, nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || h.Get("Cache-Control") != "no-store" ||
		!strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Fatalf("invite download: %d %v", code, h)
	}
	rows, err := csv.NewReader(strings.NewReader(dl)).ReadAll()
	if err != nil || len(rows) != 4 || rows[1][0] != id(0) || rows[2][0] != id(1) || !strings.Contains(rows[3][3], "nobody@example.com: no such account") {
		t.Fatalf("invite CSV (%v): %q", err, rows)
	}
	links := ob.Links()
	if len(links) != 2 || rows[1][3] != links[0] {
		t.Fatalf("links %q, CSV %q", links, rows)
	}

	var secrets []string
	for i := range 6 {
		secrets = append(secrets, refreshToken(i))
		if i < 3 {
			if h, _ := p.accounts[i]["smtp_password"].(string); strings.HasPrefix(h, "$2") {
				secrets = append(secrets, h, h[7:29]) // the hash, and its salt alone
			}
		}
	}
	secrets = append(secrets, clientSecret, adminToken)
	secrets = append(secrets, links...)
	access := p.fp.IssuedAccessTokens()
	if len(access) == 0 {
		t.Fatal("no access token issued: the test would prove nothing about them")
	}
	secrets = append(secrets, access...)

	pages := []string{"/", "/live", "/accounts", "/accounts?per=200&sort=error", "/onboarding", "/signin"}
	for i := range 6 {
		pages = append(pages, "/accounts/"+id(i))
	}
	seen := map[string]string{}
	for _, path := range pages {
		code, body := c.get(path)
		if code != 200 {
			t.Errorf("GET %s: %d", path, code)
		}
		seen[path] = body
	}
	code, _, seen["/admin/overview"] = c.do("GET", "/admin/overview", nil, http.Header{"Authorization": {"Bearer " + adminToken}})
	if code != 200 {
		t.Errorf("/admin/overview: %d", code)
	}
	// What must be there, so that the grep below looks at real pages.
	for path, want := range map[string]string{
		"/accounts/" + id(4): "5.4.5", "/accounts/" + id(5): "needs consent", "/onboarding": "pending",
		"/accounts/" + id(0): `<span class="ok">ok</span>`, // its token request, in the history
		"/accounts/" + id(1): "Last token requests",
		"/":                  "Needing attention", "/live": `"attention_total":2`,
	} {
		if !strings.Contains(seen[path], want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	if !strings.Contains(seen["/accounts/"+id(5)], `<span class="bad">failed</span>: 400 invalid_grant`) {
		t.Error("the revoked account's failed token request is not in its history")
	}
	for path, body := range seen {
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows a secret (%.12s…)", path, s)
			}
		}
	}
}

// TestOnboardingPage_proxyInvitations: with the proxy's own onboarding
// listener configured, the console's Onboarding page creates real
// invitations (the same ones the admin API lists) and shows their states.
func TestOnboardingPage_proxyInvitations(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 2, publicOnboarding: true})
	c := p.client(t)
	c.signIn()
	if _, body := c.get("/onboarding"); strings.Contains(body, "not configured") {
		t.Fatalf("the onboarding page says it is not configured: %s", body)
	}
	tok := c.csrf("/onboarding")
	code, h, dl := c.do("POST", "/onboarding", url.Values{"csrf": {tok}, "accounts": {email(1)}}, nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") {
		t.Fatalf("invite: %d %v %s", code, h, dl)
	}
	rows, err := csv.NewReader(strings.NewReader(dl)).ReadAll()
	if err != nil || len(rows) != 2 || !strings.HasPrefix(rows[1][3], "http://127.0.0.1:8443/i/") {
		t.Fatalf("invite CSV (%v): %q", err, rows)
	}
	// The admin API lists the same invitation, pending.
	req, _ := http.NewRequest("GET", p.base+"/api/invitations", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	api, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(api), email(1)) || !strings.Contains(string(api), "pending") {
		t.Fatalf("GET /api/invitations: %d %s", resp.StatusCode, api)
	}
	_, page := c.get("/onboarding")
	if !strings.Contains(page, email(1)) || !strings.Contains(page, "pending") || strings.Contains(page, rows[1][3]) {
		t.Errorf("onboarding page lacks the invitation, or shows its link: %s", page)
	}
}

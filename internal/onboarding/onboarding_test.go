package onboarding_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/onboarding"
)

// env is one Manager over an accounts file whose only account has a dead
// refresh token, a fake provider, and the public handler on loopback.
type env struct {
	t        *testing.T
	fake     *fakeprovider.Provider
	m        *onboarding.Manager
	srv      *httptest.Server
	accounts string
	logs     *syncBuffer
	now      *clock
	mu       sync.Mutex
	snap     *config.Snapshot
	reloads  int
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newEnv(t *testing.T) *env {
	t.Helper()
	fake, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	dir := t.TempDir()
	e := &env{t: t, fake: fake, accounts: filepath.Join(dir, "accounts.json"), logs: &syncBuffer{}, now: &clock{t: time.Now()}}
	cfg := fmt.Sprintf(`{"providers": {"gmail": {"oauth_token_url": %q, "oauth_app": {"client_id": "web-client", "client_secret": "web-secret", "auth_url": %q}}}}`,
		fake.TokenURL(), fake.AuthURL())
	write(t, filepath.Join(dir, "config.json"), cfg)
	write(t, e.accounts, `[{"account_id": "owner", "email": "Owner@Example.com", "provider": "gmail", "refresh_token": "dead-token"}]`)
	e.reload()
	e.srv = httptest.NewUnstartedServer(nil)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	e.m, err = onboarding.New(onboarding.Options{
		StatePath: filepath.Join(dir, "invitations.json"),
		PublicURL: e.srv.URL,
		Snapshot:  func() *config.Snapshot { e.mu.Lock(); defer e.mu.Unlock(); return e.snap },
		Grants:    onboarding.FileStore{AccountsPath: e.accounts, ConfigPath: filepath.Join(dir, "config.json")},
		AfterGrant: func(context.Context) error {
			e.reload()
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    e.now.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = e.m.Handler()
	return e
}

func (e *env) reload() {
	dir := filepath.Dir(e.accounts)
	snap, _, err := config.Load(config.LoadOptions{ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: e.accounts, SearchDirs: []string{}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.snap, e.reloads = snap, e.reloads+1
	e.mu.Unlock()
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get fetches u without following redirects.
func get(t *testing.T, u string) (int, string, string) {
	t.Helper()
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func TestInvitation_flow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		allow      bool
		signIn     string
		before     func(e *env, link string) // before opening the link
		tamper     func(loc string) string   // the provider's redirect back
		wantStatus int
		expired    bool   // the link itself shows the page
		wantPage   string // substring of the page
		wantState  onboarding.InvitationState
		wantReason string
		stored     bool
	}{
		{name: "allow", allow: true, wantStatus: 200, wantPage: "Access given", wantState: onboarding.StateConsented, stored: true},
		{name: "deny", wantStatus: 200, wantPage: "Access was not given", wantState: onboarding.StateFailed, wantReason: "refused"},
		{name: "different address", allow: true, signIn: "intruder@example.net", wantStatus: 200, wantPage: "intruder@example.net, but this invitation is for Owner@Example.com", wantState: onboarding.StateFailed, wantReason: "not the account"},
		{name: "tampered state", allow: true, tamper: func(l string) string { return strings.Replace(l, "state=", "state=A", 1) }, wantStatus: 200, wantPage: "does not belong to an open invitation", wantState: onboarding.StateOpened},
		{name: "expired link", before: func(e *env, _ string) { e.now.Advance(onboarding.DefaultTTL + time.Second) }, wantStatus: 200, expired: true, wantPage: "has expired", wantState: onboarding.StateExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			inv, link, err := e.m.Invite(t.Context(), "owner@example.com", 0)
			if err != nil {
				t.Fatal(err)
			}
			if inv.State != onboarding.StatePending || inv.AccountID != "owner" || !inv.ExpiresAt.Equal(inv.CreatedAt.Add(7*24*time.Hour)) {
				t.Fatalf("invitation %+v", inv)
			}
			if tc.before != nil {
				tc.before(e, link.Reveal())
			}
			status, loc, body := get(t, link.Reveal())
			if tc.expired {
				if status != 200 || !strings.Contains(body, tc.wantPage) {
					t.Fatalf("link: %d %s", status, body)
				}
			} else {
				if status != http.StatusSeeOther || !strings.HasPrefix(loc, e.fake.AuthURL()+"?") {
					t.Fatalf("link: %d to %q, want a redirect to the provider", status, loc)
				}
				e.fake.SetSignInAs(tc.signIn)
				back, err := fakeprovider.Consent(t.Context(), loc, tc.allow, "")
				if err != nil {
					t.Fatal(err)
				}
				if tc.tamper != nil {
					back = tc.tamper(back)
				}
				if !strings.HasPrefix(back, e.srv.URL+"/callback?") {
					t.Fatalf("sent back to %q", back)
				}
				status, _, body = get(t, back)
				if status != tc.wantStatus || !strings.Contains(body, tc.wantPage) {
					t.Fatalf("callback page: %d, want %d with %q:\n%s", status, tc.wantStatus, tc.wantPage, body)
				}
			}
			got := e.m.Invitations()
			if len(got) != 1 || got[0].State != tc.wantState || !strings.Contains(got[0].Reason, tc.wantReason) {
				t.Fatalf("invitations = %+v, want state %s reason %q", got, tc.wantState, tc.wantReason)
			}
			b, _ := os.ReadFile(e.accounts)
			rt := e.fake.RefreshToken("owner@example.com")
			if hasRT := rt != "" && strings.Contains(string(b), rt); hasRT != tc.stored {
				t.Errorf("accounts.json holds the new refresh token: %v, want %v\n%s", hasRT, tc.stored, b)
			}
			if tc.stored {
				if !strings.Contains(string(b), `"consented_at": "`+e.now.Now().UTC().Format(time.RFC3339)+`"`) {
					t.Errorf("accounts.json lacks consented_at:\n%s", b)
				}
				if strings.Contains(string(b), "client_id") || strings.Contains(string(b), "web-secret") {
					t.Errorf("accounts.json repeats the provider's oauth_app:\n%s", b)
				}
				if a := e.snap.Accounts[0]; a.RefreshToken.Reveal() != rt || e.reloads < 2 {
					t.Errorf("after consent: account refresh token updated %v, reloads %d", a.RefreshToken.Reveal() == rt, e.reloads)
				}
			}
			// The link's token is in no log and not in the state file.
			tok := link.Reveal()[strings.LastIndex(link.Reveal(), "/")+1:]
			state, _ := os.ReadFile(filepath.Join(filepath.Dir(e.accounts), "invitations.json"))
			for what, s := range map[string]string{"log": e.logs.String(), "state file": string(state)} {
				if strings.Contains(s, tok) || (rt != "" && strings.Contains(s, rt)) {
					t.Errorf("a secret is in the %s:\n%s", what, s)
				}
			}
			// Used once: opening the link again shows why not.
			if tc.wantState == onboarding.StateConsented || tc.wantState == onboarding.StateFailed {
				status, _, body := get(t, link.Reveal())
				if status != 200 || !strings.Contains(body, "already used") {
					t.Errorf("reused link: %d %s", status, body)
				}
			}
		})
	}
}

func TestInvitation_persistedAndBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, _, err := e.m.Invite(t.Context(), "nobody@example.com", 0); err == nil {
		t.Error("invitation for an unknown account")
	}
	inv, link, err := e.m.Invite(t.Context(), "owner", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok := link.Reveal()[strings.LastIndex(link.Reveal(), "/")+1:]
	if len(tok) < 43 { // 256 bits in base64url
		t.Errorf("token %d chars", len(tok))
	}
	m2, err := onboarding.New(onboarding.Options{StatePath: filepath.Join(filepath.Dir(e.accounts), "invitations.json"), Now: e.now.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Invitations(); len(got) != 1 || got[0].ID != inv.ID || got[0].State != onboarding.StatePending {
		t.Errorf("reloaded invitations %+v", got)
	}
	js, _ := json.Marshal(m2.Invitations())
	if strings.Contains(string(js), tok) {
		t.Error("the token is in the invitation's JSON")
	}
	for _, p := range []string{"/", "/metrics", "/api/invitations", "/admin/accounts", "/i/" + strings.Repeat("A", 43)} {
		status, _, body := get(t, e.srv.URL+p)
		if status != 404 && !strings.Contains(body, "not valid") {
			t.Errorf("GET %s: %d, want nothing served", p, status)
		}
	}
	if status, _, body := get(t, e.srv.URL+"/assets/style.css"); status != 200 || body == "" {
		t.Errorf("assets: %d", status)
	}
}

func TestAppFor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "config.json"), `{"providers": {"outlook": {"oauth_app": {"client_id": "ms-app", "tenant": "consumers", "scopes": ["https://outlook.office.com/IMAP.AccessAsUser.All"]}}}}`)
	write(t, filepath.Join(dir, "accounts.json"), `[
	  {"account_id": "o1", "email": "o1@outlook.com", "provider": "outlook", "refresh_token": "x"},
	  {"account_id": "o2", "email": "o2@hotmail.com", "provider": "outlook", "refresh_token": "x", "oauth_token_url": "https://login.live.com/oauth20_token.srf"},
	  {"account_id": "g1", "email": "g1@example.com", "provider": "gmail", "client_id": "own", "client_secret": "own-secret", "refresh_token": "x"}]`)
	snap, _, err := config.Load(config.LoadOptions{ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"), SearchDirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	o1, err := onboarding.AppFor(snap.Accounts[0])
	if err != nil || o1.ClientID != "ms-app" || o1.Tenant != "consumers" || !strings.Contains(strings.Join(o1.Scopes(), " "), "IMAP.AccessAsUser.All") {
		t.Errorf("o1: %+v %v", o1, err)
	}
	if _, err := onboarding.AppFor(snap.Accounts[1]); err == nil || !strings.Contains(err.Error(), "consumers") {
		t.Errorf("legacy live.com account: %v, want a refusal naming the consumers tenant", err)
	}
	if g1, err := onboarding.AppFor(snap.Accounts[2]); err != nil || g1.ClientID != "own" || g1.ClientSecret.Reveal() != "own-secret" {
		t.Errorf("g1 without oauth_app: %+v %v, want its own client", g1, err)
	}
}

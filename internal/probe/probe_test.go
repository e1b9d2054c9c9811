package probe_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/probe"
)

// open starts a fake provider (plain SMTP on loopback) and a Probe over
// one account of it; edit may change the account record.
func open(t *testing.T, edit func(map[string]any)) (*probe.Probe, *fakeprovider.Provider) {
	t.Helper()
	fp, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	fp.AddAccount(fakeprovider.Account{Email: "a@example.com", ClientID: "cid", ClientSecret: "cs", RefreshToken: "1//rt-a"})
	acct := map[string]any{"account_id": "a", "email": "a@example.com", "provider": "gmail", "client_id": "cid",
		"client_secret": "cs", "refresh_token": "1//rt-a", "oauth_token_url": fp.TokenURL(),
		"oauth_endpoint": fp.SMTPAddr(), "smtp_tls": "none"}
	if edit != nil {
		edit(acct)
	}
	dir := t.TempDir()
	b, _ := json.Marshal([]any{acct})
	path := filepath.Join(dir, "accounts.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := probe.Open(probe.Options{Load: config.LoadOptions{AccountsPath: path, ConfigPath: filepath.Join(dir, "none.json"), SearchDirs: []string{}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, fp
}

func TestSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		edit      func(map[string]any)
		revoke    bool
		err       string // substring; "" for none
		delivered bool
	}{
		{name: "delivers", delivered: true},
		{name: "a revoked credential opens no session", revoke: true, err: "open upstream session"},
		{name: "a disabled account is refused", edit: func(a map[string]any) { a["disabled"] = true }, err: "is disabled"},
		{name: "a source address not on this host is refused, never replaced",
			edit: func(a map[string]any) { a["ip_address"] = "192.0.2.55" }, err: "not configured on this host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, fp := open(t, tc.edit)
			if tc.revoke {
				fp.Revoke("a@example.com")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := p.Send(ctx, "a@example.com", probe.Message{To: []string{"r@example.net"}, Subject: "s", Body: "b"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if rep.Delivered() != tc.delivered || (len(fp.Messages()) == 1) != tc.delivered {
				t.Fatalf("delivered %v (report %+v), want %v", len(fp.Messages()), rep, tc.delivered)
			}
		})
	}
}

func TestToken_forcesARequest(t *testing.T) {
	t.Parallel()
	p, fp := open(t, nil)
	for i := 1; i <= 2; i++ {
		rep, err := p.Token(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Access.Empty() || rep.Status.State != "ok" || rep.Status.Expiry.IsZero() {
			t.Fatalf("report %+v", rep)
		}
		if n := fp.Stats().TokenRequests; n != int64(i) {
			t.Fatalf("after %d calls, %d token requests", i, n)
		}
	}
}

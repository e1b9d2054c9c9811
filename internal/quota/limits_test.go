package quota_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// loadAccounts loads an accounts.json of accts (and config.json from cfg
// when not nil) and returns the accounts by id.
func loadAccounts(t *testing.T, cfg map[string]any, accts ...map[string]any) map[string]*config.Account {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("accounts.json", accts)
	if cfg != nil {
		write("config.json", cfg)
	}
	s, _, err := config.Load(config.LoadOptions{
		ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"), SearchDirs: []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*config.Account{}
	for _, a := range s.Accounts {
		out[a.ID] = a
	}
	return out
}

func gmail(rl map[string]any) map[string]any {
	a := map[string]any{"account_id": "g", "email": "g@example.com", "provider": "gmail",
		"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}
	if rl != nil {
		a["rate_limiting"] = rl
	}
	return a
}

func outlook() map[string]any {
	return map[string]any{"account_id": "o", "email": "o@example.com", "provider": "outlook",
		"client_id": "cid", "refresh_token": "rt"}
}

// TestLimitsFor_builtinDefaults: without any rate_limiting, the accounts
// get the providers' published limits (PROVIDERS.md, docs/config.md).
func TestLimitsFor_builtinDefaults(t *testing.T) {
	t.Parallel()
	accts := loadAccounts(t, nil, gmail(nil), outlook())
	tests := []struct {
		id   string
		want quota.Limits
	}{
		{"g", quota.Limits{MessagesPerDay: 2000, RecipientsPerDay: 10000, RecipientsPerMessage: 100}},
		{"o", quota.Limits{MessagesPerMinute: 30, RecipientsPerDay: 10000, RecipientsPerMessage: 500}},
	}
	for _, tc := range tests {
		if got := quota.LimitsFor(accts[tc.id]); got != tc.want {
			t.Errorf("%s: LimitsFor = %+v, want %+v", tc.id, got, tc.want)
		}
	}
}

// TestLimitsFor_zeroLiftsOneBuiltinLimit: messages_per_day 0, in the
// account or in the provider block, lifts the daily message budget and
// keeps every other built-in one.
func TestLimitsFor_zeroLiftsOneBuiltinLimit(t *testing.T) {
	t.Parallel()
	want := quota.Limits{RecipientsPerDay: 10000, RecipientsPerMessage: 100}
	inAccount := loadAccounts(t, nil, gmail(map[string]any{"messages_per_day": 0}))["g"]
	inProvider := loadAccounts(t, map[string]any{"providers": map[string]any{"gmail": map[string]any{
		"rate_limiting": map[string]any{"messages_per_day": 0}}}}, gmail(nil))["g"]
	for name, a := range map[string]*config.Account{"account": inAccount, "provider block": inProvider} {
		if got := quota.LimitsFor(a); got != want {
			t.Errorf("%s: LimitsFor = %+v, want %+v", name, got, want)
		}
	}

	// In the book: 2,001 messages in a day pass, the 101st recipient of a
	// message does not.
	b := quota.NewBook(newClock().now)
	for i := 0; i < 2001; i++ {
		if d := send(t, b, "g", want, 1); d != nil {
			t.Fatalf("message %d refused with messages_per_day 0: %+v", i+1, d)
		}
	}
	tk, d := b.Admit(t.Context(), "g", want)
	if d != nil {
		t.Fatal(d)
	}
	defer tk.Done(false)
	for i := 0; i < 100; i++ {
		if tooMany, d := tk.Rcpt(t.Context()); tooMany || d != nil {
			t.Fatalf("recipient %d: %v %+v", i+1, tooMany, d)
		}
	}
	if tooMany, _ := tk.Rcpt(t.Context()); !tooMany {
		t.Error("101st recipient of a message allowed: recipients_per_message lifted too")
	}
}

package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

func copySeed(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "accounts.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEditAccounts_keepsLayoutCommentsAndOrder(t *testing.T) {
	t.Parallel()
	p := copySeed(t, "example_accounts_with_overrides.json")
	err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
		i := f.Find("SENDER2@domain.com")
		if i < 0 {
			t.Fatal("Find failed")
		}
		return f.Set(i, map[string]any{"vmta_name": "vmta-renamed", "disabled": true})
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	for _, want := range []string{`"_comment": "Accounts configuration with optional per-account overrides"`, `"_version": "2.0"`,
		`"vmta_name": "vmta-renamed"`, `"disabled": true`, `"_comment": "This account overrides connection pool settings"`} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s", want)
		}
	}
	// Key order kept: account_id still before email before ip_address.
	i := strings.Index(s, `"account_id": "2"`)
	if i < 0 || !(strings.Index(s[i:], `"email"`) < strings.Index(s[i:], `"ip_address"`)) {
		t.Errorf("key order changed:\n%s", s)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	snap, _, err := config.Load(config.LoadOptions{AccountsPath: p, SearchDirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range snap.Accounts {
		if a.ID == "2" && (!a.Disabled || a.VMTAName != "vmta-renamed") {
			t.Errorf("edit not loaded: %+v", a)
		}
	}
}

func TestEditAccounts_invalidResultChangesNothing(t *testing.T) {
	t.Parallel()
	p := copySeed(t, "example_accounts.json")
	before, _ := os.ReadFile(p)
	err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
		return f.Set(0, map[string]any{"oauth_token_url": "http://evil.example.com/token"})
	})
	if err == nil || !strings.Contains(err.Error(), "oauth_token_url") {
		t.Fatalf("invalid edit accepted: %v", err)
	}
	after, _ := os.ReadFile(p)
	if string(before) != string(after) {
		t.Fatal("file changed by a rejected edit")
	}
	// A file that no longer parses is never written over.
	if err := os.WriteFile(p, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.EditAccounts(p, "", func(*config.AccountsFile) error { return nil }); err == nil {
		t.Fatal("wrote over an unparsable file")
	}
}

func TestEditAccounts_concurrentEditsAllLand(t *testing.T) {
	t.Parallel()
	p := copySeed(t, "example_accounts.json")
	var wg sync.WaitGroup
	const n = 20
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
				keys := []string{"account_id", "email", "provider", "client_id", "client_secret", "refresh_token"}
				return f.Add(keys, map[string]any{
					"account_id": fmt.Sprintf("c%d", i), "email": fmt.Sprintf("c%d@example.com", i), "provider": "gmail",
					"client_id": "id", "client_secret": "s", "refresh_token": "r",
				})
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f, err := config.ReadAccountsFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 4+n {
		t.Fatalf("%d accounts, want %d: edits were lost", f.Len(), 4+n)
	}
}

// TestEditAccounts_errorsNameTheRealFile: the loader checks an edit in a
// temporary file, but its errors must name accounts.json.
func TestEditAccounts_errorsNameTheRealFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{name: "bad ip_address", fields: map[string]any{"ip_address": "999.1.1.1"}, want: `field "ip_address"`},
		{name: "token URL not https", fields: map[string]any{"oauth_token_url": "http://evil.example.com/token"}, want: `field "oauth_token_url"`},
		{name: "email removed", fields: map[string]any{"email": nil}, want: `"email"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := copySeed(t, "example_accounts.json")
			err := config.EditAccounts(p, "", func(f *config.AccountsFile) error { return f.Set(0, tc.fields) })
			if err == nil {
				t.Fatal("invalid edit accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, p+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not name %s and %s", msg, p, tc.want)
			}
			if strings.Contains(msg, ".tmp-") {
				t.Errorf("error names the temporary file: %q", msg)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.File != p {
				t.Errorf("FieldError.File = %v, want %s", fe, p)
			}
		})
	}
}

// TestAccountsFile_Merge: re-adding an account changes the fields given
// and keeps the others (password, disabled, overrides, comments) in place.
func TestAccountsFile_Merge(t *testing.T) {
	t.Parallel()
	keys := []string{"account_id", "email", "provider", "client_id", "client_secret", "refresh_token", "ip_address", "vmta_name", "smtp_password"}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   []string // substrings of the record afterwards
		gone   []string // substrings it must no longer hold
	}{
		{name: "named fields change, others stay",
			fields: map[string]any{"account_id": "2", "email": "sender2@domain.com", "provider": "gmail",
				"client_id": "new-id", "client_secret": "new-secret", "refresh_token": "new-token"},
			want: []string{`"client_id": "new-id"`, `"refresh_token": "new-token"`, `"ip_address": "37.27.3.137"`,
				`"smtp_password": "plain-pw-keep"`, `"disabled": true`, `"max_connections_per_account": 60`,
				`"messages_per_hour": 15000`, `"_comment": "This account overrides connection pool settings"`},
			gone: []string{`"your-gmail-refresh-token"`}},
		{name: "a new field is added",
			fields: map[string]any{"oauth_token_url": "https://oauth2.googleapis.com/token"},
			want:   []string{`"oauth_token_url": "https://oauth2.googleapis.com/token"`, `"disabled": true`, `"smtp_password"`}},
		{name: "nil keeps the old value",
			fields: map[string]any{"ip_address": nil, "smtp_password": nil},
			want:   []string{`"ip_address": "37.27.3.137"`, `"smtp_password": "plain-pw-keep"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := copySeed(t, "example_accounts_with_overrides.json")
			err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
				i := f.Find("sender2@domain.com")
				if err := f.Set(i, map[string]any{"smtp_password": "plain-pw-keep", "disabled": true}); err != nil {
					return err
				}
				return f.Merge(i, keys, tc.fields)
			})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(p)
			s := string(b)
			start := strings.Index(s, `"account_id": "2"`)
			end := strings.Index(s, `"account_id": "3"`)
			if start < 0 || end < start {
				t.Fatalf("record 2 not found:\n%s", s)
			}
			rec := s[start:end]
			for _, w := range tc.want {
				if !strings.Contains(rec, w) {
					t.Errorf("record lacks %s:\n%s", w, rec)
				}
			}
			for _, g := range tc.gone {
				if strings.Contains(rec, g) {
					t.Errorf("record still holds %s:\n%s", g, rec)
				}
			}
			// Key order kept: email before ip_address before the overrides.
			if !(strings.Index(rec, `"email"`) < strings.Index(rec, `"ip_address"`) &&
				strings.Index(rec, `"ip_address"`) < strings.Index(rec, `"connection_settings"`)) {
				t.Errorf("key order changed:\n%s", rec)
			}
		})
	}
}

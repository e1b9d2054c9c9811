package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// TestAccountsFile_accountsResolvesAsLoadDoes: an edit in memory resolves
// to the accounts Load would give, one per record, and a record that does
// not validate is reported against the file without losing its place.
func TestAccountsFile_accountsResolvesAsLoadDoes(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"accounts.json": accountsJSON(t,
		gmailRecord("g1", "g1@example.com"),
		outlookRecord("o1", "o1@example.org").with("tenant", "contoso.example"))})
	snap, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.ReadAccountsFile(filepath.Join(dir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set(0, map[string]any{"oauth_endpoint": "smtp.example.net:465", "smtp_tls": "tls"}); err != nil {
		t.Fatal(err)
	}
	got, err := f.Accounts(snap.Providers)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SMTPAddr != "smtp.example.net:465" || got[0].TLS != upstream.TLSImplicit ||
		got[0].TokenURL != config.GmailTokenURL || got[1].TokenURL != config.MicrosoftTokenURL("contoso.example") {
		t.Fatalf("accounts = %+v", got)
	}

	if err := f.Set(1, map[string]any{"oauth_token_url": "http://collector.example/token"}); err != nil {
		t.Fatal(err)
	}
	got, err = f.Accounts(snap.Providers)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.File != f.Path || fe.Field != "oauth_token_url" {
		t.Fatalf("err = %v, want a FieldError on %s oauth_token_url", err, f.Path)
	}
	if len(got) != 2 || got[1].ID != "o1" {
		t.Errorf("accounts after a refusal = %+v", got)
	}
}

func TestCheckTokenURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want string // substring of the error; "" for none
	}{
		{"https://oauth2.googleapis.com/token", ""},
		{"http://127.0.0.1:8080/token", ""},
		{"http://127.1.2.3/token", ""},
		{"http://localhost:8080/token", ""},
		{"http://[::1]:8080/token", ""},
		{"http://collector.example/token", "must be https://"},
		{"http://127.0.0.1.collector.example/token", "must be https://"},
		{"http://localhost.collector.example/token", "must be https://"},
		{"http://[::ffff:192.0.2.1]/token", "must be https://"},
		{"ftp://127.0.0.1/token", "must be https://"},
		{"https://user:pw@collector.example/token", "user name or password"},
		{"collector.example/token", "absolute https:// URL"},
	} {
		err := config.CheckTokenURL(tc.url)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckTokenURL(%q) = %v, want %q", tc.url, err, tc.want)
		}
	}
}

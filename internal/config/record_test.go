package config_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

func TestAccountRecord_Complete(t *testing.T) {
	t.Parallel()
	base := func(mod func(r *config.AccountRecord)) config.AccountRecord {
		r := config.AccountRecord{Email: " Sales.Team@Example.com ", Provider: " Gmail", ClientID: "cid",
			ClientSecret: secret.New("cs"), RefreshToken: secret.New("rt")}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	type want struct{ email, provider, id, vmta string }
	for _, tc := range []struct {
		name      string
		rec       config.AccountRecord
		want      want
		generated []string
		err       string
	}{
		{name: "the old tool's generated names", rec: base(nil),
			want:      want{"Sales.Team@Example.com", "gmail", "gmail_sales_team_example_com", "vmta-gmail-sales.team"},
			generated: []string{"account_id", "vmta_name"}},
		{name: "given names are kept", rec: base(func(r *config.AccountRecord) { r.AccountID, r.VMTAName = "mine", "vmta-9" }),
			want: want{"Sales.Team@Example.com", "gmail", "mine", "vmta-9"}},
		{name: "outlook needs no secret", rec: base(func(r *config.AccountRecord) { r.Provider, r.ClientSecret = "outlook", secret.String{} }),
			want:      want{"Sales.Team@Example.com", "outlook", "outlook_sales_team_example_com", "vmta-outlook-sales.team"},
			generated: []string{"account_id", "vmta_name"}},
		{name: "two @", rec: base(func(r *config.AccountRecord) { r.Email = "a@b@c" }), err: "email: a valid address is required"},
		{name: "no domain", rec: base(func(r *config.AccountRecord) { r.Email = "a@" }), err: "email: a valid address is required"},
		{name: "other provider", rec: base(func(r *config.AccountRecord) { r.Provider = "yahoo" }), err: `provider: must be gmail or outlook, not "yahoo"`},
		{name: "no client id", rec: base(func(r *config.AccountRecord) { r.ClientID = "" }), err: "client_id: required"},
		{name: "no refresh token", rec: base(func(r *config.AccountRecord) { r.RefreshToken = secret.String{} }), err: "refresh_token: required"},
		{name: "gmail without secret", rec: base(func(r *config.AccountRecord) { r.ClientSecret = secret.String{} }), err: "client_secret: required for gmail"},
		{name: "token URL in the clear", rec: base(func(r *config.AccountRecord) { r.TokenURL = "http://collector.example/token" }), err: "oauth_token_url: "},
		{name: "not an IP", rec: base(func(r *config.AccountRecord) { r.IPAddress = "999.1.1.1" }), err: "ip_address: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.rec
			err := r.Complete()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Complete: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := (want{r.Email, r.Provider, r.AccountID, r.VMTAName}); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if !slices.Equal(r.Generated, tc.generated) {
				t.Errorf("Generated %v, want %v", r.Generated, tc.generated)
			}
		})
	}
}

// TestAccountRecord_JSON: the record reads the admin API's body, secrets
// included, and Generated cannot be set from outside.
func TestAccountRecord_JSON(t *testing.T) {
	t.Parallel()
	var r config.AccountRecord
	body := `{"email": "a@example.com", "provider": "gmail", "client_id": "c", "client_secret": "s3cret",
		"refresh_token": "1//planted", "oauth_token_url": "https://t.example/token", "oauth_endpoint": "smtp.example.com:587",
		"ip_address": "203.0.113.10", "vmta_name": "v", "smtp_password": "pw", "account_id": "id", "Generated": ["account_id"]}`
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	got := r.Fields()
	want := map[string]any{"email": "a@example.com", "provider": "gmail", "client_id": "c", "client_secret": "s3cret",
		"refresh_token": "1//planted", "oauth_token_url": "https://t.example/token", "oauth_endpoint": "smtp.example.com:587",
		"ip_address": "203.0.113.10", "vmta_name": "v", "smtp_password": "pw", "account_id": "id"}
	if len(got) != len(want) {
		t.Errorf("Fields %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if r.Generated != nil {
		t.Errorf("Generated read from JSON: %v", r.Generated)
	}
	if j, _ := json.Marshal(r); strings.Contains(string(j), "planted") || strings.Contains(string(j), "s3cret") {
		t.Errorf("secrets written to JSON: %s", j)
	}
}

func TestAccountsFile_Upsert(t *testing.T) {
	t.Parallel()
	const file = `{"_comment": "kept", "accounts": [
  {"account_id": "legacy-1", "email": "old@example.com", "provider": "gmail", "client_id": "c", "client_secret": "s",
   "refresh_token": "r", "vmta_name": "vmta-custom", "smtp_password": "pw", "disabled": true, "_note": "kept"}
]}`
	completed := func(email, id string) *config.AccountRecord {
		r := &config.AccountRecord{Email: email, AccountID: id, Provider: "gmail", ClientID: "c2",
			ClientSecret: secret.New("s2"), RefreshToken: secret.New("r2")}
		if err := r.Complete(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		name      string
		rec       *config.AccountRecord
		overwrite bool
		index     int
		err       error
		want      []string // substrings of the file afterwards
		gone      []string
	}{
		{name: "a new account is appended", rec: completed("new@example.com", ""), index: 1,
			want: []string{`"account_id": "gmail_new_example_com"`, `"vmta_name": "vmta-gmail-new"`, `"_note": "kept"`}},
		{name: "an existing email is refused", rec: completed("OLD@example.com", ""), err: config.ErrAccountExists,
			gone: []string{`"c2"`}},
		{name: "an existing account_id is refused", rec: completed("other@example.com", "legacy-1"), err: config.ErrAccountExists},
		{name: "overwrite keeps what it does not give and what was generated", rec: completed("old@example.com", ""), overwrite: true,
			want: []string{`"account_id": "legacy-1"`, `"vmta_name": "vmta-custom"`, `"client_id": "c2"`, `"refresh_token": "r2"`,
				`"smtp_password": "pw"`, `"disabled": true`, `"_note": "kept"`},
			gone: []string{`gmail_old_example_com`, `vmta-gmail-old`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "accounts.json")
			writeFile(t, path, file)
			f, err := config.ReadAccountsFile(path)
			if err != nil {
				t.Fatal(err)
			}
			i, err := f.Upsert(tc.rec, tc.overwrite)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Upsert: %v, want %v", err, tc.err)
			}
			if err == nil && i != tc.index {
				t.Errorf("index %d, want %d", i, tc.index)
			}
			checkText(t, string(f.Bytes()), tc.want, tc.gone)
		})
	}
}

// TestNewAccountsFile: a generated file is the object layout with its
// comment, and loads.
func TestNewAccountsFile(t *testing.T) {
	t.Parallel()
	f := config.NewAccountsFile("generated by a test")
	r := &config.AccountRecord{AccountID: "g1", Email: "g1@example.com", Provider: "gmail", ClientID: "c",
		ClientSecret: secret.New("s"), RefreshToken: secret.New("r")}
	if err := f.Append(r); err != nil {
		t.Fatal(err)
	}
	want := `{
  "_comment": "generated by a test",
  "accounts": [
    {
      "account_id": "g1",
      "email": "g1@example.com",
      "provider": "gmail",
      "client_id": "c",
      "client_secret": "s",
      "refresh_token": "r"
    }
  ]
}
`
	if got := string(f.Bytes()); got != want {
		t.Fatalf("Bytes:\n%s\nwant:\n%s", got, want)
	}
	path := filepath.Join(t.TempDir(), "accounts.json")
	writeFile(t, path, want)
	snap, _, err := config.Load(config.LoadOptions{AccountsPath: path, SearchDirs: []string{}})
	if err != nil || len(snap.Accounts) != 1 || snap.Accounts[0].ID != "g1" {
		t.Fatalf("Load: %v", err)
	}
}

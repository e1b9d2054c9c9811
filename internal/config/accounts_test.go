package config_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

func TestLoad_brokenAccountsNameFileAccountAndField(t *testing.T) {
	t.Parallel()
	g1 := gmailRecord("g1", "one@example.com")
	tests := []struct {
		name    string
		body    func(t *testing.T) string
		account string // Account of the FieldError
		field   string
		want    string // in the message
	}{
		{"bad JSON", raw(`[{"account_id": "g1",}]`), "", "", "invalid JSON at line 1, column 22"},
		{"empty file", raw(""), "", "", "empty file"},
		{"trailing data", raw(`[] []`), "", "", "unexpected data"},
		{"not a list", raw(`"accounts"`), "", "", "an accounts file is an array"},
		{"accounts not an array", raw(`{"accounts": {}}`), "", "accounts", "must be an array"},
		{"record not an object", raw(`["g1"]`), "#1", "", "must be a JSON object"},
		{"missing account_id", recs(g1.with("account_id", nil)), "#1", "account_id", "required"},
		{"missing email", recs(g1.with("email", nil)), `"g1" (#1)`, "email", "required"},
		{"missing provider", recs(g1.with("provider", "")), `"g1" (#1)`, "provider", "required"},
		{"missing client_id", recs(g1.with("client_id", nil)), `"g1" (#1)`, "client_id", "required"},
		{"gmail without client_secret", recs(g1.with("client_secret", nil)), `"g1" (#1)`, "client_secret", "required"},
		{"missing refresh_token", recs(g1.with("refresh_token", nil)), `"g1" (#1)`, "refresh_token", "required"},
		{"token URL not a URL", recs(g1.with("oauth_token_url", "oauth2.googleapis.com/token")), `"g1" (#1)`, "oauth_token_url", "absolute https://"},
		{"token URL ftp", recs(g1.with("oauth_token_url", "ftp://example.com/token")), `"g1" (#1)`, "oauth_token_url", "must be https://"},
		{"token URL http to a remote host", recs(g1.with("oauth_token_url", "http://oauth2.googleapis.com/token")), `"g1" (#1)`, "oauth_token_url", "must be https:// (http:// only to a loopback host)"},
		{"duplicate email", recs(g1, gmailRecord("g2", "One@Example.COM")), `"g2" (#2)`, "email", `also the email of account "g1" (#1)`},
		{"duplicate account_id", recs(g1, gmailRecord("g1", "two@example.com")), `"g1" (#2)`, "account_id", `duplicate of account "g1" (#1)`},
		{"bad ip_address", recs(g1.with("ip_address", "203.0.113.300")), `"g1" (#1)`, "ip_address", "not an IP address"},
		{"unknown provider without token URL", recs(g1.with("provider", "yahoo").with("oauth_endpoint", "smtp.mail.yahoo.com:587")), `"g1" (#1)`, "oauth_token_url", `provider "yahoo" has no built-in token endpoint`},
		{"unknown provider without endpoint", recs(g1.with("provider", "yahoo").with("oauth_token_url", "https://api.login.yahoo.com/oauth2/get_token")), `"g1" (#1)`, "oauth_endpoint", "required"},
		{"smtp_tls none to a remote host", recs(g1.with("smtp_tls", "none")), `"g1" (#1)`, "smtp_tls", `allowed only to a loopback host, not "smtp.gmail.com"`},
		{"smtp_tls unknown", recs(g1.with("smtp_tls", "ssl")), `"g1" (#1)`, "smtp_tls", `not "ssl"`},
		{"auth_mechanism unknown", recs(g1.with("auth_mechanism", "plain")), `"g1" (#1)`, "auth_mechanism", `not "plain"`},
		{"endpoint without port", recs(g1.with("oauth_endpoint", "smtp.gmail.com")), `"g1" (#1)`, "oauth_endpoint", "must be host:port"},
		{"endpoint with a named port", recs(g1.with("oauth_endpoint", "smtp.gmail.com:submission")), `"g1" (#1)`, "oauth_endpoint", "must be a number"},
		{"email without @", recs(g1.with("email", "one.example.com")), `"g1" (#1)`, "email", "exactly one @"},
		{"email with two @", recs(g1.with("email", "a@b@example.com")), `"g1" (#1)`, "email", "exactly one @"},
		{"email without local part", recs(g1.with("email", "@example.com")), `"g1" (#1)`, "email", "local part"},
		{"number as text", recs(g1.with("max_concurrent_messages", "10")), `"g1" (#1)`, "max_concurrent_messages", "must be a number, not a string"},
		{"zero concurrency", recs(g1.with("max_concurrent_messages", 0)), `"g1" (#1)`, "max_concurrent_messages", "at least 1"},
		{"fractional pool size", recs(g1.with("connection_settings", map[string]any{"max_connections_per_account": 1.5})), `"g1" (#1)`, "connection_settings.max_connections_per_account", "whole number"},
		{"negative age", recs(g1.with("connection_settings", map[string]any{"connection_max_age_seconds": -1})), `"g1" (#1)`, "connection_settings.connection_max_age_seconds", "positive"},
		{"pool override not an object", recs(g1.with("connection_settings", 5)), `"g1" (#1)`, "connection_settings", "must be a JSON object"},
		{"malformed bcrypt hash", recs(g1.with("smtp_password", "$2a$10$tooshort")), `"g1" (#1)`, "smtp_password", "malformed bcrypt hash"},
		{"bcrypt hash cut short", recs(g1.with("smtp_password", testHash+"x")), `"g1" (#1)`, "smtp_password", "61 characters"},
		{"bcrypt bad cost", recs(g1.with("smtp_password", "$2b$99"+testHash[6:])), `"g1" (#1)`, "smtp_password", "malformed bcrypt hash"},
		{"boolean as text", recs(g1.with("retry", map[string]any{"jitter_enabled": "yes"})), `"g1" (#1)`, "retry.jitter_enabled", "true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"accounts.json": tc.body(t)})
			s, _, err := loadDir(t, dir)
			if err == nil {
				t.Fatalf("loaded %d accounts, want an error", len(s.Accounts))
			}
			if s != nil {
				t.Error("got a snapshot along with the error")
			}
			fe, ok := errors.AsType[*config.FieldError](err)
			if !ok {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if !strings.HasSuffix(fe.File, "accounts.json") || fe.Account != tc.account || fe.Field != tc.field || !strings.Contains(fe.Message, tc.want) {
				t.Errorf("got %#v\nwant account %s, field %q, message containing %q", fe, tc.account, tc.field, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, "accounts.json: ") {
				t.Errorf("error text does not name the file: %s", msg)
			}
		})
	}
}

// raw returns a body as written; recs renders records.
func raw(s string) func(*testing.T) string { return func(*testing.T) string { return s } }

func recs(rs ...record) func(*testing.T) string {
	return func(t *testing.T) string { return accountsJSON(t, rs...) }
}

func TestLoad_allErrorsAreReported(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"config.json": `{"global": {"smtp": {"max_recipients": "many"}}}`,
		"accounts.json": accountsJSON(t,
			gmailRecord("g1", "one@example.com").with("ip_address", "nope"),
			gmailRecord("g2", "two").with("refresh_token", nil),
		),
	})
	_, _, err := loadDir(t, dir)
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) || len(j.Unwrap()) != 4 {
		t.Fatalf("want 4 joined errors, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`config.json: field "global.smtp.max_recipients": must be a number`,
		`accounts.json: account "g1" (#1): field "ip_address"`,
		`accounts.json: account "g2" (#2): field "email"`,
		`accounts.json: account "g2" (#2): field "refresh_token": required`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestLoad_accountResolution(t *testing.T) {
	t.Parallel()
	g := gmailRecord("g1", "one@example.com")
	tests := []struct {
		name  string
		rec   record
		check func(t *testing.T, a *config.Account)
	}{
		{"gmail defaults", g, func(t *testing.T, a *config.Account) {
			if a.TokenURL != config.GmailTokenURL || a.SMTPAddr != "smtp.gmail.com:587" || a.TLS != upstream.TLSStartTLS ||
				a.Mechanism != upstream.MechXOAUTH2 || a.MaxConcurrentMessages != 200 || a.Pool.MaxConnectionsPerAccount != 10 {
				t.Errorf("%+v", a)
			}
		}},
		{"provider is case-insensitive", g.with("provider", "GMail"), func(t *testing.T, a *config.Account) {
			if a.Provider != "gmail" || a.TokenURL != config.GmailTokenURL {
				t.Errorf("%+v", a)
			}
		}},
		{"outlook without client_secret", outlookRecord("o1", "o@example.com"), func(t *testing.T, a *config.Account) {
			if a.SMTPAddr != "smtp.office365.com:587" || a.Pool.MaxConnectionsPerAccount != 3 || a.MaxConcurrentMessages != 150 {
				t.Errorf("%+v", a)
			}
		}},
		{"custom provider uses the default block", g.with("provider", "Yahoo").
			with("oauth_endpoint", "smtp.mail.yahoo.com:465").with("smtp_tls", "TLS").
			with("oauth_token_url", "https://api.login.yahoo.com/oauth2/get_token").with("auth_mechanism", "oauthbearer"),
			func(t *testing.T, a *config.Account) {
				if a.Provider != "yahoo" || a.Pool.MaxConnectionsPerAccount != 5 || a.MaxConcurrentMessages != 100 ||
					a.TLS != upstream.TLSImplicit || a.Mechanism != upstream.MechOAUTHBEARER {
					t.Errorf("%+v", a)
				}
			}},
		{"http token URL to localhost", g.with("oauth_token_url", "http://localhost:8080/token"), func(t *testing.T, a *config.Account) {
			if a.TokenURL != "http://localhost:8080/token" {
				t.Errorf("%+v", a)
			}
		}},
		{"cleartext to a loopback endpoint", g.with("oauth_endpoint", "[::1]:2526").with("smtp_tls", "none"), func(t *testing.T, a *config.Account) {
			if a.TLS != upstream.TLSNone || a.SMTPAddr != "[::1]:2526" {
				t.Errorf("%+v", a)
			}
		}},
		{"ip address and numeric id", g.with("ip_address", "2001:db8::10").with("account_id", 7), func(t *testing.T, a *config.Account) {
			if a.ID != "7" || a.IPAddress != netip.MustParseAddr("2001:db8::10") {
				t.Errorf("%+v", a)
			}
		}},
		{"empty optional strings are absent", g.with("ip_address", "").with("oauth_token_url", "").with("vmta_name", nil), func(t *testing.T, a *config.Account) {
			if a.IPAddress.IsValid() || a.TokenURL != config.GmailTokenURL {
				t.Errorf("%+v", a)
			}
		}},
		{"bcrypt password", g.with("smtp_password", testHash), func(t *testing.T, a *config.Account) {
			if !a.PasswordHashed || a.SMTPPassword.Reveal() != testHash {
				t.Errorf("%+v", a)
			}
		}},
		{"plain password", g.with("smtp_password", "hunter2"), func(t *testing.T, a *config.Account) {
			if a.PasswordHashed || a.SMTPPassword.Reveal() != "hunter2" {
				t.Errorf("%+v", a)
			}
		}},
		{"scope and whole floats", g.with("scope", "https://mail.google.com/").with("max_concurrent_messages", 12.0), func(t *testing.T, a *config.Account) {
			if a.Scope != "https://mail.google.com/" || a.MaxConcurrentMessages != 12 {
				t.Errorf("%+v", a)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"accounts.json": accountsJSON(t, tc.rec)})
			s, _, err := loadDir(t, dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s.Accounts[0])
		})
	}
}

func TestLoad_accountWarnings(t *testing.T) {
	t.Parallel()
	g := gmailRecord("g1", "one@example.com")
	tests := []struct {
		name  string
		rec   record
		field string
		want  string // "" means: no warning on field
	}{
		{"plain password", g.with("smtp_password", "hunter2"), "smtp_password", "plain-text smtp_password; use xoauth2-proxy hash-password"},
		{"bcrypt password", g.with("smtp_password", testHash), "smtp_password", ""},
		{"unknown key", g.with("smtp_pasword", "x"), "smtp_pasword", "unknown key"},
		{"unknown nested key", g.with("retry", map[string]any{"max_tries": 3}), "retry.max_tries", "unknown key"},
		{"comment key", g.with("_note", "x"), "_note", ""},
		{"outlook session cap", outlookRecord("o1", "o@example.com").with("connection_settings", map[string]any{"max_connections_per_account": 4}),
			"connection_settings.max_connections_per_account", "Microsoft"},
		{"port 465 with starttls", g.with("oauth_endpoint", "smtp.gmail.com:465"), "smtp_tls", `"tls"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"accounts.json": accountsJSON(t, tc.rec)})
			_, ws, err := loadDir(t, dir)
			if err != nil {
				t.Fatal(err)
			}
			w, found := findWarning(ws, tc.field, tc.want)
			switch {
			case tc.want == "" && found:
				t.Errorf("unexpected warning %v", w)
			case tc.want != "" && !found:
				t.Errorf("no warning on %q containing %q; got %v", tc.field, tc.want, ws)
			case found && !strings.Contains(w.String(), `accounts.json: account "`):
				t.Errorf("warning does not name file and account: %v", w)
			}
		})
	}
}

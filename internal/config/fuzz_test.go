package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// FuzzLoadAccounts feeds arbitrary bytes to the accounts parser: it must
// never panic, every problem must be a *FieldError about the file, and an
// accepted file must yield complete accounts.
func FuzzLoadAccounts(f *testing.F) {
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"accounts": [{"account_id": "g1", "email": "a@b", "provider": "gmail", "client_id": "c",
		"client_secret": "s", "refresh_token": "r", "connection_settings": {"max_connections_per_account": 2.0}}]`))
	f.Add([]byte(`[{"account_id": 1, "email": "a@b", "provider": "x", "client_id": "c", "refresh_token": "r",
		"oauth_endpoint": "[::1]:25", "smtp_tls": "none", "oauth_token_url": "http://localhost/t",
		"smtp_password": "$2y$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"}]`))
	f.Add([]byte(`[{"email": "a@b@c", "max_concurrent_messages": -1e400, "retry": {"max_delay_seconds": 1e20}}, null, 3]`))
	f.Add([]byte("\xef\xbb\xbf[{\"ip_address\": \"fe80::1%eth0\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		accounts, _, err := config.ParseAccounts(data)
		if err != nil {
			var j interface{ Unwrap() []error }
			if !errors.As(err, &j) {
				t.Fatalf("error is not a joined list: %v", err)
			}
			for _, e := range j.Unwrap() {
				fe, ok := e.(*config.FieldError)
				if !ok || fe.File != "fuzz.json" || fe.Message == "" {
					t.Fatalf("problem %#v is not a *FieldError about fuzz.json", e)
				}
			}
			return
		}
		for _, a := range accounts {
			if a.ID == "" || strings.Count(a.Email, "@") != 1 || a.TokenURL == "" || a.SMTPAddr == "" ||
				a.RefreshToken.Empty() || a.MaxConcurrentMessages < 1 || a.Pool.MaxConnectionsPerAccount < 1 {
				t.Fatalf("accepted an incomplete account: %+v", a)
			}
		}
	})
}

package importer_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

func TestRecord_Normalise(t *testing.T) {
	t.Parallel()
	type want struct{ provider, id, vmta, url string }
	for _, tc := range []struct {
		name     string
		rec      config.AccountRecord
		fallback string
		want     want
		err      string
	}{
		{name: "gmail.com", rec: rec("Sales.Team@Gmail.com", "s"),
			want: want{"gmail", "gmail_sales_team_gmail_com", "vmta-gmail-sales.team", ""}},
		{name: "hotmail country domain", rec: rec("promo@hotmail.co.uk", ""),
			want: want{"outlook", "outlook_promo_hotmail_co_uk", "vmta-outlook-promo", importer.LiveTokenURL}},
		{name: "workspace by default", rec: rec("team@example.com", "s"),
			want: want{"gmail", "gmail_team_example_com", "vmta-gmail-team", ""}},
		{name: "workspace domain with --provider outlook", rec: rec("team@example.com", ""), fallback: "Outlook",
			want: want{"outlook", "outlook_team_example_com", "vmta-outlook-team", ""}},
		{name: "--provider does not override a known domain", rec: rec("x@gmail.com", "s"), fallback: "outlook",
			want: want{"gmail", "gmail_x_gmail_com", "vmta-gmail-x", ""}},
		{name: "given values are kept", rec: func() config.AccountRecord {
			r := rec("x@outlook.com", "")
			r.AccountID, r.VMTAName, r.TokenURL, r.Provider = "mine", "vmta-9", "https://t.example/token", "OUTLOOK"
			return r
		}(), want: want{"outlook", "mine", "vmta-9", "https://t.example/token"}},
		{name: "gmail needs a secret", rec: rec("x@gmail.com", ""), err: "client_secret: required for gmail"},
		{name: "unknown provider", rec: rec("x@example.com", "s"), fallback: "yahoo", err: `provider: must be gmail or outlook, not "yahoo"`},
		{name: "bad email", rec: rec("nope", "s"), err: "email: a valid address is required"},
		{name: "bad ip", rec: func() config.AccountRecord { r := rec("x@gmail.com", "s"); r.IPAddress = "x"; return r }(), err: "ip_address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.rec
			err := importer.Normalise(&r, tc.fallback)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := (want{r.Provider, r.AccountID, r.VMTAName, r.TokenURL}); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func rec(email, clientSecret string) config.AccountRecord {
	return config.AccountRecord{Email: email, ClientID: "cid", RefreshToken: secret.New("rt-" + email), ClientSecret: secret.New(clientSecret)}
}

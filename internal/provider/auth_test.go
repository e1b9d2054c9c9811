package provider_test

import (
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

func TestClassifyAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		r                    reply.Reply
		challenge, rejectsTk bool
		want                 provider.Auth
	}{
		{"Gmail challenge 401, then 535", reply.New(535, "5.7.8", "Username and Password not accepted"), true, true, provider.TokenRejected},
		{"challenge not about the token", reply.New(535, "5.7.8", "Username and Password not accepted"), true, false, provider.AuthRefused},
		{"Microsoft HVE token expiring", reply.New(501, "5.5.127", "token will expire soon"), false, false, provider.TokenRejected},
		{"Microsoft HVE bad XOAUTH2 data", reply.New(501, "5.5.124", "invalid XOAUTH2 auth data"), false, false, provider.TokenRejected},
		{"Microsoft bare 535", reply.New(535, "5.7.3", "Authentication unsuccessful"), false, false, provider.PlainRefusal},
		{"Microsoft SMTP AUTH disabled", reply.New(535, "5.7.139", "SmtpClientAuthentication is disabled"), false, false, provider.AuthRefused},
		{"another 5xx", reply.New(504, "5.5.4", "unrecognized authentication type"), false, false, provider.AuthRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := provider.ClassifyAuth(tc.r, tc.challenge, tc.rejectsTk); got != tc.want {
				t.Errorf("ClassifyAuth = %d, want %d", got, tc.want)
			}
		})
	}
}

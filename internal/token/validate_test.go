package token_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

func TestValidateURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"google https", "https://oauth2.googleapis.com/token", true},
		{"microsoft https", "https://login.microsoftonline.com/common/oauth2/v2.0/token", true},
		{"https upper-case scheme", "HTTPS://login.live.com/oauth20_token.srf", true},
		{"http loopback v4", "http://127.0.0.1:8080/token", true},
		{"http loopback v4 other", "http://127.1.2.3/token", true},
		{"http localhost", "http://localhost:9000/token", true},
		{"http LOCALHOST", "http://LOCALHOST/token", true},
		{"http loopback v6", "http://[::1]:8080/token", true},
		{"http public host", "http://example.com/token", false},
		{"http public ip", "http://192.0.2.1/token", false},
		{"http localhost lookalike", "http://localhost.example.com/token", false},
		{"http unspecified", "http://0.0.0.0/token", false},
		{"ftp", "ftp://example.com/token", false},
		{"no scheme", "oauth2.googleapis.com/token", false},
		{"garbage", "::not a url::", false},
		{"control character", "https://example.com/\x00", false},
		{"empty", "", false},
		{"no host", "https:///token", false},
		{"opaque", "https:example.com", false},
		{"user info", "https://user:pw-PLANTED@example.com/token", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := token.ValidateURL(tc.url)
			if (err == nil) != tc.ok {
				t.Errorf("ValidateURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), "PLANTED") {
				t.Errorf("error repeats the URL's user info: %v", err)
			}
		})
	}
}

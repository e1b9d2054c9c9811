package fakeprovider_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

func TestToken_refreshIssuesAccessToken(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{AccessTokenTTL: 90 * time.Minute})
	p.AddAccount(fakeprovider.Account{Email: "a@example.com", ClientID: "cid", ClientSecret: "sec", RefreshToken: "rt-1"})
	tc := newTokenClient(t, p)

	status, body := tc.post(refreshForm("cid", "sec", "rt-1"))
	if status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	if tok, _ := body["access_token"].(string); tok == "" {
		t.Errorf("no access_token in %v", body)
	}
	if body["token_type"] != "Bearer" || body["scope"] != "https://mail.google.com/" || body["expires_in"] != float64(5400) {
		t.Errorf("body %v", body)
	}
	if _, ok := body["refresh_token"]; ok {
		t.Errorf("refresh_token without rotation: %v", body)
	}
	// Google does not rotate: the same refresh token works again.
	status, body2 := tc.post(refreshForm("cid", "sec", "rt-1"))
	if status != http.StatusOK || body2["access_token"] == body["access_token"] {
		t.Errorf("second refresh: %d %v", status, body2)
	}
	if got := p.RefreshToken("A@example.com"); got != "rt-1" {
		t.Errorf("RefreshToken = %q", got)
	}
	if st := p.Stats(); st.TokenRequests != 2 || st.TokenRefreshes != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestToken_rotationKillsTheOldRefreshToken(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.AddAccount(fakeprovider.Account{Email: "m@example.com", ClientID: "cid", RefreshToken: "rt-old"})
	tc := newTokenClient(t, p)

	status, body := tc.post(refreshForm("cid", "", "rt-old"))
	if status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	next, _ := body["refresh_token"].(string)
	if next == "" || next == "rt-old" {
		t.Fatalf("refresh_token %q", next)
	}
	if got := p.RefreshToken("m@example.com"); got != next {
		t.Errorf("RefreshToken = %q, want %q", got, next)
	}
	status, body = tc.post(refreshForm("cid", "", "rt-old"))
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("old token: %d %v", status, body)
	}
	status, body = tc.post(refreshForm("cid", "", next))
	if status != http.StatusOK || body["refresh_token"] == next {
		t.Errorf("new token: %d %v", status, body)
	}
}

func TestToken_errors(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	p.AddAccount(fakeprovider.Account{Email: "conf@example.com", ClientID: "cid", ClientSecret: "sec", RefreshToken: "rt-conf"})
	p.AddAccount(fakeprovider.Account{Email: "pub@example.com", ClientID: "pubcid", RefreshToken: "rt-pub"})
	p.AddAccount(fakeprovider.Account{Email: "gone@example.com", RefreshToken: "rt-gone"})
	p.Revoke("GONE@example.com")
	tc := newTokenClient(t, p)

	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"wrong secret", refreshForm("cid", "nope", "rt-conf"), 401, "invalid_client"},
		{"missing secret", refreshForm("cid", "", "rt-conf"), 401, "invalid_client"},
		{"wrong client id", refreshForm("other", "sec", "rt-conf"), 401, "invalid_client"},
		{"public client, any secret", refreshForm("pubcid", "whatever", "rt-pub"), 200, ""},
		{"unknown refresh token", refreshForm("cid", "sec", "rt-unknown"), 400, "invalid_grant"},
		{"revoked", refreshForm("", "", "rt-gone"), 400, "invalid_grant"},
		{"no refresh token", refreshForm("cid", "sec", ""), 400, "invalid_request"},
		{"other grant", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := tc.post(tt.form)
			if status != tt.wantStatus || (tt.wantError != "" && body["error"] != tt.wantError) {
				t.Errorf("got %d %v, want %d %s", status, body, tt.wantStatus, tt.wantError)
			}
		})
	}
	t.Run("revoked description", func(t *testing.T) {
		t.Parallel()
		_, body := tc.post(refreshForm("", "", "rt-gone"))
		if body["error_description"] != "Token has been expired or revoked." {
			t.Errorf("body %v", body)
		}
	})
}

func TestToken_basicClientAuth(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	p.AddAccount(fakeprovider.Account{Email: "a@example.com", ClientID: "cid", ClientSecret: "sec", RefreshToken: "rt"})
	tc := newTokenClient(t, p)
	req, err := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader("grant_type=refresh_token&refresh_token=rt"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("cid", "sec")
	resp, err := tc.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestToken_revokeAndReAdd(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	p.AddAccount(fakeprovider.Account{Email: "a@example.com"})
	rt := p.RefreshToken("a@example.com")
	if rt == "" {
		t.Fatal("no generated refresh token")
	}
	tc := newTokenClient(t, p)
	if status, _ := tc.post(refreshForm("x", "y", rt)); status != http.StatusOK {
		t.Fatalf("before revoke: %d", status)
	}
	p.Revoke("a@example.com")
	if status, body := tc.post(refreshForm("x", "y", rt)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("after revoke: %d %v", status, body)
	}
	p.AddAccount(fakeprovider.Account{Email: "a@example.com", RefreshToken: "rt-new"})
	if status, _ := tc.post(refreshForm("x", "y", "rt-new")); status != http.StatusOK {
		t.Errorf("after re-consent: %d", status)
	}
}

func TestToken_endpointDown(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	p.AddAccount(fakeprovider.Account{Email: "a@example.com", RefreshToken: "rt"})
	tc := newTokenClient(t, p)
	p.SetTokenEndpointDown(true)
	if status, body := tc.post(refreshForm("", "", "rt")); status != http.StatusServiceUnavailable {
		t.Errorf("down: %d %v", status, body)
	}
	p.SetTokenEndpointDown(false)
	if status, body := tc.post(refreshForm("", "", "rt")); status != http.StatusOK {
		t.Errorf("up again: %d %v", status, body)
	}
	if st := p.Stats(); st.TokenRequests != 2 || st.TokenRefreshes != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestToken_onlyPOST(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	resp, err := newTokenClient(t, p).hc.Get(p.TokenURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

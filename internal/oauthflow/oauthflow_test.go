package oauthflow_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

const redirect = "http://127.0.0.1:1/callback"

func startFake(t *testing.T) *fakeprovider.Provider {
	t.Helper()
	p, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func appFor(p *fakeprovider.Provider, provider string) oauthflow.App {
	return oauthflow.App{Provider: provider, ClientID: "cid", ClientSecret: secret.New("csecret"),
		AuthURL: p.AuthURL(), TokenURL: p.TokenURL(), DeviceURL: p.DeviceURL()}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestFlow_authorizationCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		provider string
		allow    bool
		signIn   string                       // "" keeps the login hint
		tamper   func(*oauthflow.Request)     // after Start
		edit     func(cb *oauthflow.Callback) // after the redirect
		wantErr  error
		wantText string // substring of the error
	}{
		{name: "gmail allow", provider: oauthflow.Gmail, allow: true},
		{name: "outlook allow", provider: oauthflow.Outlook, allow: true},
		{name: "other address signs in", provider: oauthflow.Gmail, allow: true, signIn: "someone.else@example.org"},
		{name: "deny", provider: oauthflow.Gmail, wantErr: oauthflow.ErrDenied},
		{name: "tampered state", provider: oauthflow.Gmail, allow: true, edit: func(cb *oauthflow.Callback) { cb.State += "x" }, wantErr: oauthflow.ErrStateMismatch},
		{name: "wrong PKCE verifier", provider: oauthflow.Outlook, allow: true, tamper: func(r *oauthflow.Request) { r.Verifier = secret.New(strings.Repeat("v", 43)) }, wantText: "Invalid code verifier"},
		{name: "code used twice", provider: oauthflow.Gmail, allow: true, edit: nil, wantText: "reuse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startFake(t)
			app := appFor(p, tc.provider)
			req, err := app.Start(redirect, "owner@example.com")
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(req.URL)
			if q := u.Query(); q.Get("code_challenge_method") != "S256" || q.Get("state") != req.State.Reveal() || q.Get("login_hint") != "owner@example.com" {
				t.Fatalf("authorization URL lacks PKCE, state or hint: %s", req.URL)
			}
			if strings.Contains(req.URL, req.Verifier.Reveal()) {
				t.Fatal("the verifier is in the authorization URL")
			}
			if tc.tamper != nil {
				tc.tamper(&req)
			}
			loc, err := fakeprovider.Consent(ctx(t), req.URL, tc.allow, tc.signIn)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(loc, redirect+"?") {
				t.Fatalf("sent back to %q, want the redirect URI", loc)
			}
			cb, err := oauthflow.ParseCallback(loc)
			if err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(&cb)
			}
			g, err := app.Finish(ctx(t), req, cb)
			if tc.wantText == "reuse" {
				if err != nil {
					t.Fatal(err)
				}
				_, err = app.Finish(ctx(t), req, cb)
				if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
					t.Fatalf("second exchange of one code: %v, want invalid_grant", err)
				}
				return
			}
			switch {
			case tc.wantErr != nil || tc.wantText != "":
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("Finish = %v, want %v %q", err, tc.wantErr, tc.wantText)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			want := "owner@example.com"
			if tc.signIn != "" {
				want = tc.signIn
			}
			if g.Email != want || g.RefreshToken.Empty() || g.RefreshToken.Reveal() != p.RefreshToken(want) {
				t.Errorf("grant = email %q, refresh token known to the provider: %v; want %q", g.Email, g.RefreshToken.Reveal() == p.RefreshToken(want), want)
			}
		})
	}
}

func TestFlow_scopes(t *testing.T) {
	t.Parallel()
	gm := oauthflow.App{Provider: oauthflow.Gmail}.Scopes()
	ms := oauthflow.App{Provider: oauthflow.Outlook, ExtraScopes: []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}}.Scopes()
	if strings.Join(gm, " ") != "https://mail.google.com/ openid email" {
		t.Errorf("gmail scopes %q", gm)
	}
	if strings.Join(ms, " ") != "https://outlook.office.com/SMTP.Send offline_access openid email profile https://outlook.office.com/IMAP.AccessAsUser.All" {
		t.Errorf("outlook scopes %q", ms)
	}
	a, err := oauthflow.App{Provider: oauthflow.Outlook, ClientID: "c", Tenant: oauthflow.TenantConsumers}.Endpoints()
	if err != nil || a.AuthURL != "https://login.microsoftonline.com/consumers/oauth2/v2.0/authorize" || a.DeviceURL != "https://login.microsoftonline.com/consumers/oauth2/v2.0/devicecode" {
		t.Errorf("consumers endpoints %+v %v", a, err)
	}
	if _, err := (oauthflow.App{Provider: oauthflow.Gmail}).Endpoints(); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Errorf("no client id: %v", err)
	}
}

func TestFlow_device(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		provider string
		act      func(p *fakeprovider.Provider, code string)
		wantErr  error
		wantText string
	}{
		{name: "approved after pending", provider: oauthflow.Outlook, act: func(p *fakeprovider.Provider, c string) { p.ApproveDevice(c, "dev@example.com") }},
		{name: "denied", provider: oauthflow.Outlook, act: func(p *fakeprovider.Provider, c string) { p.DenyDevice(c) }, wantText: "access_denied"},
		{name: "expired", provider: oauthflow.Outlook, act: func(p *fakeprovider.Provider, _ string) { p.ExpireDeviceCodes() }, wantText: "expired_token"},
		{name: "google refuses", provider: oauthflow.Gmail, wantErr: oauthflow.ErrDeviceUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startFake(t)
			shown := make(chan string, 1)
			done := make(chan struct{})
			var g oauthflow.Grant
			var err error
			go func() {
				defer close(done)
				g, err = appFor(p, tc.provider).Device(ctx(t), func(d oauthflow.DeviceCode) { shown <- d.UserCode })
			}()
			if tc.act != nil {
				select {
				case c := <-shown:
					tc.act(p, c)
				case <-done:
					t.Fatalf("Device ended before showing a code: %v", err)
				}
			}
			<-done
			switch {
			case tc.wantErr != nil || tc.wantText != "":
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("Device = %v, want %v %q", err, tc.wantErr, tc.wantText)
				}
			case err != nil:
				t.Fatal(err)
			case g.Email != "dev@example.com" || g.RefreshToken.Reveal() != p.RefreshToken("dev@example.com"):
				t.Errorf("grant for %q", g.Email)
			}
		})
	}
}

// TestFakeProvider_deviceSlowDown: polling faster than the interval gets
// slow_down, then authorization_pending at the right pace (RFC 8628 §3.5).
func TestFakeProvider_deviceSlowDown(t *testing.T) {
	t.Parallel()
	p := startFake(t)
	resp, err := http.PostForm(p.DeviceURL(), url.Values{"client_id": {"cid"}})
	if err != nil {
		t.Fatal(err)
	}
	var da struct {
		DeviceCode string `json:"device_code"`
	}
	decode(t, resp, &da)
	poll := func() string {
		r, err := http.PostForm(p.TokenURL(), url.Values{"client_id": {"cid"}, "grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da.DeviceCode}})
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error string `json:"error"`
		}
		decode(t, r, &e)
		return e.Error
	}
	if got := poll(); got != "authorization_pending" {
		t.Errorf("first poll: %q", got)
	}
	if got := poll(); got != "slow_down" {
		t.Errorf("immediate second poll: %q, want slow_down", got)
	}
}

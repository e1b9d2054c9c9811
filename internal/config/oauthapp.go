package config

import (
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// OAuthApp is the OAuth client through which mailbox owners consent
// (`accounts authorize`, invitations): "oauth_app" in a provider block, and
// an account's own "oauth_app" overriding it key by key. An account
// without client_id or client_secret takes them from it, so accounts
// created by consent need not repeat them.
type OAuthApp struct {
	ClientID     string        // "client_id"
	ClientSecret secret.String // "client_secret"; empty for a public client
	Tenant       string        // "tenant", Microsoft; "" is common
	// AuthURL and DeviceURL are "auth_url" and "device_url": the
	// authorization and device endpoints when not the provider's (tests,
	// the interop issuer). Same rules as oauth_token_url.
	AuthURL, DeviceURL string
	// Scopes ("scopes") are asked for on top of the provider's, e.g.
	// https://outlook.office.com/IMAP.AccessAsUser.All for bounce feedback.
	Scopes []string
}

// parseOAuthApp applies an "oauth_app" block on top of app.
func parseOAuthApp(o *object, app *OAuthApp) {
	if o == nil {
		return
	}
	o.str("client_id", &app.ClientID)
	var s string
	if o.str("client_secret", &s) {
		app.ClientSecret = secret.New(s)
	}
	if o.str("tenant", &app.Tenant) && !tenantPattern.MatchString(app.Tenant) {
		o.errorf("tenant", "%q is not a tenant id, domain or common/organizations/consumers", app.Tenant)
	}
	if o.str("auth_url", &app.AuthURL) {
		checkTokenURL(o, "auth_url", app.AuthURL)
	}
	if o.str("device_url", &app.DeviceURL) {
		checkTokenURL(o, "device_url", app.DeviceURL)
	}
	if v, ok := o.get("scopes"); ok {
		list, isList := v.([]any)
		if !isList {
			o.errorf("scopes", "must be an array of strings, not %s", jsonType(v))
		}
		app.Scopes = nil
		for _, e := range list {
			sc, isStr := e.(string)
			if !isStr || sc == "" {
				o.errorf("scopes", "entries must be non-empty strings")
				continue
			}
			app.Scopes = append(app.Scopes, sc)
		}
	}
	o.finish()
}

// parseConsentedAt reads "consented_at", the time (RFC 3339) at which the
// owner gave the consent behind refresh_token; the consent commands write
// it.
func parseConsentedAt(o *object, a *Account) {
	var s string
	if !o.str("consented_at", &s) {
		return
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		o.errorf("consented_at", "must be an RFC 3339 time such as 2026-12-01T10:00:00Z, not %q", s)
		return
	}
	a.ConsentedAt = t
}

package config_test

import (
	"strings"
	"testing"
)

// TestLoad_oauthApp: accounts created by consent carry no client_id or
// client_secret and take the provider's oauth_app; an account's own
// oauth_app overrides it key by key; accounts with their own client keep
// it (old files unchanged).
func TestLoad_oauthApp(t *testing.T) {
	t.Parallel()
	cfg := `{"providers": {"gmail": {"oauth_app": {"client_id": "app.apps.googleusercontent.com", "client_secret": "appsecret"}},
	  "outlook": {"oauth_app": {"client_id": "ms-app", "tenant": "consumers", "scopes": ["https://outlook.office.com/IMAP.AccessAsUser.All"]}}}}`
	consented := gmailRecord("g1", "g1@example.com").with("client_id", nil).with("client_secret", nil)
	own := gmailRecord("g2", "g2@example.com")
	ms := outlookRecord("o1", "o1@outlook.com").with("client_id", nil).with("oauth_app", map[string]any{"scopes": []any{}, "client_id": "per-account"})
	dir := writeDir(t, map[string]string{"config.json": cfg, "accounts.json": accountsJSON(t, consented, own, ms)})
	snap, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]int{}
	for i, a := range snap.Accounts {
		byID[a.ID] = i
	}
	g1, g2, o1 := snap.Accounts[byID["g1"]], snap.Accounts[byID["g2"]], snap.Accounts[byID["o1"]]
	if g1.ClientID != "app.apps.googleusercontent.com" || g1.ClientSecret.Reveal() != "appsecret" {
		t.Errorf("g1 client %q %q, want the provider's oauth_app", g1.ClientID, g1.ClientSecret.Reveal())
	}
	if g2.ClientID != "cid.apps.googleusercontent.com" || g2.ClientSecret.Reveal() != "csecret" || g2.OAuthApp.ClientID != "app.apps.googleusercontent.com" {
		t.Errorf("g2 client %q, app %q: an account's own client must win", g2.ClientID, g2.OAuthApp.ClientID)
	}
	if o1.ClientID != "per-account" || o1.OAuthApp.Tenant != "consumers" || len(o1.OAuthApp.Scopes) != 0 {
		t.Errorf("o1 = client %q app %+v, want the account's oauth_app over the provider's", o1.ClientID, o1.OAuthApp)
	}

	noApp := writeDir(t, map[string]string{"accounts.json": accountsJSON(t, consented)})
	if _, _, err := loadDir(t, noApp); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Errorf("without oauth_app an account without client_id: %v, want client_id required", err)
	}
}

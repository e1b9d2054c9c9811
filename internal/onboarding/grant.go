package onboarding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// AppFor is the OAuth client an account's owner consents to: the
// account's oauth_app over its provider's, and, when neither names a
// client, the account's own client_id and client_secret (the refresh
// token is then usable by the client the account already refreshes
// with).
func AppFor(a *config.Account) (oauthflow.App, error) {
	app := oauthflow.App{
		Provider:     a.Provider,
		ClientID:     a.OAuthApp.ClientID,
		ClientSecret: a.OAuthApp.ClientSecret,
		Tenant:       a.OAuthApp.Tenant,
		AuthURL:      a.OAuthApp.AuthURL,
		DeviceURL:    a.OAuthApp.DeviceURL,
		TokenURL:     a.TokenURL,
		ExtraScopes:  a.OAuthApp.Scopes,
	}
	if app.ClientID == "" {
		app.ClientID, app.ClientSecret = a.ClientID, a.ClientSecret
	}
	if strings.Contains(a.TokenURL, "login.live.com") {
		// The legacy consumer endpoint has no PKCE authorization code flow
		// of the v2 kind; its refresh tokens and v2's do not mix.
		return app, fmt.Errorf("account %s refreshes at %s, the legacy Live endpoint: for consent, drop its oauth_token_url and set \"tenant\": \"consumers\"", a.ID, a.TokenURL)
	}
	if app.Tenant == "" {
		app.Tenant = a.Tenant
	}
	_, err := app.Endpoints()
	return app, err
}

// Consented is a grant for one account, ready to store.
type Consented struct {
	AccountID    string
	RefreshToken secret.String
	// ClientID and ClientSecret are the client the grant belongs to: the
	// account must refresh with it.
	ClientID     string
	ClientSecret secret.String
	At           time.Time // when the owner consented
}

// GrantStore is where consented grants go. FileStore writes accounts.json;
// the cluster store, when it comes, implements the same method.
type GrantStore interface {
	SaveGrant(ctx context.Context, c Consented) error
}

// FileStore saves grants into accounts.json through config.EditAccounts.
type FileStore struct {
	AccountsPath, ConfigPath string
}

// ErrMismatch: the address that signed in is not the account's.
var ErrMismatch = errors.New("the address that signed in is not the account's")

// SaveGrant writes the refresh token into the account's record, and the
// client when the account did not refresh with that one.
func (s FileStore) SaveGrant(_ context.Context, c Consented) error {
	return config.EditAccounts(s.AccountsPath, s.ConfigPath, func(f *config.AccountsFile) error {
		i := f.Find(c.AccountID)
		if i < 0 {
			return fmt.Errorf("account %s: %w", c.AccountID, config.ErrNoAccount)
		}
		fields := map[string]any{"refresh_token": c.RefreshToken.Reveal(), "consented_at": c.At.UTC().Format(time.RFC3339)}
		if c.ClientID != "" {
			fields["client_id"] = c.ClientID
			if !c.ClientSecret.Empty() {
				fields["client_secret"] = c.ClientSecret.Reveal()
			}
		}
		return f.Set(i, fields)
	})
}

// Check returns the grant to store for account a, or ErrMismatch when
// another address signed in.
func Check(a *config.Account, app oauthflow.App, g oauthflow.Grant) (Consented, error) {
	if !oauthflow.SameAddress(g.Email, a.Email) {
		return Consented{}, fmt.Errorf("%w: %s signed in, the account is %s", ErrMismatch, g.Email, a.Email)
	}
	c := Consented{AccountID: a.ID, RefreshToken: g.RefreshToken, At: time.Now()}
	if app.ClientID != a.ClientID || app.ClientSecret.Reveal() != a.ClientSecret.Reveal() {
		c.ClientID, c.ClientSecret = app.ClientID, app.ClientSecret
	}
	return c, nil
}

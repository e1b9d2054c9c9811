// Package oauthflow obtains a refresh token by user consent: the
// authorization code grant with PKCE S256 and a random state (RFC 6749
// §4.1, RFC 7636, RFC 8252 for the loopback redirect), the device
// authorization grant (RFC 8628) for Microsoft, and the address that
// signed in, read from the id_token.
//
// The requests themselves are golang.org/x/oauth2's (AuthCodeURL,
// Exchange with the PKCE verifier, DeviceAuth and DeviceAccessToken with
// authorization_pending and slow_down); this package adds what the
// library does not know: the providers' endpoints and scopes, the state
// check, reading a pasted redirect address, and the id_token's email
// claim. The id_token is read without checking its signature: it comes
// straight from the token endpoint over TLS, which OpenID Connect Core
// §3.1.3.7 accepts in place of the signature.
package oauthflow

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/oauth2"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Providers this package knows; they match config's provider names.
const (
	Gmail   = "gmail"
	Outlook = "outlook"
)

// Scopes the providers need for SMTP and for telling who signed in
// (PROVIDERS.md).
const (
	ScopeGmail          = "https://mail.google.com/"
	ScopeOutlookSMTP    = "https://outlook.office.com/SMTP.Send"
	ScopeOutlookOffline = "offline_access"
)

// Microsoft tenants with a meaning of their own: consumers is Outlook.com,
// Hotmail and Live accounts; common takes both kinds.
const (
	TenantCommon    = "common"
	TenantConsumers = "consumers"
)

// ErrDeviceUnsupported is the answer for --device on Google: Google does
// not grant Gmail scopes to the device flow (PROVIDERS.md).
var ErrDeviceUnsupported = errors.New("google does not grant the Gmail scope (https://mail.google.com/) to the device flow; run the loopback flow (without --device) on a machine with a browser, or paste the final address from another machine")

// App is one OAuth client at one provider, with the endpoints to use.
// Zero endpoint fields take the provider's; tests point them at the fake
// provider.
type App struct {
	Provider     string // Gmail or Outlook
	ClientID     string
	ClientSecret secret.String // empty for a public client
	Tenant       string        // Microsoft only; "" is common
	AuthURL      string        // authorization endpoint
	TokenURL     string        // token endpoint
	DeviceURL    string        // device authorization endpoint (Microsoft)
	// ExtraScopes are requested on top of the provider's, e.g. Microsoft's
	// https://outlook.office.com/IMAP.AccessAsUser.All for bounce feedback.
	ExtraScopes []string
	// HTTPClient makes the token requests; nil is http.DefaultClient.
	HTTPClient *http.Client
}

// Endpoints fills in the provider's endpoints where a's are empty.
func (a App) Endpoints() (App, error) {
	switch a.Provider {
	case Gmail:
		a.AuthURL = or(a.AuthURL, "https://accounts.google.com/o/oauth2/v2/auth")
		a.TokenURL = or(a.TokenURL, "https://oauth2.googleapis.com/token")
	case Outlook:
		base := "https://login.microsoftonline.com/" + or(a.Tenant, TenantCommon) + "/oauth2/v2.0/"
		a.AuthURL = or(a.AuthURL, base+"authorize")
		a.TokenURL = or(a.TokenURL, base+"token")
		a.DeviceURL = or(a.DeviceURL, base+"devicecode")
	default:
		return a, fmt.Errorf("provider %q: consent is supported for %q and %q only", a.Provider, Gmail, Outlook)
	}
	if a.ClientID == "" {
		return a, fmt.Errorf("provider %s: no client_id (set providers.%s.oauth_app.client_id or the account's client_id)", a.Provider, a.Provider)
	}
	return a, nil
}

// Scopes is what a asks for: the provider's SMTP scope, what makes the
// provider return a refresh token and the signed-in address, then
// ExtraScopes.
func (a App) Scopes() []string {
	var s []string
	switch a.Provider {
	case Gmail:
		s = []string{ScopeGmail, "openid", "email"}
	case Outlook:
		s = []string{ScopeOutlookSMTP, ScopeOutlookOffline, "openid", "email", "profile"}
	}
	for _, x := range a.ExtraScopes {
		if x != "" && !contains(s, x) {
			s = append(s, x)
		}
	}
	return s
}

func (a App) config(redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     a.ClientID,
		ClientSecret: a.ClientSecret.Reveal(),
		Endpoint: oauth2.Endpoint{
			AuthURL: a.AuthURL, TokenURL: a.TokenURL, DeviceAuthURL: a.DeviceURL,
			AuthStyle: oauth2.AuthStyleInParams, // both providers take the client in the body
		},
		RedirectURL: redirectURI,
		Scopes:      a.Scopes(),
	}
}

func (a App) ctx(ctx context.Context) context.Context {
	if a.HTTPClient != nil {
		return context.WithValue(ctx, oauth2.HTTPClient, a.HTTPClient)
	}
	return ctx
}

// Request is one authorization in progress: keep it until the callback.
// State and Verifier are secrets: the state binds the callback to this
// request, the verifier proves at the token endpoint that we started it.
type Request struct {
	URL         string // where to send the user's browser
	RedirectURI string
	State       secret.String
	Verifier    secret.String
}

// Start makes an authorization request for redirectURI. loginHint (the
// account's address, may be "") preselects the account at the provider.
func (a App) Start(redirectURI, loginHint string) (Request, error) {
	a, err := a.Endpoints()
	if err != nil {
		return Request{}, err
	}
	state := NewState()
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	if a.Provider == Gmail {
		// offline: return a refresh token; consent: return one even when
		// the user consented before (Google omits it otherwise).
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"))
	} else {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "select_account"))
	}
	return Request{
		URL:         a.config(redirectURI).AuthCodeURL(state.Reveal(), opts...),
		RedirectURI: redirectURI,
		State:       state,
		Verifier:    secret.New(verifier),
	}, nil
}

// NewState returns 256 random bits, base64url: an OAuth state, or an
// invitation token.
func NewState() secret.String {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	return secret.New(base64.RawURLEncoding.EncodeToString(b[:]))
}

// Grant is what consent yields.
type Grant struct {
	RefreshToken secret.String
	AccessToken  secret.String
	Email        string // the address that signed in, from the id_token
}

// Finish checks the callback against r (state, or the provider's error)
// and exchanges the code for a grant.
func (a App) Finish(ctx context.Context, r Request, cb Callback) (Grant, error) {
	if cb.Error != "" {
		return Grant{}, cb.err()
	}
	if subtle.ConstantTimeCompare([]byte(cb.State), []byte(r.State.Reveal())) != 1 {
		return Grant{}, ErrStateMismatch
	}
	a, err := a.Endpoints()
	if err != nil {
		return Grant{}, err
	}
	tok, err := a.config(r.RedirectURI).Exchange(a.ctx(ctx), cb.Code, oauth2.VerifierOption(r.Verifier.Reveal()))
	if err != nil {
		return Grant{}, fmt.Errorf("exchange the authorization code: %w", describe(err))
	}
	return grantOf(tok)
}

// DeviceCode is what the user is shown in the device flow.
type DeviceCode struct {
	UserCode        string
	VerificationURI string
}

// Device runs the device authorization grant (RFC 8628): it asks for a
// code, calls show with it, and polls until the user consented, refused,
// or the code expired (authorization_pending and slow_down are handled by
// the library's poller).
func (a App) Device(ctx context.Context, show func(DeviceCode)) (Grant, error) {
	if a.Provider == Gmail {
		return Grant{}, ErrDeviceUnsupported
	}
	a, err := a.Endpoints()
	if err != nil {
		return Grant{}, err
	}
	cfg := a.config("")
	ctx = a.ctx(ctx)
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return Grant{}, fmt.Errorf("device authorization: %w", describe(err))
	}
	show(DeviceCode{UserCode: da.UserCode, VerificationURI: or(da.VerificationURI, da.VerificationURIComplete)})
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return Grant{}, fmt.Errorf("device token: %w", describe(err))
	}
	return grantOf(tok)
}

func grantOf(tok *oauth2.Token) (Grant, error) {
	if tok.RefreshToken == "" {
		return Grant{}, errors.New("the provider returned no refresh token (Google: prompt=consent and access_type=offline; Microsoft: the offline_access scope)")
	}
	g := Grant{RefreshToken: secret.New(tok.RefreshToken), AccessToken: secret.New(tok.AccessToken)}
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		return Grant{}, errors.New("the provider returned no id_token: cannot tell which address signed in (scopes openid email)")
	}
	email, err := EmailFromIDToken(idt)
	if err != nil {
		return Grant{}, err
	}
	g.Email = email
	return g, nil
}

// describe keeps the provider's error code and description of a token
// error and drops the response body the library quotes.
func describe(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return fmt.Errorf("%s: %s", re.ErrorCode, strings.TrimSpace(re.ErrorDescription))
		}
		if re.Response != nil {
			return fmt.Errorf("token endpoint answered %s", re.Response.Status)
		}
	}
	return err
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

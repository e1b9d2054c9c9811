package token

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// AuthType is the OAuth2 grant an account's tokens come from (accounts.json
// "auth_type"; PROVIDERS.md: OAuth2 token endpoints and grants).
type AuthType string

const (
	// AuthRefreshToken is the refresh_token grant (RFC 6749 §6): Google
	// users, Microsoft delegated (v2 and login.live.com), any custom URL.
	AuthRefreshToken AuthType = "refresh_token"
	// AuthGoogleServiceAccount is Google domain-wide delegation: the
	// jwt-bearer grant (RFC 7523 §2.1) with an RS256 assertion signed by a
	// service-account key, impersonating Config.Subject.
	AuthGoogleServiceAccount AuthType = "google_service_account"
	// AuthClientCredentials is Microsoft app-only access: the
	// client_credentials grant (RFC 6749 §4.4) with a client secret or a
	// certificate-signed client assertion (RFC 7523 §2.2).
	AuthClientCredentials AuthType = "client_credentials"
)

// Default scopes of the grants that need one (PROVIDERS.md).
const (
	ScopeGoogleMail     = "https://mail.google.com/"
	ScopeOutlookAppOnly = "https://outlook.office365.com/.default"
)

// Defaults for zero Config fields.
const (
	// DefaultRefreshBuffer is used when Config.RefreshBuffer is zero:
	// PROVIDERS.md asks for at least 10 minutes (Microsoft HVE refuses a
	// token with less left).
	DefaultRefreshBuffer = 600 * time.Second
	// DefaultTimeout is used when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
)

// Config describes one account's token grant.
type Config struct {
	// Account is the account id: the key of its persisted state, and the
	// name in errors and log lines.
	Account string
	// AuthType selects the grant; "" means AuthRefreshToken.
	AuthType AuthType
	// TokenURL is the token endpoint; see ValidateURL. Required. It is
	// also the "aud" of JWT assertions.
	TokenURL string
	// ClientID is the OAuth client id. Required except for
	// AuthGoogleServiceAccount, whose identity is Issuer.
	ClientID string
	// ClientSecret is sent whenever it is non-empty (Google and
	// confidential Microsoft apps; the secret variant of
	// AuthClientCredentials); empty for public clients.
	ClientSecret secret.String
	// RefreshToken is the configured refresh token (AuthRefreshToken only,
	// and required there). After a rotation the Source uses the new one;
	// this field is not updated.
	RefreshToken secret.String
	// Scope is sent as "scope" when non-empty. AuthGoogleServiceAccount
	// and AuthClientCredentials need one; "" there means ScopeGoogleMail and
	// ScopeOutlookAppOnly.
	Scope string

	// Subject is the mailbox a Google service account impersonates (the
	// assertion's "sub"). Required for AuthGoogleServiceAccount.
	Subject string
	// Issuer is the service account's client_email (the assertion's
	// "iss"). Required for AuthGoogleServiceAccount.
	Issuer string
	// KeyID is the service-account key's private_key_id, sent as the JWT
	// "kid" when non-empty.
	KeyID string
	// Signer signs JWT assertions with RS256: the service-account key, or
	// the certificate's key for AuthClientCredentials. It must hold an RSA
	// key. Keys are shared between accounts; a Signer is only read.
	Signer crypto.Signer
	// CertThumbprint is the SHA-1 of the certificate's DER encoding, sent
	// as the assertion's "x5t" (AuthClientCredentials with a certificate,
	// where it is required with Signer).
	CertThumbprint []byte

	// RefreshBuffer: an access token is handed out only while more than
	// this is left of its life (or more than half of it, for a token that
	// lives less than twice the buffer). Background renewal starts earlier:
	// see Refresher. Zero means DefaultRefreshBuffer (600 s).
	RefreshBuffer time.Duration
	// Timeout bounds one token request, whatever the callers' deadlines;
	// no caller waits longer for one. Zero means DefaultTimeout (10 s).
	Timeout time.Duration
	// Retry paces the attempts after a transient failure. The zero value
	// means DefaultBackoff.
	Retry Backoff
	// Breaker is the account's circuit breaker; the zero value is off.
	Breaker Breaker
	// ConsentedAt is when the owner consented to RefreshToken (accounts.json
	// "consented_at", written by accounts authorize and invitations); zero
	// when unknown. With Google, an invalid_grant about 7 days later is
	// reported as the "Testing" app's limit (testingapp.go).
	ConsentedAt time.Time
	// Google marks a Google account (provider gmail).
	Google bool

	// Store persists rotated refresh tokens, access tokens and a
	// needs_consent verdict across restarts. Nil means nothing persists.
	Store Store
	// Shared, when set, is the token state this account shares with the
	// other proxies of a cluster (package clustertoken; shared.go): the
	// one access token, the rotated refresh token with its version, the
	// needs_consent verdict. Store then keeps the local copy that re-seeds
	// an emptied Redis. Nil means a proxy on its own.
	Shared Shared
	// HTTPClient sends the requests. Nil means a client private to this
	// Source that does not follow redirects. A client supplied here is used
	// as is; it should not follow redirects either, since a 307/308 would
	// re-post the credentials.
	HTTPClient *http.Client
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Rand returns numbers in [0, 1) for jitter. Nil means math/rand/v2.
	Rand func() float64
	// OnRotate, when set, is called with the new refresh token after a
	// rotation has been saved (or saving it failed), before the new access
	// token is handed out. It must not call back into the Source's Token or
	// Refresh, which would wait for the request OnRotate is part of.
	OnRotate func(newRefresh secret.String)
	// OnBlocked, when set, is called when the account stops getting
	// tokens: a request ended in needs_consent (ErrFinal), or Disable. The
	// account's sessions authenticated with an earlier token must then
	// stop carrying mail at once, rather than until they age out. It is
	// called outside the Source's lock and must not block.
	OnBlocked func()
	// Logger receives this Source's log lines, with an "account" attribute
	// added. Nil means discard.
	Logger *slog.Logger
}

// Backoff paces retries after transient failures (accounts.json and
// config.json "retry" block): the n-th consecutive failure waits
// Base·Factor^(n−1), at most Max; with Jitter the wait is drawn from its
// upper half, so that accounts failing together spread out. A longer
// Retry-After from the endpoint replaces the wait.
type Backoff struct {
	Base   time.Duration // first wait; zero means 1 s
	Factor float64       // growth per failure; below 1 means 1 (constant waits)
	Max    time.Duration // longest wait; zero means 30 s
	Jitter bool
}

// DefaultBackoff is used for a zero Config.Retry: 1 s, 2 s, 4 s ... 30 s,
// jittered (the built-in "retry" block).
var DefaultBackoff = Backoff{Base: time.Second, Factor: 2, Max: 30 * time.Second, Jitter: true}

// Breaker is a per-account circuit breaker ("circuit_breaker" block): after
// Threshold consecutive transient failures, no request is made for the
// account for Recovery, and callers get the last error at once. Then one
// request is let through; its failure opens the breaker again. Breakers
// are per account only: one account's failures never stop another.
type Breaker struct {
	Threshold int           // consecutive failures that open it; 0 turns the breaker off
	Recovery  time.Duration // how long it stays open; zero means 60 s
}

// Store is where a Source keeps its state across restarts;
// *tokenstore.Store implements it.
type Store interface {
	Get(account string) (tokenstore.Entry, bool)
	// Put records state that may be lost in a crash.
	Put(account string, e tokenstore.Entry)
	// PutSync returns once the entry is durable.
	PutSync(account string, e tokenstore.Entry) error
}

// FreshStore is a Store that also sees what other processes sharing it
// wrote (*tokenstore.Store: the CLI's token command, a second proxy). A
// Source asks it before every token request, so that it never sends a
// refresh token another process has already rotated.
type FreshStore interface {
	Store
	Fresh(account string) (tokenstore.Entry, bool)
}

// check validates cfg and fills in defaults.
func (cfg *Config) check() error {
	if cfg.AuthType == "" {
		cfg.AuthType = AuthRefreshToken
	}
	if err := ValidateURL(cfg.TokenURL); err != nil {
		return err
	}
	switch cfg.AuthType {
	case AuthRefreshToken:
		if cfg.ClientID == "" {
			return fmt.Errorf("client id is empty")
		}
		if cfg.RefreshToken.Empty() {
			return fmt.Errorf("refresh token is empty")
		}
	case AuthGoogleServiceAccount:
		if cfg.Issuer == "" || cfg.Subject == "" {
			return fmt.Errorf("service account needs an issuer (client_email) and a subject (the mailbox)")
		}
		if err := checkSigner(cfg.Signer); err != nil {
			return err
		}
		if cfg.Scope == "" {
			cfg.Scope = ScopeGoogleMail
		}
	case AuthClientCredentials:
		if cfg.ClientID == "" {
			return fmt.Errorf("client id is empty")
		}
		hasCert := cfg.Signer != nil || len(cfg.CertThumbprint) > 0
		switch {
		case hasCert && !cfg.ClientSecret.Empty():
			return fmt.Errorf("client credentials take a client secret or a certificate, not both")
		case hasCert:
			if err := checkSigner(cfg.Signer); err != nil {
				return err
			}
			if len(cfg.CertThumbprint) != 20 {
				return fmt.Errorf("certificate thumbprint must be the 20-byte SHA-1, not %d bytes", len(cfg.CertThumbprint))
			}
		case cfg.ClientSecret.Empty():
			return fmt.Errorf("client credentials need a client secret or a certificate")
		}
		if cfg.Scope == "" {
			cfg.Scope = ScopeOutlookAppOnly
		}
	default:
		return fmt.Errorf("auth type %q unknown", cfg.AuthType)
	}
	switch {
	case cfg.RefreshBuffer < 0:
		return fmt.Errorf("refresh buffer %v is negative", cfg.RefreshBuffer)
	case cfg.Timeout < 0:
		return fmt.Errorf("timeout %v is negative", cfg.Timeout)
	case cfg.Retry.Base < 0 || cfg.Retry.Max < 0 || cfg.Breaker.Recovery < 0 || cfg.Breaker.Threshold < 0:
		return fmt.Errorf("retry and breaker settings must not be negative")
	}
	if cfg.RefreshBuffer == 0 {
		cfg.RefreshBuffer = DefaultRefreshBuffer
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retry == (Backoff{}) {
		cfg.Retry = DefaultBackoff
	}
	if cfg.Retry.Base == 0 {
		cfg.Retry.Base = time.Second
	}
	if cfg.Retry.Factor < 1 {
		cfg.Retry.Factor = 1
	}
	if cfg.Retry.Max == 0 {
		cfg.Retry.Max = 30 * time.Second
	}
	if cfg.Breaker.Recovery == 0 {
		cfg.Breaker.Recovery = 60 * time.Second
	}
	return nil
}

// checkSigner makes sure assertions can be signed with RS256, the only
// algorithm Google accepts for service accounts.
func checkSigner(s crypto.Signer) error {
	if s == nil {
		return fmt.Errorf("no signing key")
	}
	if _, ok := s.Public().(*rsa.PublicKey); !ok {
		return fmt.Errorf("signing key must be RSA (RS256), not %T", s.Public())
	}
	return nil
}

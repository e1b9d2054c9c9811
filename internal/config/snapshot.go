package config

import (
	"net/netip"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// Snapshot is one fully loaded, validated and defaulted configuration. It
// is immutable after Load returns; a reload builds a new one.
type Snapshot struct {
	ConfigPath   string // file the global settings came from; "" when built-in defaults were used
	AccountsPath string // file the accounts came from
	Global       Global
	// Providers holds the resolved provider blocks by name: always "gmail",
	// "outlook" and "default" (built-in defaults where the file has none).
	Providers map[string]Provider
	Accounts  []*Account // in file order
}

// Global is the "global" block of config.json.
type Global struct {
	SMTP        SMTP
	Timeouts    Timeouts
	Concurrency Concurrency
	HTTPPool    HTTPPool
	// TokenRefreshBuffer is how long before expiry a cached access token is
	// treated as expired ("oauth2.token_refresh_buffer_seconds", default
	// 600s; PROVIDERS.md asks for at least 10 minutes).
	TokenRefreshBuffer time.Duration
	// Tokens is the rest of "oauth2": renewal workers, pre-warm, state dir.
	Tokens Tokens
	// Onboarding is the top-level "onboarding" block (onboarding.go).
	Onboarding Onboarding
	// Listener is the client side: listener TLS, PROXY protocol, limits
	// and timeouts (listener.go).
	Listener Listener
	// Feedback is the top-level "feedback" block: the bounce collector
	// (feedback.go).
	Feedback Feedback
	// Cluster is "global.cluster" (cluster.go): Redis shared by several
	// proxies; off by default.
	Cluster Cluster
}

// SMTP is "global.smtp".
type SMTP struct {
	ServerHostname  string // banner and EHLO name; default "xoauth2-proxy"
	MaxMessageBytes int64  // "max_message_size"; default 52428800 (50 MiB)
	MaxRecipients   int    // per message; default 1000
	// MaxLineBytes is the longest body line accepted, CRLF excluded
	// ("max_line_length"). Default 10000; smaller values are raised to
	// 10000 with a warning, because bulk HTML breaks the 998 rule.
	MaxLineBytes int
	// TrustedNetworks may AUTH to accounts without smtp_password, with any
	// password. Default 127.0.0.0/8 and ::1/128; empty: no network is
	// trusted.
	TrustedNetworks []netip.Prefix
	// UpstreamCAFile holds extra PEM roots for upstream TLS, besides the
	// system roots; "" means none. A relative path in config.json is
	// resolved against the file's directory, so this one is absolute.
	UpstreamCAFile     string
	UseSourceIPBinding bool // default true
	ValidateSourceIP   bool // default true
	UseIPv6            bool // default false
	// UpstreamChunking sends bodies with BDAT to an upstream that offers
	// CHUNKING ("upstream_chunking", default true): DATA is then answered
	// here and a message costs one upstream round trip fewer.
	UpstreamChunking bool
}

// Timeouts is "global.timeouts" (old files also put oauth2_timeout directly
// under "global").
type Timeouts struct {
	OAuth2            time.Duration // one token request; default 10s
	ConnectionAcquire time.Duration // wait for an upstream session; default 5s
	SMTP              time.Duration // one upstream command; default 30s ("smtp_timeout")
}

// Concurrency is "global.concurrency".
type Concurrency struct {
	// GlobalConcurrencyLimit caps client connections; default 10000.
	GlobalConcurrencyLimit int
	BackpressureQueueSize  int // accepted for compatibility, informational; default 1000
}

// HTTPPool is "global.http_pool": the HTTP client used for token requests.
type HTTPPool struct {
	TotalConnections   int           // open connections over all hosts; default 500
	ConnectionsPerHost int           // per token endpoint host; default 100
	DNSCacheTTL        time.Duration // "dns_cache_ttl_seconds"; default 300s; accepted, informational
	ConnectTimeout     time.Duration // "connect_timeout_seconds"; default 5s
}

// Pool is a "connection_pool" block (or an account's "connection_settings").
type Pool struct {
	MaxConnectionsPerAccount int           // upstream sessions per account; built-in: gmail 10, outlook 3, default 5
	MaxMessagesPerConnection int           // retire a session after this many messages; default 500
	ConnectionMaxAge         time.Duration // retire after this age; default 300s
	ConnectionIdleTimeout    time.Duration // QUIT idle sessions after this; default 30s
}

// RateLimiting is a "rate_limiting" block: an account's sending budgets
// over rolling windows (0 = no limit) and the cool-downs learned from the
// provider's replies. Built-in (PROVIDERS.md): gmail 2,000 messages and
// 10,000 recipients per 24 h, 100 recipients per message; outlook 30
// messages per minute, 10,000 recipients per 24 h, 500 per message;
// "default" none. "enabled": false switches an account's budgets off.
type RateLimiting struct {
	Enabled              bool
	MessagesPerMinute    int // "messages_per_minute"
	MessagesPerHour      int // "messages_per_hour"; an account's "max_messages_per_hour" overrides it
	MessagesPerDay       int // "messages_per_day"
	RecipientsPerDay     int // "recipients_per_day"
	RecipientsPerMessage int // "recipients_per_message": surplus RCPTs get 452 4.5.3
	// MessagesPerMinutePerConnection is the old per-connection rate. With
	// pooled sessions it means MessagesPerMinutePerConnection ×
	// max_connections_per_account per minute for the account, when
	// messages_per_minute is not set.
	MessagesPerMinutePerConnection int
	BurstSize                      int // old key; accepted. Rolling windows already allow bursts up to the limit
	Cooldowns                      Cooldowns
	Warmup                         Warmup // "warmup": the daily ramp of a new account (warmup.go)
}

// Cooldowns is "rate_limiting.cooldowns": how long an account stops
// sending after the provider said it is exhausted or throttled.
type Cooldowns struct {
	DailyQuota  time.Duration // "daily_quota_seconds": Gmail 550 5.4.5, Microsoft 554 5.2.0 quota; default 24h
	Rate        time.Duration // "rate_seconds": 421 4.7.0 / 450 4.2.1 rate replies; default 2m
	LoginRate   time.Duration // "login_rate_seconds": 454 4.7.0 too many logins; default 5m
	Concurrency time.Duration // "concurrency_seconds": 432 4.3.2, 421 4.3.0 at session open; default 1m (the session cap shrinks as well); 0 = none
}

// Retry is a "retry" block. Built-in: 2 attempts, factor 2, 30s, jitter.
type Retry struct {
	MaxAttempts   int
	BackoffFactor float64
	MaxDelay      time.Duration
	Jitter        bool
}

// CircuitBreaker is a "circuit_breaker" block. Built-in: enabled, 5
// failures, 60s.
type CircuitBreaker struct {
	Enabled          bool
	FailureThreshold int
	RecoveryTimeout  time.Duration
}

// Provider is one resolved entry of "providers".
type Provider struct {
	Name                  string
	SMTPAddr              string             // "smtp_endpoint"; default smtp.gmail.com:587 / smtp.office365.com:587
	TLS                   upstream.TLSMode   // "smtp_tls"; default starttls
	Mechanism             upstream.Mechanism // "auth_mechanism"; default XOAUTH2
	TokenURL              string             // "oauth_token_url"; default per COMPAT.md
	MaxConcurrentMessages int                // per-account in-flight cap; default gmail 200, outlook 150, default 100
	Pool                  Pool
	RateLimiting          RateLimiting
	Retry                 Retry
	CircuitBreaker        CircuitBreaker
	OAuthApp              OAuthApp // "oauth_app": the client for consent (oauthapp.go)
}

// Account is one resolved entry of accounts.json: provider defaults and
// per-account overrides already applied.
type Account struct {
	ID       string // "account_id"
	Email    string // "email", as written
	Provider string // "gmail", "outlook" or another name (uses the "default" block)
	// AuthType is "auth_type"; default token.AuthRefreshToken. The fields a
	// type does not use are empty.
	AuthType     token.AuthType
	ClientID     string        // "client_id", else oauth_app's
	ClientSecret secret.String // empty when absent; else oauth_app's
	// ConsentedAt is "consented_at": when the owner consented to
	// RefreshToken (oauthapp.go); zero when unknown.
	ConsentedAt time.Time
	// OAuthApp is the provider's "oauth_app" with the account's own
	// "oauth_app" over it: the client for consent (oauthapp.go).
	OAuthApp     OAuthApp
	RefreshToken secret.String // token.AuthRefreshToken only
	// Scope is "scope", sent with the token request when set; defaults to
	// token.ScopeGoogleMail for token.AuthGoogleServiceAccount and token.ScopeOutlookAppOnly
	// for token.AuthClientCredentials.
	Scope string
	// TokenURL is "oauth_token_url"; else, from "tenant" for Microsoft
	// accounts, from the service-account key's token_uri, or the provider's.
	TokenURL string
	// Tenant is "tenant", a Microsoft Entra tenant; "" when unset.
	Tenant string
	// ServiceAccount is the parsed key of a token.AuthGoogleServiceAccount
	// account ("service_account_key_file" or "service_account_key"),
	// shared with the other accounts of the same key; nil otherwise.
	ServiceAccount *token.ServiceAccountKey
	// Certificate is the certificate credential of an
	// token.AuthClientCredentials account ("certificate_file",
	// "private_key_file"); nil when it uses a client secret.
	Certificate *token.ClientCertificate
	SMTPAddr    string // "oauth_endpoint" or the provider's, host:port
	TLS         upstream.TLSMode
	Mechanism   upstream.Mechanism
	IPAddress   netip.Addr // "ip_address"; invalid (zero) when absent
	VMTAName    string
	// SMTPPassword is what a client must send as AUTH password. Empty: the
	// account may be used only from trusted networks. PasswordHashed tells
	// whether it is a bcrypt hash ($2a$, $2b$, $2y$) or plain text.
	SMTPPassword   secret.String
	PasswordHashed bool
	// Disabled ("disabled": true) keeps the account in the file but refuses
	// it: AUTH answers as for an unknown user, and connections already
	// authenticated get 451 4.7.1 at MAIL. Set by the admin API's disable.
	Disabled              bool
	MaxConcurrentMessages int // in-flight cap for this account
	MaxMessagesPerHour    int // 0: none
	Pool                  Pool
	RateLimiting          RateLimiting
	Retry                 Retry
	CircuitBreaker        CircuitBreaker
}

// String identifies the account in logs without any secret.
func (a *Account) String() string { return a.ID + " <" + a.Email + ">" }

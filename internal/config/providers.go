package config

import (
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// Provider block names. An account whose provider is neither gmail nor
// outlook uses the "default" block.
const (
	ProviderGmail   = "gmail"
	ProviderOutlook = "outlook"
	ProviderDefault = "default"
)

// Token endpoints used when neither the provider block nor the account sets
// oauth_token_url (COMPAT.md).
const (
	GmailTokenURL   = "https://oauth2.googleapis.com/token"
	OutlookTokenURL = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
)

// outlookMaxSessions is how many concurrent SMTP sessions Microsoft 365
// allows per mailbox; more are refused with "432 4.3.2 Concurrent
// connections limit exceeded" (Exchange Online sending limits).
const outlookMaxSessions = 3

// builtinProviders returns fresh copies of the built-in provider blocks. A
// block in config.json overrides them key by key.
func builtinProviders() map[string]Provider {
	retry := Retry{MaxAttempts: 2, BackoffFactor: 2, MaxDelay: 30 * time.Second, Jitter: true}
	// Concurrency: a short pause after a refused session, on top of the
	// lowered session cap, so that queued messages do not each open (and
	// lose) a session of their own.
	cool := Cooldowns{DailyQuota: 24 * time.Hour, Rate: 2 * time.Minute, LoginRate: 5 * time.Minute, Concurrency: time.Minute}
	// PROVIDERS.md: sending limits per account.
	gmailBudget := RateLimiting{Enabled: true, MessagesPerDay: 2000, RecipientsPerDay: 10000, RecipientsPerMessage: 100, Cooldowns: cool}
	outlookBudget := RateLimiting{Enabled: true, MessagesPerMinute: 30, RecipientsPerDay: 10000, RecipientsPerMessage: 500, Cooldowns: cool}
	breaker := CircuitBreaker{Enabled: true, FailureThreshold: 5, RecoveryTimeout: 60 * time.Second}
	pool := func(conns int) Pool {
		return Pool{
			MaxConnectionsPerAccount: conns,
			MaxMessagesPerConnection: 500, // a replacement costs ~5 round trips (resumed TLS), README "Benchmark"
			ConnectionMaxAge:         300 * time.Second,
			ConnectionIdleTimeout:    30 * time.Second,
		}
	}
	return map[string]Provider{
		ProviderGmail: {
			Name: ProviderGmail, SMTPAddr: "smtp.gmail.com:587", TLS: upstream.TLSStartTLS, Mechanism: upstream.MechXOAUTH2,
			TokenURL: GmailTokenURL, MaxConcurrentMessages: 200, Pool: pool(10),
			RateLimiting: gmailBudget, Retry: retry, CircuitBreaker: breaker,
		},
		ProviderOutlook: {
			Name: ProviderOutlook, SMTPAddr: "smtp.office365.com:587", TLS: upstream.TLSStartTLS, Mechanism: upstream.MechXOAUTH2,
			TokenURL: OutlookTokenURL, MaxConcurrentMessages: 150, Pool: pool(outlookMaxSessions),
			RateLimiting: outlookBudget, Retry: retry, CircuitBreaker: breaker,
		},
		ProviderDefault: {
			Name: ProviderDefault, TLS: upstream.TLSStartTLS, Mechanism: upstream.MechXOAUTH2,
			MaxConcurrentMessages: 100, Pool: pool(5),
			RateLimiting: RateLimiting{Enabled: true, Cooldowns: cool}, Retry: retry, CircuitBreaker: breaker,
		},
	}
}

// blockName maps an account's provider to the provider block it uses.
func blockName(provider string) string {
	switch p := strings.ToLower(provider); p {
	case ProviderGmail, ProviderOutlook:
		return p
	default:
		return ProviderDefault
	}
}

// parseProviders reads the "providers" object on top of the built-in blocks.
func parseProviders(o *object, out map[string]Provider) {
	for _, name := range []string{ProviderGmail, ProviderOutlook, ProviderDefault} {
		b := o.child(name)
		if b == nil {
			continue
		}
		p := out[name]
		parseProvider(b, &p)
		b.finish()
		out[name] = p
	}
	o.finish()
}

// parseProvider applies one provider block to p and checks what it set.
func parseProvider(o *object, p *Provider) {
	if o.str("smtp_endpoint", &p.SMTPAddr) {
		checkEndpoint(o, "smtp_endpoint", p.SMTPAddr)
	}
	if o.str("oauth_token_url", &p.TokenURL) {
		checkTokenURL(o, "oauth_token_url", p.TokenURL)
	}
	tlsMode(o, "smtp_tls", &p.TLS)
	mechanism(o, "auth_mechanism", &p.Mechanism)
	o.count("max_concurrent_messages", 1, &p.MaxConcurrentMessages)
	parsePool(o.child("connection_pool"), &p.Pool)
	parseRateLimiting(o.child("rate_limiting"), &p.RateLimiting)
	parseRetry(o.child("retry"), &p.Retry)
	parseCircuitBreaker(o.child("circuit_breaker"), &p.CircuitBreaker)
	parseOAuthApp(o.child("oauth_app"), &p.OAuthApp)

	if p.TLS == upstream.TLSNone && p.SMTPAddr != "" {
		checkCleartext(o, "smtp_tls", p.SMTPAddr)
	}
	if p.Name == ProviderOutlook && p.Pool.MaxConnectionsPerAccount > outlookMaxSessions {
		o.warnf("connection_pool.max_connections_per_account",
			"%d exceeds the %d concurrent sessions Microsoft allows per mailbox; extra sessions will be refused",
			p.Pool.MaxConnectionsPerAccount, outlookMaxSessions)
	}
}

// parsePool reads a "connection_pool" block or an account's
// "connection_settings".
func parsePool(o *object, p *Pool) {
	if o == nil {
		return
	}
	o.count("max_connections_per_account", 1, &p.MaxConnectionsPerAccount)
	o.count("max_messages_per_connection", 1, &p.MaxMessagesPerConnection)
	o.seconds("connection_max_age_seconds", true, &p.ConnectionMaxAge)
	o.seconds("connection_idle_timeout_seconds", true, &p.ConnectionIdleTimeout)
	// The old tool's pre-warming knobs: we open sessions on demand only.
	o.ignore("connection_acquire_timeout_seconds", "adaptive_prewarm_enabled",
		"prewarm_min_connections", "prewarm_max_connections", "prewarm_min_message_threshold",
		"prewarm_messages_per_connection", "prewarm_concurrent_tasks", "idle_connection_reuse_timeout",
		"prewarm_percentage", "periodic_rewarm_enabled", "periodic_rewarm_interval_seconds",
		"rewarm_concurrent_tasks")
	o.finish()
}

func parseRateLimiting(o *object, r *RateLimiting) {
	if o == nil {
		return
	}
	o.boolean("enabled", &r.Enabled)
	o.count("messages_per_minute", 0, &r.MessagesPerMinute)
	o.count("messages_per_hour", 0, &r.MessagesPerHour)
	o.count("messages_per_day", 0, &r.MessagesPerDay)
	o.count("recipients_per_day", 0, &r.RecipientsPerDay)
	o.count("recipients_per_message", 0, &r.RecipientsPerMessage)
	o.count("messages_per_minute_per_connection", 0, &r.MessagesPerMinutePerConnection)
	warnPerConnectionIgnored(o, r)
	o.count("burst_size", 0, &r.BurstSize)
	parseWarmup(o.child("warmup"), &r.Warmup)
	if c := o.child("cooldowns"); c != nil {
		c.seconds("daily_quota_seconds", false, &r.Cooldowns.DailyQuota)
		c.seconds("rate_seconds", false, &r.Cooldowns.Rate)
		c.seconds("login_rate_seconds", false, &r.Cooldowns.LoginRate)
		c.seconds("concurrency_seconds", false, &r.Cooldowns.Concurrency)
		c.finish()
	}
	o.finish()
}

// warnPerConnectionIgnored warns when the block sets the old
// messages_per_minute_per_connection while messages_per_minute, set here
// or inherited (Outlook's built-in 30, PROVIDERS.md), already applies:
// quota.LimitsFor then ignores the old key, and the operator's rate
// would otherwise silently not be the one enforced.
func warnPerConnectionIgnored(o *object, r *RateLimiting) {
	const key = "messages_per_minute_per_connection"
	if v, ok := o.m[key]; !ok || v == nil || !r.Enabled || r.MessagesPerMinute == 0 || r.MessagesPerMinutePerConnection == 0 {
		return
	}
	from := "inherited from the provider block or its built-in value"
	if v, ok := o.m["messages_per_minute"]; ok && v != nil {
		from = "set in this block"
	}
	o.warnf(key, "ignored: messages_per_minute %d (%s) applies instead; set messages_per_minute to change the account's minute budget",
		r.MessagesPerMinute, from)
}

func parseRetry(o *object, r *Retry) {
	if o == nil {
		return
	}
	o.count("max_attempts", 1, &r.MaxAttempts)
	o.fraction("backoff_factor", &r.BackoffFactor)
	o.seconds("max_delay_seconds", false, &r.MaxDelay)
	o.boolean("jitter_enabled", &r.Jitter)
	o.finish()
}

func parseCircuitBreaker(o *object, c *CircuitBreaker) {
	if o == nil {
		return
	}
	o.boolean("enabled", &c.Enabled)
	o.count("failure_threshold", 1, &c.FailureThreshold)
	o.seconds("recovery_timeout_seconds", true, &c.RecoveryTimeout)
	o.ignore("half_open_max_calls")
	o.finish()
}

// tlsMode reads "smtp_tls".
func tlsMode(o *object, key string, dst *upstream.TLSMode) {
	var s string
	if !o.str(key, &s) {
		return
	}
	switch m := upstream.TLSMode(strings.ToLower(s)); m {
	case upstream.TLSStartTLS, upstream.TLSImplicit, upstream.TLSNone:
		*dst = m
	default:
		o.errorf(key, `must be "starttls", "tls" or "none", not %q`, s)
	}
}

// mechanism reads "auth_mechanism", case-insensitively.
func mechanism(o *object, key string, dst *upstream.Mechanism) {
	var s string
	if !o.str(key, &s) {
		return
	}
	switch m := upstream.Mechanism(strings.ToUpper(s)); m {
	case upstream.MechXOAUTH2, upstream.MechOAUTHBEARER:
		*dst = m
	default:
		o.errorf(key, `must be "xoauth2" or "oauthbearer", not %q`, s)
	}
}

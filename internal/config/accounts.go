package config

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// accountList returns the account records of a decoded accounts file:
// either a top-level array or the "accounts" array of an object. Other
// top-level keys of the object are left alone.
func accountList(d *diag, file string, doc any) ([]any, bool) {
	switch v := doc.(type) {
	case []any:
		return v, true
	case map[string]any:
		list, ok := v["accounts"]
		if !ok {
			d.errorf(where{file: file}, "accounts", "missing: an accounts file is an array of accounts or an object with an \"accounts\" array")
			return nil, false
		}
		arr, ok := list.([]any)
		if !ok {
			d.errorf(where{file: file}, "accounts", "must be an array, not %s", jsonType(list))
			return nil, false
		}
		return arr, true
	default:
		d.errorf(where{file: file}, "", "an accounts file is an array of accounts or an object with an \"accounts\" array, not %s", jsonType(doc))
		return nil, false
	}
}

// holdsAccounts reports whether a decoded config file is in fact an
// accounts file: a top-level array, or an object with "accounts" and
// neither "global" nor "providers". Old deployments ran the Python tool as
// "--config accounts.json".
func holdsAccounts(doc any) bool {
	switch v := doc.(type) {
	case []any:
		return true
	case map[string]any:
		_, acc := v["accounts"]
		_, glob := v["global"]
		_, prov := v["providers"]
		return acc && !glob && !prov
	}
	return false
}

// parseAccounts reads every account record, resolves it against its
// provider block and checks the accounts against each other.
func parseAccounts(d *diag, file string, doc any, provs map[string]Provider) []*Account {
	list, ok := accountList(d, file, doc)
	if !ok {
		return nil
	}
	accounts := make([]*Account, 0, len(list))
	keys := newKeyCache(file)
	byID := map[string]where{}
	byEmail := map[string]where{}
	for i, rec := range list {
		at := where{file: file, index: i + 1}
		if m, ok := rec.(map[string]any); ok {
			at.account = idOf(m["account_id"])
		}
		o := newObject(d, at, "", rec)
		if o == nil {
			continue
		}
		a := parseAccount(o, provs, keys)
		o.finish()
		if a.ID != "" {
			if prev, dup := byID[a.ID]; dup {
				d.errorf(at, "account_id", "duplicate of account %s", prev.label())
			} else {
				byID[a.ID] = at
			}
		}
		if a.Email != "" {
			key := strings.ToLower(a.Email)
			if prev, dup := byEmail[key]; dup {
				d.errorf(at, "email", "%s is also the email of account %s", a.Email, prev.label())
			} else {
				byEmail[key] = at
			}
		}
		accounts = append(accounts, a)
	}
	if len(list) == 0 {
		d.warnf(where{file: file}, "", "no accounts; every AUTH will fail until accounts are added")
	}
	return accounts
}

// idOf returns an account_id as text. The old tool accepted a number there.
func idOf(v any) string {
	switch id := v.(type) {
	case string:
		return id
	case json.Number:
		return id.String()
	}
	return ""
}

// parseAccount reads one record. Absent keys take the value of the
// account's provider block. keys parses each key file once.
func parseAccount(o *object, provs map[string]Provider, keys *keyCache) *Account {
	a := &Account{}
	parseIdentity(o, a, provs)
	p := provs[blockName(a.Provider)]
	explicitURL := parseUpstream(o, a, p)
	parseCredentials(o, a, keys, explicitURL)
	parseLimits(o, a, p)
	o.boolean("disabled", &a.Disabled)
	return a
}

// parseIdentity reads who the account is and its credentials.
func parseIdentity(o *object, a *Account, provs map[string]Provider) {
	if v, ok := o.get("account_id"); ok {
		a.ID = idOf(v)
		if a.ID == "" && !isString(v) {
			o.errorf("account_id", "must be a string, not %s", jsonType(v))
		}
	}
	required(o, "account_id", a.ID)
	if o.str("email", &a.Email) {
		if msg := emailError(a.Email); msg != "" {
			o.errorf("email", "%s", msg)
		}
	}
	required(o, "email", a.Email)
	o.str("provider", &a.Provider)
	required(o, "provider", a.Provider)
	a.Provider = strings.ToLower(a.Provider)

	parseAuthType(o, a)
	a.OAuthApp = provs[blockName(a.Provider)].OAuthApp
	parseOAuthApp(o.child("oauth_app"), &a.OAuthApp)
	parseConsentedAt(o, a)
	if !o.str("client_id", &a.ClientID) {
		a.ClientID = a.OAuthApp.ClientID
	}
	if a.AuthType != token.AuthGoogleServiceAccount {
		required(o, "client_id", a.ClientID)
	}
	var clientSecret, refreshToken string
	if !o.str("client_secret", &clientSecret) {
		clientSecret = a.OAuthApp.ClientSecret.Reveal()
	}
	if a.AuthType != token.AuthGoogleServiceAccount {
		a.ClientSecret = secret.New(clientSecret)
	}
	if a.AuthType == token.AuthRefreshToken {
		if a.Provider == ProviderGmail {
			// Google's token endpoint refuses a refresh without the
			// secret; Microsoft public clients have none.
			required(o, "client_secret", clientSecret)
		}
		o.str("refresh_token", &refreshToken)
		a.RefreshToken = secret.New(refreshToken)
		required(o, "refresh_token", refreshToken)
	}
	o.str("scope", &a.Scope)
	parsePassword(o, a)
}

// parseUpstream reads where and how the account reaches its provider. It
// reports whether the account sets oauth_token_url; parseCredentials
// settles the token URL.
func parseUpstream(o *object, a *Account, p Provider) (explicitURL bool) {
	a.TokenURL = p.TokenURL
	if o.str("oauth_token_url", &a.TokenURL) {
		checkTokenURL(o, "oauth_token_url", a.TokenURL)
		explicitURL = true
	}
	a.SMTPAddr = p.SMTPAddr
	if o.str("oauth_endpoint", &a.SMTPAddr) {
		checkEndpoint(o, "oauth_endpoint", a.SMTPAddr)
	} else if a.SMTPAddr == "" {
		o.errorf("oauth_endpoint", "required: provider %q has no built-in SMTP endpoint", a.Provider)
	}
	a.TLS, a.Mechanism = p.TLS, p.Mechanism
	tlsMode(o, "smtp_tls", &a.TLS)
	mechanism(o, "auth_mechanism", &a.Mechanism)
	if a.TLS == upstream.TLSNone && a.SMTPAddr != "" {
		checkCleartext(o, "smtp_tls", a.SMTPAddr)
	}
	if _, port, err := net.SplitHostPort(a.SMTPAddr); err == nil && port == "465" && a.TLS == upstream.TLSStartTLS {
		o.warnf("smtp_tls", `port 465 expects TLS from the first byte; set "smtp_tls": "tls"`)
	}
	var ip string
	if o.str("ip_address", &ip) {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			o.errorf("ip_address", "%q is not an IP address", ip)
		}
		a.IPAddress = addr
	}
	o.str("vmta_name", &a.VMTAName)
	return explicitURL
}

// parseLimits reads the account's caps and its overrides of the provider
// block's pool, rate limiting, retry and circuit breaker settings.
func parseLimits(o *object, a *Account, p Provider) {
	a.MaxConcurrentMessages = p.MaxConcurrentMessages
	o.count("max_concurrent_messages", 1, &a.MaxConcurrentMessages)
	o.count("max_messages_per_hour", 0, &a.MaxMessagesPerHour)
	a.Pool, a.RateLimiting, a.Retry, a.CircuitBreaker = p.Pool, p.RateLimiting, p.Retry, p.CircuitBreaker
	if cs := o.child("connection_settings"); cs != nil {
		parsePool(cs, &a.Pool)
		if blockName(a.Provider) == ProviderOutlook && a.Pool.MaxConnectionsPerAccount > outlookMaxSessions {
			o.warnf("connection_settings.max_connections_per_account",
				"%d exceeds the %d concurrent sessions Microsoft allows per mailbox",
				a.Pool.MaxConnectionsPerAccount, outlookMaxSessions)
		}
	}
	parseRateLimiting(o.child("rate_limiting"), &a.RateLimiting)
	parseRetry(o.child("retry"), &a.Retry)
	parseCircuitBreaker(o.child("circuit_breaker"), &a.CircuitBreaker)
}

// required reports an absent, null or empty key. A value of the wrong type
// has already been reported by the getter.
func required(o *object, key, value string) {
	if value != "" {
		return
	}
	if v, ok := o.get(key); ok && !isString(v) {
		return
	}
	o.errorf(key, "required")
}

func isString(v any) bool {
	_, ok := v.(string)
	return ok
}

// bcryptPrefixes are the bcrypt hash versions golang.org/x/crypto/bcrypt
// verifies.
var bcryptPrefixes = []string{"$2a$", "$2b$", "$2y$"}

// bcryptLen is the length of a bcrypt hash in its modular crypt format.
const bcryptLen = 60

// parsePassword reads "smtp_password": a bcrypt hash, or plain text (with a
// warning, since the file then holds a usable password).
func parsePassword(o *object, a *Account) {
	var pw string
	if !o.str("smtp_password", &pw) {
		return
	}
	a.SMTPPassword = secret.New(pw)
	for _, p := range bcryptPrefixes {
		if !strings.HasPrefix(pw, p) {
			continue
		}
		// bcrypt.Cost checks the version and cost but not the length.
		if _, err := bcrypt.Cost([]byte(pw)); err != nil {
			o.errorf("smtp_password", "malformed bcrypt hash: %v", err)
		} else if len(pw) != bcryptLen {
			o.errorf("smtp_password", "malformed bcrypt hash: %d characters, want %d", len(pw), bcryptLen)
		}
		a.PasswordHashed = true
		return
	}
	o.warnf("smtp_password", "plain-text smtp_password; use xoauth2-proxy hash-password")
}

package account

import (
	"net/netip"
	"reflect"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Edit is what an edit of an account's configuration asks of its
// runtime state.
type Edit int

const (
	// Unchanged: the configuration is the same.
	Unchanged Edit = iota
	// SettingsOnly: only settings that no upstream session depends on
	// changed (vmta_name, smtp_password, budgets, max_concurrent_messages):
	// the warm sessions, tokens, counters and cool-downs go on.
	SettingsOnly
	// SessionsOnly: what sessions are opened with changed (endpoint, TLS
	// mode, mechanism, source address, pool settings, disabled), but not
	// the credential: the sessions are drained and reopened with the same
	// token source.
	SessionsOnly
	// Credentials: the credential or the token settings changed: a new
	// token source, and new sessions.
	Credentials
)

// Classify says what the edit from old to new asks of the account's
// state. Fields are sorted by listing the ones known not to matter: a
// field config.Account gains later counts as session-affecting until it
// is listed here, which errs towards reopening sessions, never towards
// keeping sessions authenticated with an old credential.
func Classify(old, new *config.Account) Edit {
	if reflect.DeepEqual(*old, *new) {
		return Unchanged
	}
	a, b := *old, *new
	clearSettings(&a)
	clearSettings(&b)
	if reflect.DeepEqual(a, b) {
		return SettingsOnly
	}
	clearSessionSide(&a)
	clearSessionSide(&b)
	if reflect.DeepEqual(a, b) {
		return SessionsOnly
	}
	return Credentials
}

// clearSettings zeroes what the proxy checks on the client side only.
func clearSettings(c *config.Account) {
	c.VMTAName = ""
	c.SMTPPassword, c.PasswordHashed = secret.String{}, false
	c.MaxConcurrentMessages, c.MaxMessagesPerHour = 0, 0
	c.RateLimiting = config.RateLimiting{}
}

// clearSessionSide zeroes what sessions depend on but a token does not.
// Disabled is here: disabling closes the account's sessions at once, and
// enabling it again opens new ones.
func clearSessionSide(c *config.Account) {
	c.Provider = ""
	c.SMTPAddr, c.TLS, c.Mechanism = "", "", ""
	c.IPAddress = netip.Addr{}
	c.Pool = config.Pool{}
	c.Disabled = false
}

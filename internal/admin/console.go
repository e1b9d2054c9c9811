package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// What the operator's console (package console, on the same listener)
// shares with the API: the token check with its hold-back of failing
// addresses, the authenticated route wrapper, and the account actions, so
// that a page and a route do the same thing the same way.

// ErrNoToken: no admin token is configured, so no one can sign in.
var ErrNoToken = errors.New("no admin token configured; set one with --admin-token-file FILE or the XOAUTH2_PROXY_ADMIN_TOKEN environment variable")

// ErrWrongToken: the presented token is not the admin token.
var ErrWrongToken = errors.New("wrong admin token")

// HeldError: the request's address failed too often and is held back;
// the token was not checked.
type HeldError struct{ RetryAfter time.Duration }

func (e *HeldError) Error() string {
	return "too many failed sign-ins from this address; retry in " + e.RetryAfter.Round(time.Second).String()
}

// CheckToken compares a presented admin token (a sign-in form) in
// constant time, counting a failure against r's address exactly as a
// wrong bearer token is counted (authfail.go). It returns nil,
// ErrNoToken, ErrWrongToken or a *HeldError.
func (a *API) CheckToken(r *http.Request, presented string) error {
	if a.o.Token.Empty() {
		return ErrNoToken
	}
	key := clientKey(r.RemoteAddr)
	if wait := a.fails.held(key); wait > 0 {
		a.metrics.authFailures.WithLabelValues(resultRateLimited).Inc()
		return &HeldError{RetryAfter: wait}
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(presented)))
	if subtle.ConstantTimeCompare(sum[:], a.token[:]) != 1 {
		a.metrics.authFailures.WithLabelValues(resultRefused).Inc()
		a.fails.failed(key, r)
		return ErrWrongToken
	}
	a.fails.succeeded(key)
	return nil
}

// Handle registers an authenticated API route (bearer token, bounded
// body), for routes another package serves beside the API's own.
func (a *API) Handle(pattern string, h http.HandlerFunc) { a.handle(pattern, h) }

// SetDisabled disables or enables the account with this email or
// account_id in accounts.json and reloads; config.ErrNoAccount when there
// is none.
func (a *API) SetDisabled(name string, disabled bool) error {
	var v any // nil removes the key
	if disabled {
		v = true
	}
	err := a.edit(nil, func(f *config.AccountsFile) error { return f.Set(f.Find(name), map[string]any{"disabled": v}) })
	if err == nil {
		a.log.Info("admin: account enabled/disabled", "account", name, "disabled", disabled)
	}
	return err
}

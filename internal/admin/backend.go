package admin

import (
	"context"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// Backend is what the admin API needs from the running proxy.
type Backend interface {
	// Snapshot is the configuration in force.
	Snapshot() *config.Snapshot
	// Registry is the live account set.
	Registry() *account.Registry
	// Reload re-reads the files and applies them; on error nothing changed.
	Reload() error
	// Ready reports that the listener is up and the configuration loaded.
	Ready() bool
	// VerifyCredentials performs a real token request for a candidate
	// account (POST with "verify": true) without keeping anything.
	VerifyCredentials(ctx context.Context, a *config.Account) error
	// TokenStatus describes an account's token.
	TokenStatus(a *account.Account) TokenStatus
	// RefreshToken forces a token request for the account now (and clears
	// a needs-consent hold).
	RefreshToken(ctx context.Context, a *account.Account) error
	// Budget reports the account's budgets and cool-down; false when
	// budgets are off (dry-run).
	Budget(a *account.Account) (quota.Status, bool)
}

// AccountsEditor is a Backend that applies the API's edits of
// accounts.json itself: in cluster mode the service commits them to the
// cluster's account set (package clusteraccounts). The edit must be applied
// as config.EditAccounts does: validated, atomic, nothing changed on error.
type AccountsEditor interface {
	EditAccounts(snap *config.Snapshot, edit func(*config.AccountsFile) error) error
}

// TokenStatus is an account's token state as shown by the API.
type TokenStatus struct {
	State       string    `json:"state"` // ok, refreshing, retrying, needs_consent, disabled, none
	Expiry      time.Time `json:"expiry,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	// Final: the credential was definitively rejected (invalid_grant);
	// DELETE /admin/accounts/invalid removes such accounts.
	Final bool `json:"final,omitempty"`
}

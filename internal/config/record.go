package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// AccountRecord is one accounts.json record as the tools that add
// accounts write it: the admin API (the body of POST /admin/accounts,
// COMPAT.md), the importer and "accounts add", the demo and bench. Its
// JSON tags are the file's keys; the loader reads the same keys, with
// everything else an operator may set (parseAccount). Secrets are
// secret.String: read from JSON, never written to it (Fields reveals them
// for the file).
type AccountRecord struct {
	AccountID    string        `json:"account_id"` // "" until Complete generates it
	Email        string        `json:"email"`
	Provider     string        `json:"provider"` // "gmail" or "outlook"
	ClientID     string        `json:"client_id"`
	ClientSecret secret.String `json:"client_secret"` // optional for outlook (public clients)
	RefreshToken secret.String `json:"refresh_token"`
	TokenURL     string        `json:"oauth_token_url"` // "" means the provider's
	Endpoint     string        `json:"oauth_endpoint"`  // upstream host:port; "" means the provider's
	IPAddress    string        `json:"ip_address"`
	VMTAName     string        `json:"vmta_name"`     // "" until Complete generates it
	SMTPPassword secret.String `json:"smtp_password"` // a bcrypt hash, or plain text (warned about)

	// Generated lists the keys whose values were made up rather than
	// given (Complete's account_id and vmta_name, a provider the importer
	// guessed): re-adding an existing account keeps the record's values of
	// these (AccountsFile.Upsert). Never read from JSON.
	Generated []string `json:"-"`
}

// recordKeys is the order of keys in a record Fields renders, the order
// the old tool wrote them in.
var recordKeys = []string{"account_id", "email", "provider", "client_id", "client_secret", "refresh_token",
	"oauth_token_url", "oauth_endpoint", "ip_address", "vmta_name", "smtp_password"}

// Complete checks what every new record needs and fills in the old tool's
// generated defaults, the one place these rules live: email is a valid
// address; provider is "gmail" or "outlook"; client_id and refresh_token
// are set, and client_secret for gmail; oauth_token_url, when set, is one
// the loader accepts (checked before any token request sends secrets
// there); ip_address, when set, is an IP address. Then an empty account_id
// becomes <provider>_<email with @ and . as _> and an empty vmta_name
// vmta-<provider>-<local part>, both lower case, and both are added to
// Generated. The error names the field, never a secret.
func (r *AccountRecord) Complete() error {
	r.Email = strings.TrimSpace(r.Email)
	r.Provider = strings.ToLower(strings.TrimSpace(r.Provider))
	if msg := emailError(r.Email); msg != "" {
		return fmt.Errorf("email: a valid address is required (%s)", msg)
	}
	switch {
	case r.Provider != ProviderGmail && r.Provider != ProviderOutlook:
		return fmt.Errorf("provider: must be gmail or outlook, not %q", r.Provider)
	case r.ClientID == "":
		return errors.New("client_id: required")
	case r.RefreshToken.Empty():
		return errors.New("refresh_token: required")
	case r.Provider == ProviderGmail && r.ClientSecret.Empty():
		return errors.New("client_secret: required for gmail")
	}
	if r.TokenURL != "" {
		if err := CheckTokenURL(r.TokenURL); err != nil {
			return fmt.Errorf("oauth_token_url: %w", err)
		}
	}
	if r.IPAddress != "" {
		if _, err := netip.ParseAddr(r.IPAddress); err != nil {
			return fmt.Errorf("ip_address: %q is not an IP address", r.IPAddress)
		}
	}
	local, _, _ := strings.Cut(r.Email, "@")
	if r.AccountID == "" {
		r.AccountID = r.Provider + "_" + strings.NewReplacer("@", "_", ".", "_").Replace(strings.ToLower(r.Email))
		r.Generated = append(r.Generated, "account_id")
	}
	if r.VMTAName == "" {
		r.VMTAName = "vmta-" + r.Provider + "-" + strings.ToLower(local)
		r.Generated = append(r.Generated, "vmta_name")
	}
	return nil
}

// Fields is r as accounts.json keys, secrets revealed, empty fields left
// out: what goes into the file, or into a request to the admin API.
func (r *AccountRecord) Fields() map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{
		"account_id": r.AccountID, "email": r.Email, "provider": r.Provider, "client_id": r.ClientID,
		"client_secret": r.ClientSecret.Reveal(), "refresh_token": r.RefreshToken.Reveal(),
		"oauth_token_url": r.TokenURL, "oauth_endpoint": r.Endpoint, "ip_address": r.IPAddress,
		"vmta_name": r.VMTAName, "smtp_password": r.SMTPPassword.Reveal(),
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// ErrAccountExists is returned by Upsert, without overwrite, for a record
// whose email or account_id an account of the file already has.
var ErrAccountExists = errors.New("account already exists")

// Append adds r at the end of the file, its keys in the usual order.
func (f *AccountsFile) Append(r *AccountRecord) error {
	return f.Add(recordKeys, r.Fields())
}

// Upsert adds r, or, with overwrite, merges it into the account with its
// email (any case) or account_id, and returns the record's index. The
// merge changes the fields r gives and keeps every other key
// (smtp_password, disabled, per-account overrides, "_" comments): dropping
// those would re-enable a disabled account and open a password-protected
// one to anyone on a trusted network. A value r.Generated names does not
// replace one the record has: the account_id keys the account's token
// state. Without overwrite an existing account is ErrAccountExists.
func (f *AccountsFile) Upsert(r *AccountRecord, overwrite bool) (int, error) {
	i := f.Find(r.Email)
	if i < 0 {
		i = f.Find(r.AccountID)
	}
	if i < 0 {
		if err := f.Append(r); err != nil {
			return 0, err
		}
		return f.Len() - 1, nil
	}
	if !overwrite {
		return i, ErrAccountExists
	}
	fields := r.Fields()
	for _, k := range r.Generated {
		if f.Has(i, k) {
			delete(fields, k)
		}
	}
	return i, f.Merge(i, recordKeys, fields)
}

package importer

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Record is one account to add: the fields the admin API's POST
// /admin/accounts takes (COMPAT.md), secrets held as secret.String.
type Record struct {
	Email        string
	AccountID    string // "" until Normalise generates it
	Provider     string // "gmail" or "outlook"; "" until Normalise guesses it
	ClientID     string
	ClientSecret secret.String // optional for outlook (public clients)
	RefreshToken secret.String
	TokenURL     string // "oauth_token_url"; "" means the provider's
	Endpoint     string // "oauth_endpoint"; "" means the provider's
	IPAddress    string
	VMTAName     string        // "" until Normalise generates it
	SMTPPassword secret.String // a bcrypt hash, or plain text (warned about)

	// generated lists the accounts.json keys Normalise guessed or made up
	// rather than read: an overwrite keeps an existing record's values of
	// these (upsert, in store.go).
	generated []string
}

// KeyOrder is the order of keys in a record written to accounts.json, the
// same as the admin API writes.
var KeyOrder = []string{"account_id", "email", "provider", "client_id", "client_secret", "refresh_token",
	"oauth_token_url", "oauth_endpoint", "ip_address", "vmta_name", "smtp_password"}

// Normalise checks r and completes it the way the admin API does. An empty
// Provider is guessed from the email's domain (Guess); a domain Guess does
// not know gets fallback, or "gmail" (Google Workspace) when fallback is
// "". A personal Microsoft domain without a TokenURL gets LiveTokenURL.
// Then account_id defaults to <provider>_<email with @ and . as _> and
// vmta_name to vmta-<provider>-<local part>, both lower case.
func (r *Record) Normalise(fallback string) error {
	r.Email = strings.TrimSpace(r.Email)
	r.Provider = strings.ToLower(strings.TrimSpace(r.Provider))
	local, domain, ok := strings.Cut(r.Email, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || strings.ContainsAny(r.Email, " \t") {
		return errors.New("email: a valid address is required")
	}
	r.generated = nil
	if r.Provider == "" {
		p, url, known := Guess(domain)
		switch {
		case known:
			r.Provider = p
			r.generated = append(r.generated, "provider")
			if r.TokenURL == "" && url != "" {
				r.TokenURL = url
				r.generated = append(r.generated, "oauth_token_url")
			}
		case fallback != "":
			r.Provider = strings.ToLower(fallback)
		default:
			r.Provider = "gmail"
			r.generated = append(r.generated, "provider")
		}
	}
	switch {
	case r.Provider != "gmail" && r.Provider != "outlook":
		return fmt.Errorf("provider: must be gmail or outlook, not %q", r.Provider)
	case r.ClientID == "":
		return errors.New("client_id: required")
	case r.RefreshToken.Empty():
		return errors.New("refresh_token: required")
	case r.Provider == "gmail" && r.ClientSecret.Empty():
		return errors.New("client_secret: required for gmail")
	}
	if r.IPAddress != "" {
		if _, err := netip.ParseAddr(r.IPAddress); err != nil {
			return fmt.Errorf("ip_address: %q is not an IP address", r.IPAddress)
		}
	}
	if r.AccountID == "" {
		r.AccountID = r.Provider + "_" + strings.NewReplacer("@", "_", ".", "_").Replace(strings.ToLower(r.Email))
		r.generated = append(r.generated, "account_id")
	}
	if r.VMTAName == "" {
		r.VMTAName = "vmta-" + r.Provider + "-" + strings.ToLower(local)
		r.generated = append(r.generated, "vmta_name")
	}
	return nil
}

// Fields is r as accounts.json keys, secrets revealed, empty fields left
// out: for config.AccountsFile and the admin API's request body.
func (r *Record) Fields() map[string]any {
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

// redact replaces r's secrets in msg: error text from a token endpoint, the
// loader or the admin API must not carry them to the operator's terminal
// or a log. Secrets shorter than 3 bytes are left alone (they would mangle
// ordinary words and protect nothing).
func (r *Record) redact(msg string) string {
	for _, s := range []secret.String{r.RefreshToken, r.ClientSecret, r.SMTPPassword} {
		if v := s.Reveal(); len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return msg
}

package importer

import (
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Normalise completes r the way the admin API does (config.AccountRecord's
// Complete), after guessing an empty Provider from the email's domain
// (Guess); a domain Guess does not know gets fallback, or "gmail" (Google
// Workspace) when fallback is "". A personal Microsoft domain without a
// TokenURL gets LiveTokenURL. A guessed provider or token URL is listed in
// r.Generated, so that an overwrite keeps an existing record's values.
func Normalise(r *config.AccountRecord, fallback string) error {
	r.Email = strings.TrimSpace(r.Email)
	r.Provider = strings.ToLower(strings.TrimSpace(r.Provider))
	r.Generated = nil
	if r.Provider == "" {
		_, domain, _ := strings.Cut(r.Email, "@")
		p, url, known := Guess(domain)
		switch {
		case known:
			r.Provider = p
			r.Generated = append(r.Generated, "provider")
			if r.TokenURL == "" && url != "" {
				r.TokenURL = url
				r.Generated = append(r.Generated, "oauth_token_url")
			}
		case fallback != "":
			r.Provider = strings.ToLower(fallback)
		default:
			r.Provider = "gmail"
			r.Generated = append(r.Generated, "provider")
		}
	}
	return r.Complete()
}

// redact replaces r's secrets in msg: error text from a token endpoint, the
// loader or the admin API must not carry them to the operator's terminal
// or a log. Secrets shorter than 3 bytes are left alone (they would mangle
// ordinary words and protect nothing).
func redact(r *config.AccountRecord, msg string) string {
	for _, s := range []secret.String{r.RefreshToken, r.ClientSecret, r.SMTPPassword} {
		if v := s.Reveal(); len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return msg
}

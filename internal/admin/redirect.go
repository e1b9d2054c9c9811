package admin

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// The admin token lets its holder change accounts but never read their
// secrets. Without the rule below it could still have them sent to a host
// of its choosing: PATCH oauth_token_url (or the SMTP endpoint that gets
// the access tokens), then POST .../refresh (pentest item 6). So a write
// may send an account's existing credentials only where they already go;
// to send them anywhere else, the request must give them itself, which
// proves the caller has them. Editing accounts.json and reloading needs no
// such proof: whoever can edit the file can read it.

// errRedirect is wrapped by the error of a write refused by that rule.
var errRedirect = errors.New("the admin token alone may not send an account's credentials somewhere new")

// destination is where an account's credentials go: the token endpoint
// gets the grant's secrets, the SMTP endpoint the access tokens they buy.
type destination struct {
	tokenURL  string
	smtpAddr  string
	cleartext bool // smtp_tls "none"
}

func destinationOf(c *config.Account) destination {
	return destination{tokenURL: c.TokenURL, smtpAddr: c.SMTPAddr, cleartext: c.TLS == upstream.TLSNone}
}

// fingerprint identifies a secret without holding it: the SHA-256 of a
// secret's value, or of a key's public half.
type fingerprint [sha256.Size]byte

func fingerprintOf(s string) fingerprint { return sha256.Sum256([]byte(s)) }

// credential is one secret an account's grant uses.
type credential struct {
	key   string // the accounts.json key that configures it
	print fingerprint
	// inline: the value is in the record itself, so a value no record
	// held before the write can only have come from the request. A key
	// file is not: a request naming a path gives nothing.
	inline bool
}

// credentialsOf lists the secrets an account's grant sends.
func credentialsOf(c *config.Account) []credential {
	var out []credential
	if s := c.ClientSecret.Reveal(); s != "" {
		out = append(out, credential{key: "client_secret", print: fingerprintOf(s), inline: true})
	}
	if s := c.RefreshToken.Reveal(); s != "" {
		out = append(out, credential{key: "refresh_token", print: fingerprintOf(s), inline: true})
	}
	if k := c.ServiceAccount; k != nil {
		// Source is the key file's absolute path, else "inline (...)".
		cr := credential{key: "service_account_key", inline: !filepath.IsAbs(k.Source)}
		if !cr.inline {
			cr.key = "service_account_key_file"
		}
		if der, err := x509.MarshalPKIXPublicKey(k.Public()); err == nil {
			cr.print = fingerprintOf(string(der))
		}
		out = append(out, cr)
	}
	if cert := c.Certificate; cert != nil {
		cr := credential{key: "certificate_file"}
		if der, err := x509.MarshalPKIXPublicKey(cert.Public()); err == nil {
			cr.print = fingerprintOf(string(der))
		}
		out = append(out, cr)
	}
	return out
}

// given is the set of secrets a request supplies itself.
type given map[fingerprint]bool

// give adds the non-empty values to g.
func (g given) give(values ...string) {
	for _, v := range values {
		if v != "" {
			g[fingerprintOf(v)] = true
		}
	}
}

// checkDestinations compares the accounts before and after a write. Every
// credential of every account after it must go where that credential
// already went (to some account's destination before the write), or have
// been given by the request. A credential no account had before passes
// when it is inline (then the request wrote it) or when its account, by
// account_id, keeps its destination (a new key file for the same
// endpoints). It returns an error wrapping errRedirect for each account
// that fails, naming the keys the request must give again.
func checkDestinations(before, after []*config.Account, g given) error {
	went := map[fingerprint]map[destination]bool{}
	byID := map[string]*config.Account{}
	for _, c := range before {
		byID[c.ID] = c
		d := destinationOf(c)
		for _, cr := range credentialsOf(c) {
			if went[cr.print] == nil {
				went[cr.print] = map[destination]bool{}
			}
			went[cr.print][d] = true
		}
	}
	var errs []error
	for _, c := range after {
		d := destinationOf(c)
		prev := byID[c.ID]
		var need []string
		for _, cr := range credentialsOf(c) {
			dests, known := went[cr.print]
			switch {
			case g[cr.print], known && dests[d]:
			case !known && cr.inline:
			case !known && prev != nil && destinationOf(prev) == d:
			default:
				need = append(need, cr.key)
			}
		}
		if len(need) > 0 {
			errs = append(errs, redirectError(c, prev, need))
		}
	}
	return errors.Join(errs...)
}

// redirectError says what would move and which keys the request must give.
func redirectError(c, prev *config.Account, need []string) error {
	what := "its credentials would go somewhere new"
	if prev != nil {
		var moved []string
		from, to := destinationOf(prev), destinationOf(c)
		if from.tokenURL != to.tokenURL {
			moved = append(moved, "token endpoint")
		}
		if from.smtpAddr != to.smtpAddr {
			moved = append(moved, "SMTP endpoint")
		}
		if from.cleartext != to.cleartext {
			moved = append(moved, "use of TLS")
		}
		if len(moved) > 0 {
			what = "its " + strings.Join(moved, " and ") + " would change"
		}
	}
	slices.Sort(need)
	need = slices.Compact(need)
	msg := fmt.Sprintf("account %s: %s; give %s again in the same request, or edit accounts.json and reload",
		c.Email, what, strings.Join(need, " and "))
	if slices.ContainsFunc(need, func(k string) bool { return strings.HasSuffix(k, "_file") }) {
		msg += " (a key file cannot be given through the API)"
	}
	return fmt.Errorf("%s (%w)", msg, errRedirect)
}

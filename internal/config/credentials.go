package config

import (
	"crypto/sha256"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// MicrosoftTokenURL is the Microsoft identity platform v2 token endpoint
// of a tenant: an id, a verified domain, or "common", "organizations",
// "consumers".
func MicrosoftTokenURL(tenant string) string {
	return "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token"
}

// keyCache parses each key file (and each distinct inline key) once per
// Load, however many accounts name it.
type keyCache struct {
	dir   string // the accounts file's directory, for relative paths
	sa    map[string]saResult
	certs map[[2]string]certResult
}

type saResult struct {
	key *token.ServiceAccountKey
	err error
}

type certResult struct {
	cert *token.ClientCertificate
	err  error
}

func newKeyCache(accountsFile string) *keyCache {
	dir, err := filepath.Abs(filepath.Dir(accountsFile))
	if err != nil {
		dir = filepath.Dir(accountsFile)
	}
	return &keyCache{dir: dir, sa: map[string]saResult{}, certs: map[[2]string]certResult{}}
}

func (c *keyCache) path(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.dir, p)
}

// tenantPattern is a tenant id (GUID), a domain, or one of the
// multi-tenant names: letters, digits, dots and dashes.
var tenantPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$`)

// multiTenant are the tenant names that are not one directory. App-only
// tokens need a real tenant.
var multiTenant = map[string]bool{"common": true, "organizations": true, "consumers": true}

// parseAuthType reads "auth_type".
func parseAuthType(o *object, a *Account) {
	a.AuthType = token.AuthRefreshToken
	var s string
	if !o.str("auth_type", &s) {
		return
	}
	switch t := token.AuthType(strings.ToLower(s)); t {
	case token.AuthRefreshToken, token.AuthGoogleServiceAccount, token.AuthClientCredentials:
		a.AuthType = t
	default:
		o.errorf("auth_type", `must be "refresh_token", "google_service_account" or "client_credentials", not %q`, s)
	}
}

// parseCredentials reads what the account's auth type needs beyond the
// common keys, decides its token URL (explicitURL: oauth_token_url was set
// on the account) and its default scope.
func parseCredentials(o *object, a *Account, keys *keyCache, explicitURL bool) {
	if o.str("tenant", &a.Tenant) && !tenantPattern.MatchString(a.Tenant) {
		o.errorf("tenant", "must be a tenant id, a domain, \"organizations\", \"common\" or \"consumers\", not %q", a.Tenant)
	}
	switch a.AuthType {
	case token.AuthGoogleServiceAccount:
		a.ServiceAccount = parseServiceAccountKey(o, a, keys)
		if !explicitURL && a.ServiceAccount != nil && a.ServiceAccount.TokenURI != "" {
			a.TokenURL = a.ServiceAccount.TokenURI
			checkTokenURL(o, "service_account_key_file", a.TokenURL)
		}
		if a.Scope == "" {
			a.Scope = token.ScopeGoogleMail
		}
		for _, k := range []string{"refresh_token", "client_secret", "tenant", "certificate_file", "private_key_file"} {
			if _, ok := o.get(k); ok {
				o.warnf(k, "ignored: auth_type %q does not use it", a.AuthType)
			}
		}
	case token.AuthClientCredentials:
		switch {
		case !explicitURL && a.Tenant == "":
			o.errorf("tenant", `required with auth_type "client_credentials" unless oauth_token_url is set`)
		case !explicitURL && multiTenant[strings.ToLower(a.Tenant)]:
			o.errorf("tenant", "%q is not one directory; app-only tokens need the tenant id or domain", a.Tenant)
		case !explicitURL:
			a.TokenURL = MicrosoftTokenURL(a.Tenant)
		}
		a.Certificate = parseClientCertificate(o, keys)
		switch {
		case a.Certificate != nil && !a.ClientSecret.Empty():
			o.errorf("client_secret", "set client_secret or certificate_file, not both")
		case a.Certificate == nil && a.ClientSecret.Empty():
			if _, certSet := o.get("certificate_file"); !certSet {
				o.errorf("client_secret", `required with auth_type "client_credentials" unless certificate_file is set`)
			}
		}
		if a.Scope == "" {
			a.Scope = token.ScopeOutlookAppOnly
		}
		for _, k := range []string{"refresh_token", "service_account_key_file", "service_account_key"} {
			if _, ok := o.get(k); ok {
				o.warnf(k, "ignored: auth_type %q does not use it", a.AuthType)
			}
		}
	default: // token.AuthRefreshToken
		if a.Tenant != "" && !explicitURL {
			if blockName(a.Provider) == ProviderGmail {
				o.warnf("tenant", "ignored: a tenant names a Microsoft directory, and this is a gmail account")
			} else {
				a.TokenURL = MicrosoftTokenURL(a.Tenant)
			}
		}
		for _, k := range []string{"service_account_key_file", "service_account_key", "certificate_file", "private_key_file"} {
			if _, ok := o.get(k); ok {
				o.warnf(k, `ignored: set "auth_type" to use it`)
			}
		}
	}
	if a.TokenURL == "" {
		o.errorf("oauth_token_url", "required: provider %q has no built-in token endpoint", a.Provider)
	}
}

// parseServiceAccountKey reads service_account_key_file or the inline
// service_account_key (the key file's JSON as an object or as a string).
func parseServiceAccountKey(o *object, a *Account, keys *keyCache) *token.ServiceAccountKey {
	var file string
	hasFile := o.str("service_account_key_file", &file)
	inline, hasInline := o.get("service_account_key")
	switch {
	case hasFile && hasInline:
		o.errorf("service_account_key", "set service_account_key_file or service_account_key, not both")
		return nil
	case hasFile:
		path := keys.path(file)
		r, ok := keys.sa[path]
		if !ok {
			r.key, r.err = token.LoadServiceAccountKey(path)
			if r.err == nil {
				warnKeyReadable(o, "service_account_key_file", path)
			}
			keys.sa[path] = r
		}
		if r.err != nil {
			o.errorf("service_account_key_file", "%v", r.err)
		}
		return r.key
	case hasInline:
		var data []byte
		switch v := inline.(type) {
		case string:
			data = []byte(v)
		case map[string]any:
			var err error
			if data, err = json.Marshal(v); err != nil {
				o.errorf("service_account_key", "%v", err)
				return nil
			}
		default:
			o.errorf("service_account_key", "must be the key file's JSON, as an object or a string, not %s", jsonType(inline))
			return nil
		}
		sum := sha256.Sum256(data)
		id := "inline:" + string(sum[:])
		r, ok := keys.sa[id]
		if !ok {
			r.key, r.err = token.ParseServiceAccountKey(data, "inline (account "+a.ID+")")
			keys.sa[id] = r
		}
		if r.err != nil {
			o.errorf("service_account_key", "%v", r.err)
		}
		return r.key
	default:
		o.errorf("service_account_key_file", `required with auth_type "google_service_account" (or an inline service_account_key)`)
		return nil
	}
}

// parseClientCertificate reads certificate_file and private_key_file.
func parseClientCertificate(o *object, keys *keyCache) *token.ClientCertificate {
	var certFile, keyFile string
	if !o.str("certificate_file", &certFile) {
		if o.str("private_key_file", &keyFile) {
			o.errorf("certificate_file", "required with private_key_file")
		}
		return nil
	}
	certPath := keys.path(certFile)
	keyPath := certPath
	if o.str("private_key_file", &keyFile) {
		keyPath = keys.path(keyFile)
	}
	id := [2]string{certPath, keyPath}
	r, ok := keys.certs[id]
	if !ok {
		r.cert, r.err = token.LoadClientCertificate(certPath, keyPath)
		if r.err == nil {
			warnKeyReadable(o, "private_key_file", keyPath)
			if time.Now().After(r.cert.NotAfter) {
				o.warnf("certificate_file", "%s expired on %s; Microsoft will refuse it", certPath, r.cert.NotAfter.Format(time.DateOnly))
			}
		}
		keys.certs[id] = r
	}
	if r.err != nil {
		o.errorf("certificate_file", "%v", r.err)
	}
	return r.cert
}

// warnKeyReadable warns when a key file can be read by its group or by
// every user.
func warnKeyReadable(o *object, key, path string) {
	warnSecretFile(o, key, path, "a private key")
}

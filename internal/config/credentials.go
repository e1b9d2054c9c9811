package config

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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

// ServiceAccountKey is a parsed Google service-account key (the JSON file
// Google issues). One key may serve many accounts; Load parses each key
// once and the accounts share the value. It is a crypto.Signer for RS256
// assertions and never prints its private key.
type ServiceAccountKey struct {
	Source      string // the key file's absolute path, or "inline (account <id>)"
	ClientEmail string // "client_email": the assertion's issuer
	KeyID       string // "private_key_id": the assertion's kid
	TokenURI    string // "token_uri"; "" when the file has none
	key         *rsa.PrivateKey
}

// Public implements crypto.Signer.
func (k *ServiceAccountKey) Public() crypto.PublicKey { return k.key.Public() }

// Sign implements crypto.Signer.
func (k *ServiceAccountKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.key.Sign(r, digest, opts)
}

// Format prints the key's identity, never the key, for every verb.
func (k ServiceAccountKey) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "service account %s key %s from %s", k.ClientEmail, k.KeyID, k.Source)
}

// LogValue implements slog.LogValuer without the private key.
func (k ServiceAccountKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client_email", k.ClientEmail), slog.String("key_id", k.KeyID), slog.String("source", k.Source))
}

// MarshalJSON renders the identity only.
func (k ServiceAccountKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"client_email": k.ClientEmail, "private_key_id": k.KeyID, "source": k.Source})
}

// ClientCertificate is a parsed certificate credential of a Microsoft app:
// the certificate registered with the app and its private key. It is a
// crypto.Signer for the client assertion and never prints its private key.
type ClientCertificate struct {
	CertFile   string   // absolute path of the PEM certificate
	KeyFile    string   // absolute path of the PEM private key (may equal CertFile)
	Thumbprint [20]byte // SHA-1 of the certificate's DER: the assertion's x5t
	NotAfter   time.Time
	key        *rsa.PrivateKey
}

// Public implements crypto.Signer.
func (c *ClientCertificate) Public() crypto.PublicKey { return c.key.Public() }

// Sign implements crypto.Signer.
func (c *ClientCertificate) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return c.key.Sign(r, digest, opts)
}

// Format prints the certificate's identity, never the key, for every verb.
func (c ClientCertificate) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "certificate %s (thumbprint %X)", c.CertFile, c.Thumbprint)
}

// LogValue implements slog.LogValuer without the private key.
func (c ClientCertificate) LogValue() slog.Value {
	return slog.GroupValue(slog.String("certificate_file", c.CertFile), slog.String("thumbprint", fmt.Sprintf("%X", c.Thumbprint)))
}

// MarshalJSON renders the identity only.
func (c ClientCertificate) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"certificate_file": c.CertFile, "thumbprint": fmt.Sprintf("%X", c.Thumbprint)})
}

// keyCache parses each key file (and each distinct inline key) once per
// Load, however many accounts name it.
type keyCache struct {
	dir   string // the accounts file's directory, for relative paths
	sa    map[string]saResult
	certs map[[2]string]certResult
}

type saResult struct {
	key *ServiceAccountKey
	err error
}

type certResult struct {
	cert *ClientCertificate
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
func parseServiceAccountKey(o *object, a *Account, keys *keyCache) *ServiceAccountKey {
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
			r = loadServiceAccountFile(path)
			if r.err == nil {
				warnKeyReadable(o, "service_account_key_file", path)
			}
			keys.sa[path] = r
		}
		if r.err != nil {
			o.errorf("service_account_key_file", "%s: %v", path, r.err)
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
			r.key, r.err = parseServiceAccountJSON(data, "inline (account "+a.ID+")")
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

func loadServiceAccountFile(path string) saResult {
	data, err := os.ReadFile(path)
	if err != nil {
		return saResult{err: unwrapPath(err)}
	}
	k, err := parseServiceAccountJSON(data, path)
	return saResult{key: k, err: err}
}

// parseServiceAccountJSON parses Google's service-account key format. Its
// errors never quote the key.
func parseServiceAccountJSON(data []byte, source string) (*ServiceAccountKey, error) {
	var f struct {
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		PrivateKeyID string `json:"private_key_id"`
		PrivateKey   string `json:"private_key"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, errors.New("not a service-account key file (invalid JSON)")
	}
	switch {
	case f.Type != "" && f.Type != "service_account":
		return nil, fmt.Errorf("type is %q, want \"service_account\"", f.Type)
	case f.ClientEmail == "":
		return nil, errors.New(`no "client_email"`)
	case f.PrivateKey == "":
		return nil, errors.New(`no "private_key"`)
	}
	key, err := parseRSAKey([]byte(f.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	return &ServiceAccountKey{Source: source, ClientEmail: f.ClientEmail, KeyID: f.PrivateKeyID, TokenURI: f.TokenURI, key: key}, nil
}

// parseClientCertificate reads certificate_file and private_key_file.
func parseClientCertificate(o *object, keys *keyCache) *ClientCertificate {
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
		r.cert, r.err = loadClientCertificate(certPath, keyPath)
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

func loadClientCertificate(certPath, keyPath string) (*ClientCertificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, unwrapPath(err))
	}
	var cert *x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if cert, err = x509.ParseCertificate(b.Bytes); err != nil {
				return nil, fmt.Errorf("%s: %w", certPath, err)
			}
			break
		}
	}
	if cert == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", certPath)
	}
	keyPEM := certPEM
	if keyPath != certPath {
		if keyPEM, err = os.ReadFile(keyPath); err != nil {
			return nil, fmt.Errorf("%s: %w", keyPath, unwrapPath(err))
		}
	}
	key, err := parseRSAKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("the private key in %s does not belong to the certificate in %s", keyPath, certPath)
	}
	return &ClientCertificate{CertFile: certPath, KeyFile: keyPath, Thumbprint: sha1.Sum(cert.Raw), NotAfter: cert.NotAfter, key: key}, nil
}

// parseRSAKey finds the first private key in PEM data: PKCS #8 ("PRIVATE
// KEY", as Google issues) or PKCS #1 ("RSA PRIVATE KEY"). The assertions
// are RS256, so the key must be RSA.
func parseRSAKey(data []byte) (*rsa.PrivateKey, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PEM private key found")
		}
		switch b.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			if err != nil {
				return nil, errors.New("malformed RSA private key")
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, errors.New("malformed PKCS #8 private key")
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("key is %T; RS256 needs an RSA key", k)
			}
			return rk, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted private keys are not supported; store it decrypted, readable only by the proxy")
		}
	}
}

// warnKeyReadable warns when a key file can be read by its group or by
// every user.
func warnKeyReadable(o *object, key, path string) {
	warnSecretFile(o, key, path, "a private key")
}

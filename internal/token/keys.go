package token

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// ServiceAccountKey is a parsed Google service-account key (the JSON file
// Google issues). One key may serve many accounts, which then share one
// value (config.Load parses each key file once). It is a crypto.Signer for
// RS256 assertions and never prints its private key; it is only read, so
// it is safe for concurrent use.
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

// LoadServiceAccountKey reads and parses the key file at path. Its errors
// name path and never quote the key.
func LoadServiceAccountKey(path string) (*ServiceAccountKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	k, err := ParseServiceAccountKey(data, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseServiceAccountKey parses Google's service-account key format;
// source says where it came from (Source). Its errors never quote the key.
func ParseServiceAccountKey(data []byte, source string) (*ServiceAccountKey, error) {
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

// LoadClientCertificate reads the PEM certificate at certPath and its RSA
// private key at keyPath (which may be the same file) and checks that they
// belong together. Its errors name the file and never quote the key.
func LoadClientCertificate(certPath, keyPath string) (*ClientCertificate, error) {
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

// unwrapPath drops the operation and path that os errors repeat: the
// callers name the file already.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

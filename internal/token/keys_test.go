package token_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// keyFile is a service-account key file as Google issues it, with
// private_key set to pemKey.
func keyFile(t *testing.T, typ, pemKey string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{
		"type": typ, "project_id": "proj", "private_key_id": "kid-1", "private_key": pemKey,
		"client_email": "mailer@proj.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseServiceAccountKey(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		err  string // "" for success
	}{
		{name: "PKCS #8", data: keyFile(t, "service_account", pkcs8(t, testKey()))},
		{name: "PKCS #1", data: keyFile(t, "service_account", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testKey())))},
		{name: "no type is fine", data: keyFile(t, "", pkcs8(t, testKey()))},
		{name: "EC key", data: keyFile(t, "service_account", pkcs8(t, ec)), err: "RSA"},
		{name: "encrypted key", data: keyFile(t, "service_account", pemBlock("ENCRYPTED PRIVATE KEY", []byte("x"))), err: "encrypted"},
		{name: "not a key", data: keyFile(t, "service_account", "MIIEvQIBADANBg"), err: "no PEM private key"},
		{name: "another type", data: keyFile(t, "authorized_user", pkcs8(t, testKey())), err: `"authorized_user"`},
		{name: "not JSON", data: []byte("hello"), err: "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := token.ParseServiceAccountKey(tc.data, "test")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "MII") {
					t.Errorf("error quotes key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.ClientEmail != "mailer@proj.iam.gserviceaccount.com" || k.KeyID != "kid-1" || k.Source != "test" ||
				k.TokenURI != "https://oauth2.googleapis.com/token" || !testKey().PublicKey.Equal(k.Public()) {
				t.Errorf("key %v", k)
			}
		})
	}
}

func TestLoadClientCertificate(t *testing.T) {
	t.Parallel()
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, testKey())
	certPEM := pemBlock("CERTIFICATE", cert.Raw)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"app.crt": certPEM, "app.key": pkcs8(t, testKey()), "both.pem": certPEM + pkcs8(t, testKey()),
		"other.key": pkcs8(t, other), "empty.crt": "hello",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, cert, key string
		err             string // "" for success
	}{
		{name: "certificate and key", cert: "app.crt", key: "app.key"},
		{name: "both in one file", cert: "both.pem", key: "both.pem"},
		{name: "key of another certificate", cert: "app.crt", key: "other.key", err: "does not belong"},
		{name: "no certificate", cert: "empty.crt", key: "app.key", err: "holds no PEM certificate"},
		{name: "missing key file", cert: "app.crt", key: "gone.key", err: "gone.key: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := token.LoadClientCertificate(filepath.Join(dir, tc.cert), filepath.Join(dir, tc.key))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Thumbprint != sha1.Sum(cert.Raw) || !c.NotAfter.Equal(cert.NotAfter) || !testKey().PublicKey.Equal(c.Public()) {
				t.Errorf("certificate %v", c)
			}
		})
	}
}

// TestKeys_neverPrinted prints the parsed credentials every way a log or
// an error might.
func TestKeys_neverPrinted(t *testing.T) {
	t.Parallel()
	k, err := token.ParseServiceAccountKey(keyFile(t, "service_account", pkcs8(t, testKey())), "sa.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(path, []byte(pemBlock("CERTIFICATE", selfSigned(t, testKey()).Raw)+pkcs8(t, testKey())), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := token.LoadClientCertificate(path, path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %d %x %v %+v %#v %s\n", k, *k, *k, k, k, c, c, *c, *c, c)
	for _, v := range []any{k, c, *k, *c} {
		b, _ := json.Marshal(v)
		out.Write(b)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("keys", "key", k, "cert", c)
	d := testKey().D.String()
	for _, leak := range []string{d, d[:20], fmt.Sprintf("%x", testKey().D.Bytes()[:16]), "PRIVATE KEY"} {
		if strings.Contains(out.String(), leak) {
			t.Fatalf("private key material printed:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "mailer@proj.iam.gserviceaccount.com") || !strings.Contains(out.String(), path) {
		t.Errorf("the credentials' identities should print:\n%s", out.String())
	}
}

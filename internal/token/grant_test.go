package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// testKey is one RSA key for the package's tests (2048 bits, as Google
// issues them); generating one per test would be slow under -race.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// verifyJWT checks an RS256 compact JWT with pub and returns its header
// and claims.
func verifyJWT(t *testing.T, jwt string, pub *rsa.PublicKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion has %d parts", len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature encoding: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("signature does not verify with the public key: %v", err)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, err := v.(json.Number).Int64()
	if err != nil {
		t.Fatalf("%v is not an integer", v)
	}
	return n
}

func TestServiceAccount_assertionVerifiesWithThePublicKey(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, okToken)
	s := mustSource(t, token.Config{
		Account:  "dwd_1",
		AuthType: token.AuthGoogleServiceAccount,
		TokenURL: e.URL + "/token",
		Issuer:   "mailer@project.iam.gserviceaccount.com",
		Subject:  "sender@example.com",
		KeyID:    "0123abcd",
		Signer:   testKey(),
		Now:      c.Now,
	})
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := e.form(t, 0)
	if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Errorf("grant_type = %q", f.Get("grant_type"))
	}
	for _, k := range []string{"client_secret", "refresh_token", "client_id"} {
		if f.Has(k) {
			t.Errorf("form carries %s", k)
		}
	}
	h, cl := verifyJWT(t, f.Get("assertion"), &testKey().PublicKey)
	if h["alg"] != "RS256" || h["typ"] != "JWT" || h["kid"] != "0123abcd" {
		t.Errorf("header %v", h)
	}
	iat, exp := num(t, cl["iat"]), num(t, cl["exp"])
	if cl["iss"] != "mailer@project.iam.gserviceaccount.com" || cl["sub"] != "sender@example.com" ||
		cl["scope"] != "https://mail.google.com/" || cl["aud"] != e.URL+"/token" {
		t.Errorf("claims %v", cl)
	}
	if iat != c.Now().Unix() || exp-iat != 3600 {
		t.Errorf("iat %d exp %d; want now and at most an hour later", iat, exp)
	}
}

// selfSigned makes a certificate for key, as an app registration would
// hold.
func selfSigned(t *testing.T, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xoauth2-proxy app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestClientCredentials_certificateAssertion(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, okToken)
	cert := selfSigned(t, testKey())
	thumb := sha1.Sum(cert.Raw)
	s := mustSource(t, token.Config{
		Account:        "app_1",
		AuthType:       token.AuthClientCredentials,
		TokenURL:       e.URL + "/contoso.onmicrosoft.com/oauth2/v2.0/token",
		ClientID:       "11111111-2222-3333-4444-555555555555",
		Signer:         testKey(),
		CertThumbprint: thumb[:],
		Now:            c.Now,
	})
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := e.form(t, 0)
	for k, want := range map[string]string{
		"grant_type":            "client_credentials",
		"client_id":             "11111111-2222-3333-4444-555555555555",
		"scope":                 "https://outlook.office365.com/.default",
		"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
	} {
		if got := f.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if f.Has("client_secret") {
		t.Error("client_secret sent with a certificate")
	}
	// Verify with the public key in the certificate, as Microsoft does.
	h, cl := verifyJWT(t, f.Get("client_assertion"), cert.PublicKey.(*rsa.PublicKey))
	if h["alg"] != "RS256" || h["x5t"] != base64.RawURLEncoding.EncodeToString(thumb[:]) {
		t.Errorf("header %v", h)
	}
	if cl["iss"] != "11111111-2222-3333-4444-555555555555" || cl["sub"] != cl["iss"] || cl["aud"] != e.URL+"/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Errorf("claims %v", cl)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(cl["jti"].(string)) {
		t.Errorf("jti %v is not a random UUID", cl["jti"])
	}
	if iat, nbf, exp := num(t, cl["iat"]), num(t, cl["nbf"]), num(t, cl["exp"]); iat != c.Now().Unix() || nbf != iat || exp-iat != 600 {
		t.Errorf("iat %d nbf %d exp %d", iat, nbf, exp)
	}
	// A second request carries a fresh assertion (new jti).
	s.Refresh(t.Context(), secret.String{})
	if e.form(t, 1).Get("client_assertion") == f.Get("client_assertion") {
		t.Error("assertion reused")
	}
}

func TestClientCredentials_secret(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		// An app-only response with a refresh_token (none is expected) must
		// not be taken for a rotation.
		reply(w, 200, `{"access_token":"app-at","expires_in":3599,"refresh_token":"odd"}`)
	})
	var rotated bool
	s := mustSource(t, token.Config{
		Account: "app_2", AuthType: token.AuthClientCredentials, TokenURL: e.URL,
		ClientID: "cid", ClientSecret: secret.New("app-secret"), Scope: "https://outlook.office365.com/.default",
		Now: newClock().Now, OnRotate: func(secret.String) { rotated = true },
	})
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := e.form(t, 0)
	if f.Get("grant_type") != "client_credentials" || f.Get("client_secret") != "app-secret" || f.Get("client_id") != "cid" || f.Has("client_assertion") {
		t.Errorf("form %v", f)
	}
	if rotated {
		t.Error("client_credentials response treated as a rotation")
	}
}

func TestNewSource_validatesGrants(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	thumb := make([]byte, 20)
	sa := token.Config{Account: "a", AuthType: token.AuthGoogleServiceAccount, TokenURL: "https://oauth2.googleapis.com/token",
		Issuer: "x@y.iam.gserviceaccount.com", Subject: "u@example.com", Signer: testKey()}
	cc := token.Config{Account: "a", AuthType: token.AuthClientCredentials, TokenURL: "https://login.microsoftonline.com/t/oauth2/v2.0/token",
		ClientID: "cid", Signer: testKey(), CertThumbprint: thumb}
	tests := []struct {
		name    string
		cfg     token.Config
		mutate  func(*token.Config)
		wantErr string
	}{
		{"service account", sa, func(*token.Config) {}, ""},
		{"service account without subject", sa, func(c *token.Config) { c.Subject = "" }, "subject"},
		{"service account without key", sa, func(c *token.Config) { c.Signer = nil }, "no signing key"},
		{"service account with an EC key", sa, func(c *token.Config) { c.Signer = ec }, "must be RSA"},
		{"certificate", cc, func(*token.Config) {}, ""},
		{"certificate and secret", cc, func(c *token.Config) { c.ClientSecret = secret.New("s") }, "not both"},
		{"neither", cc, func(c *token.Config) { c.Signer, c.CertThumbprint = nil, nil }, "client secret or a certificate"},
		{"short thumbprint", cc, func(c *token.Config) { c.CertThumbprint = thumb[:8] }, "20-byte"},
		{"unknown type", cc, func(c *token.Config) { c.AuthType = "password" }, "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			tc.mutate(&cfg)
			_, err := token.NewSource(cfg)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("NewSource = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

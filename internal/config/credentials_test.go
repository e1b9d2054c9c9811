package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func pkcs8PEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// serviceAccountJSON is a key file as Google issues it.
func serviceAccountJSON(t *testing.T, key any) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "proj", "private_key_id": "kid-1",
		"private_key": pkcs8PEM(t, key), "client_email": "mailer@proj.iam.gserviceaccount.com",
		"client_id": "1234", "token_uri": "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func certPEM(t *testing.T, key *rsa.PrivateKey, notAfter time.Time) (string, *x509.Certificate) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "app"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), cert
}

func dwdRecord(id, email string) record {
	return record{"account_id": id, "email": email, "provider": "gmail", "auth_type": "google_service_account",
		"service_account_key_file": "sa.json"}
}

func appRecord(id, email string) record {
	return record{"account_id": id, "email": email, "provider": "outlook", "auth_type": "client_credentials",
		"client_id": "11111111-2222-3333-4444-555555555555", "tenant": "contoso.onmicrosoft.com", "client_secret": "app-secret"}
}

func TestAccounts_authTypes(t *testing.T) {
	t.Parallel()
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(365 * 24 * time.Hour)
	cert, _ := certPEM(t, rsaKey(), future)
	oldCert, _ := certPEM(t, rsaKey(), time.Now().Add(-24*time.Hour))
	files := map[string]string{
		"sa.json":       serviceAccountJSON(t, rsaKey()),
		"sa-ec.json":    serviceAccountJSON(t, other),
		"app.crt":       cert,
		"app.key":       pkcs8PEM(t, rsaKey()),
		"app-both.pem":  cert + pkcs8PEM(t, rsaKey()),
		"other.key":     pkcs8PEM(t, otherRSA),
		"expired.crt":   oldCert,
		"not-a-key.txt": "hello",
	}
	tests := []struct {
		name      string
		rec       record
		wantField string // error field; "" for success
		wantMsg   string
		check     func(t *testing.T, a *config.Account, ws []config.Warning)
	}{
		{name: "default is refresh_token", rec: gmailRecord("g", "g@example.com"), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			if a.AuthType != token.AuthRefreshToken || a.Scope != "" {
				t.Errorf("auth %q scope %q", a.AuthType, a.Scope)
			}
		}},
		{name: "unknown auth_type", rec: gmailRecord("g", "g@example.com").with("auth_type", "password"), wantField: "auth_type", wantMsg: "must be"},
		{name: "outlook tenant makes the token URL", rec: outlookRecord("o", "o@example.com").with("tenant", "organizations"), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			if a.TokenURL != "https://login.microsoftonline.com/organizations/oauth2/v2.0/token" {
				t.Errorf("TokenURL %q", a.TokenURL)
			}
		}},
		{name: "oauth_token_url beats tenant", rec: outlookRecord("o", "o@example.com").with("tenant", "contoso.com").with("oauth_token_url", "https://login.live.com/oauth20_token.srf"), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			if a.TokenURL != "https://login.live.com/oauth20_token.srf" {
				t.Errorf("TokenURL %q", a.TokenURL)
			}
		}},
		{name: "tenant on gmail warns", rec: gmailRecord("g", "g@example.com").with("tenant", "contoso.com"), check: func(t *testing.T, a *config.Account, ws []config.Warning) {
			if _, ok := findWarning(ws, "tenant", "ignored"); !ok || a.TokenURL != config.GmailTokenURL {
				t.Errorf("TokenURL %q, warnings %v", a.TokenURL, ws)
			}
		}},
		{name: "bad tenant", rec: outlookRecord("o", "o@example.com").with("tenant", "a/b"), wantField: "tenant", wantMsg: "must be"},
		{name: "service account from a file", rec: dwdRecord("d", "d@example.com"), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			k := a.ServiceAccount
			if k == nil || k.ClientEmail != "mailer@proj.iam.gserviceaccount.com" || k.KeyID != "kid-1" || !strings.HasSuffix(k.Source, "sa.json") {
				t.Fatalf("key %v", k)
			}
			if !rsaKey().PublicKey.Equal(k.Public()) {
				t.Error("wrong public key")
			}
			if a.Scope != token.ScopeGoogleMail || a.TokenURL != "https://oauth2.googleapis.com/token" || a.ClientID != "" {
				t.Errorf("scope %q url %q", a.Scope, a.TokenURL)
			}
		}},
		{name: "service account inline object", rec: dwdRecord("d", "d@example.com").with("service_account_key_file", nil).with("service_account_key", json.RawMessage(serviceAccountJSON(t, rsaKey()))), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			if a.ServiceAccount == nil || !strings.HasPrefix(a.ServiceAccount.Source, "inline") {
				t.Errorf("key %v", a.ServiceAccount)
			}
		}},
		{name: "service account inline string", rec: dwdRecord("d", "d@example.com").with("service_account_key_file", nil).with("service_account_key", serviceAccountJSON(t, rsaKey())), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			if a.ServiceAccount == nil {
				t.Error("no key")
			}
		}},
		{name: "service account ignores a refresh token", rec: dwdRecord("d", "d@example.com").with("refresh_token", "x"), check: func(t *testing.T, a *config.Account, ws []config.Warning) {
			if _, ok := findWarning(ws, "refresh_token", "ignored"); !ok || !a.RefreshToken.Empty() {
				t.Errorf("warnings %v", ws)
			}
		}},
		{name: "service account file and inline", rec: dwdRecord("d", "d@example.com").with("service_account_key", "{}"), wantField: "service_account_key", wantMsg: "not both"},
		{name: "service account without key", rec: dwdRecord("d", "d@example.com").with("service_account_key_file", nil), wantField: "service_account_key_file", wantMsg: "required"},
		{name: "service account key missing", rec: dwdRecord("d", "d@example.com").with("service_account_key_file", "nope.json"), wantField: "service_account_key_file", wantMsg: "no such file"},
		{name: "service account EC key", rec: dwdRecord("d", "d@example.com").with("service_account_key_file", "sa-ec.json"), wantField: "service_account_key_file", wantMsg: "RSA"},
		{name: "service account not JSON", rec: dwdRecord("d", "d@example.com").with("service_account_key_file", "not-a-key.txt"), wantField: "service_account_key_file", wantMsg: "invalid JSON"},
		{name: "app with secret", rec: appRecord("a", "a@contoso.com"), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			if a.TokenURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" || a.Scope != token.ScopeOutlookAppOnly ||
				a.ClientSecret.Reveal() != "app-secret" || a.Certificate != nil {
				t.Errorf("%+v", a)
			}
		}},
		{name: "app with certificate and key", rec: appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "app.crt").with("private_key_file", "app.key"), check: func(t *testing.T, a *config.Account, _ []config.Warning) {
			c := a.Certificate
			b, _ := pem.Decode([]byte(cert))
			if c == nil || c.Thumbprint != sha1.Sum(b.Bytes) || !rsaKey().PublicKey.Equal(c.Public()) {
				t.Errorf("certificate %v", c)
			}
		}},
		{name: "app with certificate and key in one file", rec: appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "app-both.pem")},
		{name: "app key does not match", rec: appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "app.crt").with("private_key_file", "other.key"), wantField: "certificate_file", wantMsg: "does not belong"},
		{name: "app expired certificate warns", rec: appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "expired.crt").with("private_key_file", "app.key"), check: func(t *testing.T, _ *config.Account, ws []config.Warning) {
			if _, ok := findWarning(ws, "certificate_file", "expired"); !ok {
				t.Errorf("warnings %v", ws)
			}
		}},
		{name: "app secret and certificate", rec: appRecord("a", "a@contoso.com").with("certificate_file", "app-both.pem"), wantField: "client_secret", wantMsg: "not both"},
		{name: "app without credential", rec: appRecord("a", "a@contoso.com").with("client_secret", nil), wantField: "client_secret", wantMsg: "required"},
		{name: "app without tenant", rec: appRecord("a", "a@contoso.com").with("tenant", nil), wantField: "tenant", wantMsg: "required"},
		{name: "app with a multi-tenant name", rec: appRecord("a", "a@contoso.com").with("tenant", "common"), wantField: "tenant", wantMsg: "not one directory"},
		{name: "app with an explicit URL needs no tenant", rec: appRecord("a", "a@contoso.com").with("tenant", nil).with("oauth_token_url", "http://127.0.0.1:9/token")},
		{name: "app without client_id", rec: appRecord("a", "a@contoso.com").with("client_id", nil), wantField: "client_id", wantMsg: "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := map[string]string{"accounts.json": accountsJSON(t, tc.rec)}
			for k, v := range files {
				fs[k] = v
			}
			s, ws, err := loadDir(t, writeDir(t, fs))
			if tc.wantField != "" {
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("field %q", tc.wantField)) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want field %q: %q", err, tc.wantField, tc.wantMsg)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), "MII") {
					t.Errorf("error quotes key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, s.Accounts[0], ws)
			}
		})
	}
}

// TestAccounts_keyParsedOnce: a key file shared by many accounts is parsed
// once and the accounts share it.
func TestAccounts_keyParsedOnce(t *testing.T) {
	t.Parallel()
	var recs []record
	for i := range 50 {
		recs = append(recs, dwdRecord(fmt.Sprint("d", i), fmt.Sprintf("u%d@example.com", i)))
	}
	dir := writeDir(t, map[string]string{"accounts.json": accountsJSON(t, recs...), "sa.json": serviceAccountJSON(t, rsaKey())})
	s, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Accounts {
		if a.ServiceAccount != s.Accounts[0].ServiceAccount {
			t.Fatal("accounts of one key file hold different parsed keys")
		}
	}
}

// TestAccounts_keysNeverPrinted prints accounts every way a log or an
// error might.
func TestAccounts_keysNeverPrinted(t *testing.T) {
	t.Parallel()
	cert, _ := certPEM(t, rsaKey(), time.Now().Add(time.Hour))
	dir := writeDir(t, map[string]string{
		"accounts.json": accountsJSON(t, dwdRecord("d", "d@example.com"),
			appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "app.pem")),
		"sa.json": serviceAccountJSON(t, rsaKey()),
		"app.pem": cert + pkcs8PEM(t, rsaKey()),
	})
	s, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	for _, a := range s.Accounts {
		fmt.Fprintf(&out, "%v %+v %#v %s %d %x\n", *a, *a, *a, a.ServiceAccount, a.ServiceAccount, a.Certificate)
		if a.Certificate != nil {
			fmt.Fprintf(&out, "%v %+v %#v\n", *a.Certificate, *a.Certificate, a.Certificate)
		}
		if a.ServiceAccount != nil {
			fmt.Fprintf(&out, "%v %+v %#v\n", *a.ServiceAccount, *a.ServiceAccount, a.ServiceAccount)
		}
		b, _ := json.Marshal(a)
		out.Write(b)
		log.Info("account", "acct", a, "key", a.ServiceAccount, "cert", a.Certificate)
	}
	d := rsaKey().D.String()
	for _, leak := range []string{d, d[:20], fmt.Sprintf("%x", rsaKey().D.Bytes()[:16]), "PRIVATE KEY"} {
		if strings.Contains(out.String(), leak) {
			t.Fatalf("private key material printed:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "mailer@proj.iam.gserviceaccount.com") {
		t.Error("the key's identity should print")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sa.json")); fi == nil {
		t.Fatal("sa.json missing")
	}
}

func TestGlobal_tokenSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		config   string
		stateDir string // LoadOptions.StateDir
		want     func(dir string) config.Tokens
		wantErr  string
	}{
		{"powermta_relay keys are read", `{"powermta_relay": {"num_token_fetching_workers": 7, "num_token_refresh_workers": 9, "max_workers": 400}}`, "",
			func(dir string) config.Tokens {
				return config.Tokens{RefreshWorkers: 9, FetchWorkers: 7, Prewarm: "recent", StateDir: dir}
			}, ""},
		{"global.oauth2 wins", `{"powermta_relay": {"num_token_refresh_workers": 9}, "global": {"oauth2": {"num_token_refresh_workers": 3, "token_prewarm": "ALL", "state_dir": "state"}}}`, "",
			func(dir string) config.Tokens {
				return config.Tokens{RefreshWorkers: 3, FetchWorkers: 25, Prewarm: "all", StateDir: filepath.Join(dir, "state")}
			}, ""},
		{"--state-dir wins", `{"global": {"oauth2": {"state_dir": "/var/lib/x"}}}`, "/run/state",
			func(string) config.Tokens {
				return config.Tokens{RefreshWorkers: 25, FetchWorkers: 25, Prewarm: "recent", StateDir: "/run/state"}
			}, ""},
		{"bad prewarm", `{"global": {"oauth2": {"token_prewarm": "some"}}}`, "", nil, `"global.oauth2.token_prewarm"`},
		{"zero workers", `{"global": {"oauth2": {"num_token_refresh_workers": 0}}}`, "", nil, "at least 1"},
		{"old buffer still honoured", `{"global": {"oauth2": {"token_refresh_buffer_seconds": 300}}}`, "",
			func(dir string) config.Tokens {
				return config.Tokens{RefreshWorkers: 25, FetchWorkers: 25, Prewarm: "recent", StateDir: dir}
			}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"config.json": tc.config, "accounts.json": "[]"})
			s, ws, err := config.Load(config.LoadOptions{
				ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"),
				SearchDirs: []string{}, StateDir: tc.stateDir,
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := s.Global.Tokens, tc.want(dir); got != want {
				t.Errorf("tokens = %+v, want %+v", got, want)
			}
			wantBuffer := 600 * time.Second
			if strings.Contains(tc.config, "token_refresh_buffer_seconds") {
				wantBuffer = 300 * time.Second
			}
			if s.Global.TokenRefreshBuffer != wantBuffer {
				t.Errorf("buffer = %v, want %v", s.Global.TokenRefreshBuffer, wantBuffer)
			}
			if keys := unknownKeys(ws); len(keys) != 0 {
				t.Errorf("unknown-key warnings: %v", keys)
			}
		})
	}
}

// TestAccounts_keysCompareEqualAcrossLoads: the registry keeps an
// account's runtime state across a reload when its configuration is
// reflect.DeepEqual to the previous one; parsed keys must not defeat that.
func TestAccounts_keysCompareEqualAcrossLoads(t *testing.T) {
	t.Parallel()
	cert, _ := certPEM(t, rsaKey(), time.Now().Add(time.Hour))
	dir := writeDir(t, map[string]string{
		"accounts.json": accountsJSON(t, dwdRecord("d", "d@example.com"),
			dwdRecord("i", "i@example.com").with("service_account_key_file", nil).with("service_account_key", serviceAccountJSON(t, rsaKey())),
			appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "app.pem")),
		"sa.json": serviceAccountJSON(t, rsaKey()),
		"app.pem": cert + pkcs8PEM(t, rsaKey()),
	})
	s1, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s1.Accounts {
		if !reflect.DeepEqual(*s1.Accounts[i], *s2.Accounts[i]) {
			t.Errorf("account %s differs between two loads of the same files", s1.Accounts[i].ID)
		}
	}
}

// A private key file that its group or everyone can read loads with a
// warning naming the field; a 0600 one loads without.
func TestAccounts_keyFileReadableWarns(t *testing.T) {
	t.Parallel()
	cert, _ := certPEM(t, rsaKey(), time.Now().Add(365*24*time.Hour))
	for _, tc := range []struct {
		name  string
		rec   record
		file  string
		field string
	}{
		{"service account key", dwdRecord("d", "d@example.com"), "sa.json", "service_account_key_file"},
		{"certificate key", appRecord("a", "a@contoso.com").with("client_secret", nil).with("certificate_file", "app.crt").with("private_key_file", "app.key"), "app.key", "private_key_file"},
	} {
		for _, mode := range []os.FileMode{0o600, 0o640, 0o604} {
			t.Run(fmt.Sprintf("%s %04o", tc.name, mode), func(t *testing.T) {
				t.Parallel()
				dir := writeDir(t, map[string]string{
					"accounts.json": accountsJSON(t, tc.rec),
					"sa.json":       serviceAccountJSON(t, rsaKey()),
					"app.crt":       cert,
					"app.key":       pkcs8PEM(t, rsaKey()),
				})
				if err := os.Chmod(filepath.Join(dir, tc.file), mode); err != nil {
					t.Fatal(err)
				}
				_, ws, err := loadDir(t, dir)
				if err != nil {
					t.Fatal(err)
				}
				_, warned := findWarning(ws, tc.field, "readable by other users")
				if want := mode&0o044 != 0; warned != want {
					t.Errorf("mode %04o: warned %v, want %v; warnings %v", mode, warned, want, ws)
				}
			})
		}
	}
}

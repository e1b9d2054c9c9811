package service_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func pkcs8(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// relayOne sends one message as user and expects the provider's 250.
func relayOne(t *testing.T, e *env, user string) {
	t.Helper()
	c := e.dial(t)
	c.authPlain(user, password, "235")
	c.deliver(user, "r@example.net", "Subject: t\r\n\r\nx\r\n")
	c.cmd("QUIT", "221")
}

// asAccount turns the env's alice into another kind of account.
func asAccount(edit func(a map[string]any)) func(map[string]any, []map[string]any) {
	return func(_ map[string]any, accts []map[string]any) {
		for _, k := range []string{"client_id", "client_secret", "refresh_token"} {
			delete(accts[0], k)
		}
		edit(accts[0])
	}
}

func TestTokens_googleServiceAccountRelays(t *testing.T) {
	t.Parallel()
	key := testRSAKey()
	e := newEnv(t, envOptions{edit: asAccount(func(a map[string]any) {
		a["auth_type"] = "google_service_account"
		a["service_account_key"] = map[string]any{
			"type": "service_account", "client_email": "mailer@proj.iam.gserviceaccount.com",
			"private_key_id": "kid-7", "private_key": pkcs8(t, key),
		}
	})})
	e.fp.AddServiceAccount(fakeprovider.ServiceAccount{ClientEmail: "mailer@proj.iam.gserviceaccount.com", KeyID: "kid-7", PublicKey: &key.PublicKey})
	relayOne(t, e, userA)
	if m := e.fp.Messages(); len(m) != 1 || !strings.EqualFold(m[0].AuthUser, userA) {
		t.Fatalf("delivered %+v", m)
	}
	if n := e.fp.TokenRequestsFor(userA); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestTokens_clientCredentialsCertificateRelays(t *testing.T) {
	t.Parallel()
	key := testRSAKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xoauth2-proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pemFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(pemFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pkcs8(t, key)...), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{edit: asAccount(func(a map[string]any) {
		a["provider"] = "outlook"
		a["auth_type"] = "client_credentials"
		a["client_id"] = "app-1"
		a["certificate_file"] = pemFile
	})})
	e.fp.AddApp(fakeprovider.App{ClientID: "app-1", Certificate: cert, Mailboxes: []string{userA}})
	relayOne(t, e, userA)
	if n := e.fp.TokenRequestsFor("app-1"); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

// TestTokens_rotationSurvivesRestart: the provider rotates on every
// refresh and revokes the grant when a retired token comes back. A
// restarted proxy loads the rotated token from the state file, not the
// retired one accounts.json still holds.
func TestTokens_rotationSurvivesRestart(t *testing.T) {
	t.Parallel()
	p := fakeproviderDiscard()
	p.RotateRefreshTokens = true
	e := newEnv(t, envOptions{provider: p})
	e.fp.SetRevokeOnReuse(true)
	relayOne(t, e, userA)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(e.dir, tokenstore.DefaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	state, err := tokenstore.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := state["alice"].RefreshToken.Reveal(); got == "" || got != e.fp.RefreshToken(userA) {
		t.Fatalf("state file holds %q, the provider %q", got, e.fp.RefreshToken(userA))
	}
	if fi, _ := os.Stat(filepath.Join(e.dir, tokenstore.DefaultFileName)); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %04o", fi.Mode().Perm())
	}

	// Make the persisted access token useless, so the restarted proxy must
	// refresh with the persisted refresh token.
	e.fp.ExpireAccessTokens()
	e2 := restart(t, e)
	relayOne(t, e2, userA)
	if n := len(e.fp.Messages()); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
}

// restart starts a second proxy on e's files and fake provider.
func restart(t *testing.T, e *env) *env {
	t.Helper()
	svc, err := service.New(service.Options{
		Load: config.LoadOptions{
			ConfigPath: filepath.Join(e.dir, "config.json"), AccountsPath: filepath.Join(e.dir, "accounts.json"),
			ConfigExplicit: true, SearchDirs: []string{},
		},
		Listen:        "127.0.0.1:0",
		TLSPort:       -1,
		AuthFailDelay: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runService(t, svc)
	return &env{fp: e.fp, svc: svc, addr: svc.Addr().String(), dir: e.dir, stop: stop}
}

// TestTokens_revokedAccountAnsweredAtOnce: an account whose grant is
// revoked gets 454 "needs new consent" at every MAIL without the token
// endpoint being asked again, while another account keeps relaying.
func TestTokens_revokedAccountAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.fp.Revoke(userA)
	for i := range 3 {
		c := e.dial(t)
		c.authPlain(userA, password, "235")
		start := time.Now()
		c.cmd("MAIL FROM:<"+userA+">", "454 4.7.0 "+userA+": OAuth2 credentials rejected by the provider; account needs new consent")
		if i > 0 && time.Since(start) > time.Second {
			t.Errorf("MAIL %d took %v", i+1, time.Since(start))
		}
	}
	if n := e.fp.TokenRequestsFor(userA); n != 1 {
		t.Errorf("%d token requests for the revoked account, want 1", n)
	}
	relayOne(t, e, userOne)
}

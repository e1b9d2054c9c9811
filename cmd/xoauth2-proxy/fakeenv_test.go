package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

const (
	alice       = "alice@example.com" // in every env's accounts.json, known to the fake provider
	aliceRT     = "1//rt-alice-SECRET"
	clientSec   = "cs-SECRET"
	adminSecret = "admin-token-SECRET-0123456789abcdef"
)

// fakeEnv is a config.json and accounts.json in a temporary directory whose
// providers (gmail and outlook) point at an in-process fake provider with
// STARTTLS, and optionally a running proxy with its admin API.
type fakeEnv struct {
	fp        *fakeprovider.Provider
	dir       string
	cfg       string // config.json
	accounts  string // accounts.json
	adminURL  string // "" without a running proxy
	tokenFile string // holds adminSecret
}

type envOptions struct {
	admin    bool                 // run a proxy with an admin API on the files
	provider fakeprovider.Options // TLSConfig is filled in
}

func newFakeEnv(t *testing.T, o envOptions) *fakeEnv {
	t.Helper()
	tlsCfg, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	o.provider.TLSConfig = tlsCfg
	fp, err := fakeprovider.Start(o.provider)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	fp.AddAccount(fakeprovider.Account{Email: alice, ClientID: "cid", ClientSecret: clientSec, RefreshToken: aliceRT})

	e := &fakeEnv{fp: fp, dir: t.TempDir()}
	e.cfg = filepath.Join(e.dir, "config.json")
	e.accounts = filepath.Join(e.dir, "accounts.json")
	e.tokenFile = filepath.Join(e.dir, "admin-token")
	ca := filepath.Join(e.dir, "ca.pem")
	writeFile(t, ca, string(caPEM))
	writeFile(t, e.tokenFile, adminSecret+"\n")
	prov := map[string]any{"smtp_endpoint": fp.SMTPAddr(), "oauth_token_url": fp.TokenURL()}
	writeJSONFile(t, e.cfg, map[string]any{
		"global":    map[string]any{"smtp": map[string]any{"server_hostname": "proxy.test", "upstream_ca_file": ca}},
		"providers": map[string]any{"gmail": prov, "outlook": prov},
	})
	writeJSONFile(t, e.accounts, map[string]any{"accounts": []map[string]any{{
		"account_id": "alice", "email": alice, "provider": "gmail",
		"client_id": "cid", "client_secret": clientSec, "refresh_token": aliceRT,
	}}})
	if o.admin {
		e.startProxy(t)
	}
	return e
}

// startProxy runs a proxy with an admin API on the env's files until the
// test ends, and sets adminURL.
func (e *fakeEnv) startProxy(t *testing.T) {
	t.Helper()
	svc, err := service.New(service.Options{
		Load:   config.LoadOptions{ConfigPath: e.cfg, AccountsPath: e.accounts, ConfigExplicit: true, SearchDirs: []string{}},
		Listen: "127.0.0.1:0",
		Admin:  service.AdminOptions{Listen: "127.0.0.1:0", Token: secret.New(adminSecret), Version: "test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	})
	e.adminURL = "http://" + svc.AdminAddr().String()
}

// files are the flags that point a command at the env's files.
func (e *fakeEnv) files() []string { return []string{"--config", e.cfg, "--accounts", e.accounts} }

// admin are the flags that point an accounts command at the running proxy.
func (e *fakeEnv) admin() []string {
	return []string{"--admin-url", e.adminURL, "--admin-token-file", e.tokenFile}
}

// emails lists the accounts in accounts.json, in order.
func (e *fakeEnv) emails(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range e.records(t) {
		out = append(out, r["email"].(string))
	}
	return out
}

// records reads accounts.json back.
func (e *fakeEnv) records(t *testing.T) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(e.accounts)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Accounts []map[string]any `json:"accounts"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Accounts
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b))
}

// leaked lists the secrets found in s.
func leaked(s string, secrets ...string) []string {
	var out []string
	for _, sec := range append(secrets, aliceRT, clientSec, adminSecret, "SECRET") {
		if sec != "" && strings.Contains(s, sec) {
			out = append(out, sec)
		}
	}
	return out
}

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	tokenpkg "github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

const token = "test-admin-token"

// backend is the proxy as the API sees it: the real loader and registry
// over files in a temporary directory, and no provider (nothing verifies).
type backend struct {
	opts     config.LoadOptions
	mu       sync.Mutex
	snap     *config.Snapshot
	verified []string // token URLs VerifyCredentials was asked to use
	reg      *account.Registry
}

func build(*config.Account, *account.State, *tokenpkg.Source) (account.Runtime, error) {
	return account.Runtime{}, nil
}

func newBackend(t *testing.T, accounts string) (*backend, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "accounts.json")
	if err := os.WriteFile(path, []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &backend{opts: config.LoadOptions{ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: path, SearchDirs: []string{}}}
	snap, _, err := config.Load(b.opts)
	if err != nil {
		t.Fatal(err)
	}
	b.snap = snap
	if b.reg, err = account.NewRegistry(snap, build, account.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.reg.Close)
	return b, path
}

func (b *backend) Snapshot() *config.Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snap
}

func (b *backend) Registry() *account.Registry { return b.reg }

func (b *backend) Reload() error {
	snap, _, err := config.Load(b.opts)
	if err != nil {
		return err
	}
	if _, err := b.reg.Replace(snap, build); err != nil {
		return err
	}
	b.mu.Lock()
	b.snap = snap
	b.mu.Unlock()
	return nil
}

func (b *backend) Ready() bool { return true }

// VerifyCredentials records the token URL it would have asked.
func (b *backend) VerifyCredentials(_ context.Context, c *config.Account) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.verified = append(b.verified, c.TokenURL)
	return nil
}

func (b *backend) verifiedURLs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.verified)
}

func (b *backend) TokenStatus(*account.Account) admin.TokenStatus {
	return admin.TokenStatus{State: "none"}
}
func (b *backend) RefreshToken(context.Context, *account.Account) error { return nil }
func (b *backend) Budget(*account.Account) (quota.Status, bool)         { return quota.Status{}, false }

// post sends body to the API and returns the status and decoded reply.
func post(t *testing.T, api http.Handler, path, body string) (int, map[string]any, string) {
	t.Helper()
	return send(t, api, http.MethodPost, path, body)
}

// send makes one authenticated request and returns the status and decoded reply.
func send(t *testing.T, api http.Handler, method, path, body string) (int, map[string]any, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	var reply map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
		t.Fatalf("reply %q: %v", rec.Body.String(), err)
	}
	return rec.Code, reply, rec.Body.String()
}

// fileRecords reads back the accounts file's records by email.
func fileRecords(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Accounts []map[string]any `json:"accounts"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]map[string]any{}
	for _, r := range doc.Accounts {
		out[r["email"].(string)] = r
	}
	return out
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// existing is an account set up by hand: an SMTP password, disabled, with
// overrides, its own account_id and vmta_name.
const existing = `{"_comment": "kept", "accounts": [
  {"account_id": "legacy-1", "email": "alice@example.com", "provider": "gmail", "client_id": "cid",
   "client_secret": "old-client-secret", "refresh_token": "old-refresh-token", "ip_address": "203.0.113.5",
   "vmta_name": "vmta-custom", "smtp_password": "plain-pw-keep", "disabled": true, "_note": "kept",
   "connection_settings": {"max_connections_per_account": 7}, "rate_limiting": {"messages_per_hour": 123}}
]}`

func TestAddAccount_overwriteKeepsWhatItDoesNotName(t *testing.T) {
	t.Parallel()
	kept := map[string]any{"smtp_password": "plain-pw-keep", "disabled": true, "_note": "kept",
		"connection_settings": map[string]any{"max_connections_per_account": 7},
		"rate_limiting":       map[string]any{"messages_per_hour": 123}}
	for _, tc := range []struct {
		name string
		body string
		code int
		want map[string]any // fields of alice's record afterwards, beside kept
	}{
		{name: "re-post of the old tool's fields",
			body: `{"email": "alice@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "new-client-secret",
				"refresh_token": "new-refresh-token", "verify": false, "overwrite": true}`,
			code: http.StatusOK,
			want: map[string]any{"account_id": "legacy-1", "vmta_name": "vmta-custom", "ip_address": "203.0.113.5",
				"client_secret": "new-client-secret", "refresh_token": "new-refresh-token"}},
		{name: "named fields change",
			body: `{"email": "alice@example.com", "provider": "gmail", "client_id": "cid2", "client_secret": "s",
				"refresh_token": "r", "ip_address": "203.0.113.9", "vmta_name": "vmta-new", "verify": false, "overwrite": true}`,
			code: http.StatusOK,
			want: map[string]any{"account_id": "legacy-1", "client_id": "cid2", "ip_address": "203.0.113.9", "vmta_name": "vmta-new"}},
		{name: "found by account_id",
			body: `{"email": "alice@example.com", "account_id": "legacy-1", "provider": "gmail", "client_id": "cid",
				"client_secret": "s", "refresh_token": "r2", "verify": false, "overwrite": true}`,
			code: http.StatusOK,
			want: map[string]any{"account_id": "legacy-1", "refresh_token": "r2", "vmta_name": "vmta-custom"}},
		{name: "without overwrite nothing changes",
			body: `{"email": "alice@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "s",
				"refresh_token": "r", "verify": false}`,
			code: http.StatusConflict,
			want: map[string]any{"refresh_token": "old-refresh-token", "vmta_name": "vmta-custom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, path := newBackend(t, existing)
			api := admin.New(b, admin.Options{Token: secret.New(token)})
			code, _, body := post(t, api, "/admin/accounts", tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, s := range []string{"plain-pw-keep", "client-secret", "refresh-token"} {
				if strings.Contains(body, s) {
					t.Errorf("reply carries a secret (%s): %s", s, body)
				}
			}
			recs := fileRecords(t, path)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			got := recs["alice@example.com"]
			for _, want := range []map[string]any{kept, tc.want} {
				for k, v := range want {
					if g, w := jsonOf(t, got[k]), jsonOf(t, v); g != w {
						t.Errorf("%s = %s, want %s", k, g, w)
					}
				}
			}
			if acc := b.Registry().Find("alice@example.com"); acc == nil || !acc.Cfg.Disabled || acc.Cfg.SMTPPassword.Empty() {
				t.Error("the loaded account is missing, enabled or without its password")
			}
		})
	}
}

func TestAddBatch_statusPerRecord(t *testing.T) {
	t.Parallel()
	good := func(email string) string {
		return `{"email": "` + email + `", "provider": "gmail", "client_id": "cid", "client_secret": "batch-client-secret",
			"refresh_token": "batch-refresh-token", "verify": false}`
	}
	// bad passes the request's checks (config.AccountRecord.Complete)
	// and is refused by the loader when saved: an endpoint without a port.
	bad := `{"email": "bad@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "batch-client-secret",
		"refresh_token": "batch-refresh-token", "oauth_endpoint": "smtp.example.com", "verify": false}`
	for _, tc := range []struct {
		name   string
		body   string
		code   int
		failed map[string]string // email → substring of its error
		saved  []string          // emails in the file afterwards
	}{
		{name: "all added", body: "[" + good("bob@example.com") + "," + good("carol@example.com") + "]",
			code: http.StatusOK, saved: []string{"alice@example.com", "bob@example.com", "carol@example.com"}},
		{name: "one invalid record fails alone", body: "[" + good("bob@example.com") + "," + bad + "," + good("carol@example.com") + "]",
			code: http.StatusPartialContent, failed: map[string]string{"bad@example.com": `field "oauth_endpoint"`},
			saved: []string{"alice@example.com", "bob@example.com", "carol@example.com"}},
		{name: "none added", body: "[" + bad + "]",
			code: http.StatusBadRequest, failed: map[string]string{"bad@example.com": `field "oauth_endpoint"`},
			saved: []string{"alice@example.com"}},
		{name: "all exist", body: "[" + good("alice@example.com") + "]",
			code: http.StatusConflict, failed: map[string]string{"alice@example.com": "already exists"},
			saved: []string{"alice@example.com"}},
		{name: "one exists, one added", body: "[" + good("alice@example.com") + "," + good("bob@example.com") + "]",
			code: http.StatusPartialContent, failed: map[string]string{"alice@example.com": "already exists"},
			saved: []string{"alice@example.com", "bob@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, path := newBackend(t, existing)
			api := admin.New(b, admin.Options{Token: secret.New(token)})
			code, reply, body := post(t, api, "/admin/accounts/batch", tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			var failures []struct{ Email, Error string }
			if raw, ok := reply["failed_accounts"]; ok {
				if err := json.Unmarshal([]byte(jsonOf(t, raw)), &failures); err != nil {
					t.Fatal(err)
				}
			}
			if len(failures) != len(tc.failed) {
				t.Errorf("failed_accounts = %+v, want %v", failures, tc.failed)
			}
			for _, f := range failures {
				want, ok := tc.failed[f.Email]
				if !ok || !strings.Contains(f.Error, want) {
					t.Errorf("%s failed with %q, want %q", f.Email, f.Error, want)
				}
				if strings.HasPrefix(want, "field") && !strings.Contains(f.Error, path+": ") {
					t.Errorf("%s: error does not name %s: %q", f.Email, path, f.Error)
				}
				if strings.Contains(f.Error, ".tmp-") {
					t.Errorf("%s: error names the temporary file: %q", f.Email, f.Error)
				}
			}
			if strings.Contains(body, "batch-client-secret") || strings.Contains(body, "batch-refresh-token") {
				t.Errorf("reply carries a secret: %s", body)
			}
			recs := fileRecords(t, path)
			if len(recs) != len(tc.saved) {
				t.Errorf("file has %d records, want %v", len(recs), tc.saved)
			}
			for _, e := range tc.saved {
				if recs[e] == nil {
					t.Errorf("%s not in the file", e)
				}
				if e != "alice@example.com" && b.Registry().Find(e) == nil {
					t.Errorf("%s saved but not loaded", e)
				}
			}
		})
	}
}

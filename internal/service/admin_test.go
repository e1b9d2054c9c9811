package service_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

const adminToken = "admin-t0ken-for-tests-4f1c9e2a7b3d"

func newAdminEnv(t *testing.T) *env {
	t.Helper()
	return newEnv(t, envOptions{admin: service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken(), Version: "test"}})
}

func newAdminEnvToken() secret.String { return secret.New(adminToken) }

// call makes an admin request and decodes the JSON answer.
func (e *env) call(t *testing.T, method, path, token string, body any) (int, map[string]any, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "http://"+e.svc.AdminAddr().String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

// secretsIn lists planted secrets that appear in s.
func secretsIn(s string) []string {
	var found []string
	for _, sec := range []string{password, "csecret", "rt-alice", "rt-new", "rt-one", hash, "$2a$"} {
		if strings.Contains(s, sec) {
			found = append(found, sec)
		}
	}
	return found
}

func TestAdmin_authentication(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	// Run serves the admin API a moment before the SMTP side is marked
	// ready: wait for it, as the other /readyz tests do.
	waitFor(t, "/readyz ready", func() bool { code, _, _ := e.call(t, "GET", "/readyz", "", nil); return code == 200 })
	for _, p := range []string{"/health", "/healthz", "/readyz", "/metrics"} {
		if code, _, _ := e.call(t, "GET", p, "", nil); code != 200 {
			t.Errorf("GET %s without token: %d", p, code)
		}
	}
	_, m, _ := e.call(t, "GET", "/health", "", nil)
	if m["status"] != "healthy" || m["service"] != "xoauth2-proxy-admin" {
		t.Errorf("/health = %v", m)
	}
	for _, tok := range []string{"", "wrong", adminToken + "x"} {
		if code, m, _ := e.call(t, "GET", "/admin/accounts", tok, nil); code != 401 || m["success"] != false {
			t.Errorf("token %q: %d %v", tok, code, m)
		}
	}
	if code, _, _ := e.call(t, "GET", "/admin/accounts", adminToken, nil); code != 200 {
		t.Errorf("right token: %d", code)
	}
}

func TestAdmin_noTokenConfiguredRefusesAdminRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{admin: service.AdminOptions{Listen: "127.0.0.1:0"}})
	code, m, _ := e.call(t, "POST", "/admin/reload", "anything", nil)
	if code != 403 || !strings.Contains(fmt.Sprint(m["error"]), "--admin-token-file") {
		t.Fatalf("%d %v", code, m)
	}
	if code, _, _ := e.call(t, "GET", "/health", "", nil); code != 200 {
		t.Fatalf("health: %d", code)
	}
}

func TestAdmin_oldRoutesShapes(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	var all strings.Builder
	call := func(method, path string, body any) (int, map[string]any) {
		code, m, raw := e.call(t, method, path, adminToken, body)
		all.WriteString(raw)
		return code, m
	}

	code, m := call("GET", "/admin/accounts", nil)
	if code != 200 || m["success"] != true || m["total_accounts"] != float64(len(e.accts)) {
		t.Fatalf("list: %d %v", code, m)
	}
	first := m["accounts"].([]any)[0].(map[string]any)
	for _, k := range []string{"account_id", "email", "ip_address", "vmta_name", "provider", "oauth_endpoint", "oauth_token_url"} {
		if _, ok := first[k]; !ok {
			t.Errorf("account view lacks %s", k)
		}
	}

	e.fp.AddAccount(fakeprovider.Account{Email: "added@example.com", ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-new"})
	add := map[string]any{"email": "added@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "csecret",
		"refresh_token": "rt-new", "oauth_token_url": e.fp.TokenURL(), "oauth_endpoint": e.fp.SMTPAddr()}
	code, m = call("POST", "/admin/accounts", add)
	if code != 200 || m["success"] != true {
		t.Fatalf("add: %d %v", code, m)
	}
	acc := m["account"].(map[string]any)
	if acc["account_id"] != "gmail_added_example_com" || acc["vmta_name"] != "vmta-gmail-added" {
		t.Errorf("generated defaults: %v", acc)
	}
	// The new account relays at once (no smtp_password: loopback is trusted).
	c := e.dial(t)
	c.authPlain("added@example.com", "x", "235")
	c.send("MAIL FROM:<added@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("x\r\n.\r\n")
	c.expect("250")

	if code, _ = call("POST", "/admin/accounts", add); code != 409 {
		t.Errorf("duplicate add: %d", code)
	}
	bad := map[string]any{"email": "x@example.com", "provider": "gmail", "client_id": "c", "refresh_token": "r"}
	if code, m = call("POST", "/admin/accounts", bad); code != 400 || !strings.Contains(fmt.Sprint(m["error"]), "client_secret") {
		t.Errorf("missing client_secret: %d %v", code, m)
	}
	wrongRT := map[string]any{"email": "y@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "csecret",
		"refresh_token": "not-a-real-refresh-token", "oauth_token_url": e.fp.TokenURL()}
	if code, m = call("POST", "/admin/accounts", wrongRT); code != 400 || !strings.Contains(fmt.Sprint(m["error"]), "verification failed") {
		t.Errorf("verify: %d %v", code, m)
	}

	// Batch: one good, one already there, one invalid → 206.
	e.fp.AddAccount(fakeprovider.Account{Email: "b1@example.com", ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-b1"})
	batch := []map[string]any{
		{"email": "b1@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-b1", "oauth_token_url": e.fp.TokenURL()},
		add,
		{"email": "nope", "provider": "gmail"},
	}
	code, m = call("POST", "/admin/accounts/batch", batch)
	if code != 206 || m["success"] != "partial" || m["added_count"] != float64(1) || m["failed_count"] != float64(2) {
		t.Errorf("batch partial: %d %v", code, m)
	}
	if code, _ = call("POST", "/admin/accounts/batch", []map[string]any{add}); code != 409 {
		t.Errorf("batch of duplicates: %d", code)
	}
	if code, _ = call("POST", "/admin/accounts/batch", []map[string]any{{"email": "bad"}}); code != 400 {
		t.Errorf("batch all invalid: %d", code)
	}
	if code, _ = call("POST", "/admin/accounts/batch", []map[string]any{}); code != 400 {
		t.Errorf("empty batch: %d", code)
	}

	if code, _ = call("DELETE", "/admin/accounts/b1@example.com", nil); code != 200 {
		t.Errorf("delete: %d", code)
	}
	if code, _ = call("DELETE", "/admin/accounts/b1@example.com", nil); code != 404 {
		t.Errorf("delete unknown: %d", code)
	}
	if code, m = call("DELETE", "/admin/accounts/invalid", nil); code != 200 || m["deleted_count"] != float64(0) {
		t.Errorf("delete invalid with none invalid: %d %v", code, m)
	}
	if code, _ = call("DELETE", "/admin/accounts", nil); code != 400 {
		t.Errorf("delete all without confirm: %d", code)
	}
	if code, m = call("DELETE", "/admin/accounts?confirm=true", nil); code != 200 || m["total_accounts"] != float64(0) {
		t.Errorf("delete all: %d %v", code, m)
	}
	e.dial(t).authPlain(userA, password, "535")
	if found := secretsIn(all.String()); len(found) > 0 {
		t.Errorf("admin responses contain secrets: %v", found)
	}
}

func TestAdmin_statusPatchDisableReload(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "x\r\n")

	code, m, raw := e.call(t, "GET", "/admin/accounts/"+userA, adminToken, nil)
	if code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	acc := m["account"].(map[string]any)
	if acc["messages"].(map[string]any)["sent"] != float64(1) || acc["sessions"].(map[string]any)["opened_total"] != float64(1) ||
		acc["token"].(map[string]any)["state"] != "ok" || acc["last_upstream_reply"] == nil {
		t.Errorf("status: %s", raw)
	}
	if found := secretsIn(raw); len(found) > 0 {
		t.Errorf("status has secrets %v", found)
	}

	if code, m, _ = e.call(t, "PATCH", "/admin/accounts/"+userA, adminToken, map[string]any{"vmta_name": "vmta-x"}); code != 200 ||
		m["account"].(map[string]any)["vmta_name"] != "vmta-x" {
		t.Errorf("patch: %d %v", code, m)
	}
	before, _ := os.ReadFile(filepath.Join(e.dir, "accounts.json"))
	if code, _, _ = e.call(t, "PATCH", "/admin/accounts/"+userA, adminToken, map[string]any{"oauth_token_url": "http://example.com/t"}); code != 400 {
		t.Errorf("invalid patch: %d", code)
	}
	after, _ := os.ReadFile(filepath.Join(e.dir, "accounts.json"))
	if !bytes.Equal(before, after) {
		t.Error("invalid patch changed the file")
	}

	if code, _, _ = e.call(t, "POST", "/admin/accounts/"+userA+"/disable", adminToken, nil); code != 200 {
		t.Errorf("disable: %d", code)
	}
	e.dial(t).authPlain(userA, password, "535")
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.1")
	if code, _, _ = e.call(t, "POST", "/admin/accounts/"+userA+"/enable", adminToken, nil); code != 200 {
		t.Errorf("enable: %d", code)
	}
	e.dial(t).authPlain(userA, password, "235")

	if code, m, _ = e.call(t, "POST", "/admin/reload", adminToken, nil); code != 200 || m["success"] != true {
		t.Errorf("reload: %d %v", code, m)
	}
	code, m, _ = e.call(t, "GET", "/admin/status", adminToken, nil)
	if code != 200 || m["version"] != "test" || m["total_accounts"] != float64(len(e.accts)) || m["accounts_path"] == "" {
		t.Errorf("status: %d %v", code, m)
	}
	if code, _, _ = e.call(t, "POST", "/admin/accounts/"+userA+"/refresh", adminToken, nil); code != 200 {
		t.Errorf("refresh: %d", code)
	}
	if code, _, _ = e.call(t, "GET", "/admin/accounts/nobody@example.com", adminToken, nil); code != 404 {
		t.Errorf("unknown: %d", code)
	}
	big := `{"vmta_name":"` + strings.Repeat("x", 2<<20) + `"}`
	if code, _, _ = e.call(t, "PATCH", "/admin/accounts/"+userA, adminToken, big); code != 413 {
		t.Errorf("2 MiB body: %d", code)
	}
}

func TestAdmin_concurrentPatchesAllLand(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	var wg sync.WaitGroup
	emails := []string{userA, userNoPW, userOne, userPlain, userBound, userBadIP}
	for i, em := range emails {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, m, _ := e.call(t, "PATCH", "/admin/accounts/"+em, adminToken, map[string]any{"vmta_name": fmt.Sprintf("v%d", i)}); code != 200 {
				t.Errorf("patch %s: %d %v", em, code, m)
			}
		}()
	}
	wg.Wait()
	for i, em := range emails {
		_, m, _ := e.call(t, "GET", "/admin/accounts/"+em, adminToken, nil)
		if got := m["account"].(map[string]any)["vmta_name"]; got != fmt.Sprintf("v%d", i) {
			t.Errorf("%s vmta_name = %v: a concurrent write was lost", em, got)
		}
	}
}

// TestMetrics_namesAndTraffic: every documented metric is exported and
// the counters move with traffic.
func TestMetrics_namesAndTraffic(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	scrape := func() string {
		_, _, raw := e.call(t, "GET", "/metrics", "", nil)
		return raw
	}
	c := e.dial(t)
	c.authPlain(userA, "wrong", "535")
	c.authPlain(userA, password, "235")
	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nRCPT TO:<reject-550@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("550")
	c.expect("354")
	c.send("x\r\n.\r\n")
	c.expect("250")
	out := scrape()
	for _, name := range []string{
		"smtp_connections_active", "auth_attempts_total{result=\"success\"} 1", "auth_attempts_total{result=\"failure\"} 1",
		"auth_duration_seconds", "token_refresh_total{result=\"success\"} 1", "token_refresh_duration_seconds",
		"upstream_auth_total{result=\"success\"} 1", "upstream_auth_duration_seconds", "messages_total{result=\"sent\"} 1",
		"messages_duration_seconds", "concurrent_messages 0", "concurrent_limit_exceeded 0",
		"upstream_replies_total{class=\"5xx\",stage=\"rcpt\"} 1", "upstream_replies_total{class=\"2xx\",stage=\"end\"} 1",
		"upstream_sessions_open 1", "upstream_sessions_busy 0", "upstream_sessions_opened_total 1",
		"upstream_session_acquire_seconds", "message_size_bytes", "relayed_bytes_total 3", fmt.Sprintf(`accounts{token_state="ok"} %d`, len(e.accts)),
		"process_resident_memory_bytes", "go_goroutines",
		`smtp_connections_total{result="accepted"} 1`, `smtp_commands_total{command="AUTH"} 2`, `smtp_commands_total{command="MAIL"} 1`,
		`smtp_commands_total{command="RCPT"} 2`, `smtp_connections_closed_total{reason="timeout"} 0`, `smtp_tls_total{mode="starttls"}`,
		`smtp_connections_closed_total{reason="auth_timeout"} 0`, "smtp_auth_deferred_total 0", "smtp_auth_checks_waiting 0",
		`admin_auth_failures_total{result="refused"} 0`, `admin_auth_failures_total{result="rate_limited"} 0`,
	} {
		if !strings.Contains(out, name) {
			t.Errorf("metrics lack %q", name)
		}
	}
	if strings.Contains(out, "account=") {
		t.Error("per-account labels without the opt-in")
	}
	if found := secretsIn(out); len(found) > 0 {
		t.Errorf("metrics contain secrets %v", found)
	}
}

// TestAdmin_deleteInvalidRemovesOnlyRejectedCredentials: an account whose
// refresh token the provider revoked goes; one whose endpoint is merely
// down stays.
func TestAdmin_deleteInvalidRemovesOnlyRejectedCredentials(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	e.fp.Revoke(userOne)
	c := e.dial(t)
	c.authPlain(userOne, password, "235")
	c.cmd("MAIL FROM:<"+userOne+">", "454 4.7.0")
	_, m, raw := e.call(t, "GET", "/admin/accounts/"+userOne, adminToken, nil)
	if st := m["account"].(map[string]any)["token"].(map[string]any)["state"]; st != "needs_consent" {
		t.Fatalf("token state %v: %s", st, raw)
	}
	code, m, _ := e.call(t, "DELETE", "/admin/accounts/invalid", adminToken, nil)
	if code != 200 || m["deleted_count"] != float64(1) || fmt.Sprint(m["deleted_accounts"]) != "["+userOne+"]" {
		t.Fatalf("delete invalid: %d %v", code, m)
	}
	if e.svc.Reg.Find(userOne) != nil || e.svc.Reg.Find(userA) == nil {
		t.Fatal("wrong accounts deleted")
	}
}

// TestAdmin_tokenAloneCannotSendSecretsElsewhere is pentest item 6 end
// to end: PATCH an account's oauth_token_url to a host the caller runs,
// then force a refresh. The host must receive nothing, however the
// PATCH is answered.
func TestAdmin_tokenAloneCannotSendSecretsElsewhere(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	var mu sync.Mutex
	var received []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		received = append(received, string(body))
		mu.Unlock()
		http.Error(w, `{"error": "invalid_grant"}`, http.StatusBadRequest)
	}))
	defer collector.Close()

	code, m, raw := e.call(t, "PATCH", "/admin/accounts/"+userA, adminToken, map[string]any{"oauth_token_url": collector.URL + "/token"})
	if code != http.StatusForbidden || m["success"] != false {
		t.Errorf("PATCH oauth_token_url: %d %s", code, raw)
	}
	e.call(t, "POST", "/admin/accounts/"+userA+"/refresh", adminToken, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(received) > 0 {
		t.Errorf("the caller's host received %d token requests, with secrets %v", len(received), secretsIn(strings.Join(received, "\n")))
	}
}

// TestAdmin_shortTokenRefusedAtStart: a token short enough to guess stops
// the start, saying how to make a good one; none at all still starts
// (with the admin routes refused).
func TestAdmin_shortTokenRefusedAtStart(t *testing.T) {
	t.Parallel()
	accounts := oneAccountFile(t)
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"none", "", true},
		{"16 characters", "0123456789abcdef", false},
		{"31 characters", strings.Repeat("x", 31), false},
		{"32 characters", strings.Repeat("x", 32), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc, err := service.New(service.Options{
				Load:   config.LoadOptions{AccountsPath: accounts, SearchDirs: []string{}},
				Listen: "127.0.0.1:0",
				DryRun: true,
				Admin:  service.AdminOptions{Listen: "127.0.0.1:0", Token: secret.New(tc.token)},
			})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				runService(t, svc)
				return
			}
			if err == nil || !strings.Contains(err.Error(), "at least 32") || !strings.Contains(err.Error(), "openssl rand -hex 32") {
				t.Fatalf("err = %v, want one asking for 32 characters from openssl rand -hex 32", err)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

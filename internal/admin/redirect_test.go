package admin_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// destinations are accounts whose credentials go to different places:
// alice and bob share their app's client secret, bob's endpoints are a
// local fake provider's, app uses Microsoft's client credentials.
const destinations = `{"accounts": [
  {"account_id": "alice", "email": "alice@example.com", "provider": "gmail", "client_id": "cid",
   "client_secret": "shared-app-secret", "refresh_token": "alice-refresh-token"},
  {"account_id": "bob", "email": "bob@example.com", "provider": "gmail", "client_id": "cid",
   "client_secret": "shared-app-secret", "refresh_token": "bob-refresh-token",
   "oauth_token_url": "http://127.0.0.1:8080/token", "oauth_endpoint": "127.0.0.1:2525"},
  {"account_id": "olivia", "email": "olivia@example.org", "provider": "outlook", "client_id": "ocid",
   "client_secret": "olivia-client-secret", "refresh_token": "olivia-refresh-token"},
  {"account_id": "app", "email": "app@example.org", "provider": "outlook", "auth_type": "client_credentials",
   "client_id": "acid", "client_secret": "app-client-secret", "tenant": "contoso.example"}
]}`

// collector is where an attacker holding only the admin token would
// like the credentials to go.
const collector = "https://collector.example/token"

// TestWrite_movingCredentialsNeedsThemAgain: a write that would send an
// account's existing secrets, or the access tokens they buy, anywhere new
// is refused unless it gives those secrets itself (pentest item 6:
// PATCH oauth_token_url, then /refresh, posted the client secret and
// refresh token to any host).
func TestWrite_movingCredentialsNeedsThemAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   string
		code   int
		need   []string // keys the refusal asks for
		spared []string // keys it must not ask for
	}{
		{name: "token URL elsewhere", path: "/admin/accounts/alice@example.com",
			body: `{"oauth_token_url": "` + collector + `"}`, code: http.StatusForbidden, need: []string{"client_secret", "refresh_token"}},
		{name: "SMTP endpoint elsewhere (access tokens)", path: "/admin/accounts/alice@example.com",
			body: `{"oauth_endpoint": "collector.example:587"}`, code: http.StatusForbidden, need: []string{"client_secret", "refresh_token"}},
		{name: "cleartext to the same host", path: "/admin/accounts/bob@example.com",
			body: `{"smtp_tls": "none"}`, code: http.StatusForbidden, need: []string{"refresh_token"}},
		{name: "another provider's defaults", path: "/admin/accounts/alice@example.com",
			body: `{"provider": "outlook"}`, code: http.StatusForbidden, need: []string{"client_secret", "refresh_token"}},
		{name: "tenant of a delegated account", path: "/admin/accounts/olivia@example.org",
			body: `{"tenant": "fabrikam.example"}`, code: http.StatusForbidden, need: []string{"client_secret", "refresh_token"}},
		{name: "tenant of an app", path: "/admin/accounts/app@example.org",
			body: `{"tenant": "fabrikam.example"}`, code: http.StatusForbidden, need: []string{"client_secret"}},
		{name: "auth type", path: "/admin/accounts/olivia@example.org",
			body: `{"auth_type": "client_credentials", "tenant": "fabrikam.example"}`, code: http.StatusForbidden, need: []string{"client_secret"}},
		{name: "token URL removed: the provider's instead", path: "/admin/accounts/bob@example.com",
			body: `{"oauth_token_url": null}`, code: http.StatusForbidden, need: []string{"refresh_token"}},
		{name: "under a new account_id", path: "/admin/accounts/alice@example.com",
			body: `{"account_id": "alice2", "oauth_token_url": "` + collector + `"}`, code: http.StatusForbidden, need: []string{"client_secret", "refresh_token"}},
		{name: "to where the shared secret already goes", path: "/admin/accounts/bob@example.com",
			body: `{"oauth_token_url": null, "oauth_endpoint": null}`, code: http.StatusForbidden,
			need: []string{"refresh_token"}, spared: []string{"client_secret"}},
		{name: "the refresh token alone is not enough", path: "/admin/accounts/alice@example.com",
			body: `{"oauth_token_url": "` + collector + `", "refresh_token": "new"}`, code: http.StatusForbidden,
			need: []string{"client_secret"}, spared: []string{"refresh_token"}},
		{name: "re-add keeping the record's client secret", method: http.MethodPost, path: "/admin/accounts",
			body: `{"email": "olivia@example.org", "provider": "outlook", "client_id": "ocid", "refresh_token": "new",
				"oauth_token_url": "` + collector + `", "overwrite": true, "verify": false}`,
			code: http.StatusForbidden, need: []string{"client_secret"}, spared: []string{"refresh_token"}},

		{name: "credentials given again", path: "/admin/accounts/alice@example.com",
			body: `{"oauth_token_url": "` + collector + `", "client_secret": "new-secret", "refresh_token": "new-rt"}`, code: http.StatusOK},
		{name: "the shared secret given again", path: "/admin/accounts/alice@example.com",
			body: `{"oauth_endpoint": "collector.example:587", "client_secret": "shared-app-secret", "refresh_token": "new-rt"}`, code: http.StatusOK},
		{name: "an app's new secret and tenant", path: "/admin/accounts/app@example.org",
			body: `{"tenant": "fabrikam.example", "client_secret": "new-app-secret"}`, code: http.StatusOK},
		{name: "re-add with every secret", method: http.MethodPost, path: "/admin/accounts",
			body: `{"email": "olivia@example.org", "provider": "outlook", "client_id": "ocid", "client_secret": "new", "refresh_token": "new",
				"oauth_token_url": "` + collector + `", "overwrite": true, "verify": false}`, code: http.StatusOK},
		{name: "destination unchanged", path: "/admin/accounts/alice@example.com",
			body: `{"vmta_name": "vmta-x", "ip_address": "203.0.113.7", "max_concurrent_messages": 5}`, code: http.StatusOK},
		{name: "the provider's token URL written out", path: "/admin/accounts/alice@example.com",
			body: `{"oauth_token_url": "https://oauth2.googleapis.com/token"}`, code: http.StatusOK},
		{name: "implicit TLS is not cleartext", path: "/admin/accounts/alice@example.com",
			body: `{"smtp_tls": "tls"}`, code: http.StatusOK},
		{name: "a new refresh token where the old one went", path: "/admin/accounts/alice@example.com",
			body: `{"refresh_token": "rotated-by-hand"}`, code: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, path := newBackend(t, destinations)
			api := admin.New(b, admin.Options{Token: secret.New(token)})
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			method := tc.method
			if method == "" {
				method = http.MethodPatch
			}
			code, reply, raw := send(t, api, method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, raw)
			}
			for _, s := range []string{"shared-app-secret", "-refresh-token", "-client-secret"} {
				if strings.Contains(raw, s) {
					t.Errorf("reply carries a secret (%s): %s", s, raw)
				}
			}
			if code == http.StatusOK {
				return
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("a refused write changed the file:\n%s", after)
			}
			msg, _ := reply["error"].(string)
			if reply["success"] != false || !strings.Contains(msg, "in the same request") {
				t.Errorf("reply = %s", raw)
			}
			for _, k := range tc.need {
				if !strings.Contains(msg, k) {
					t.Errorf("error does not ask for %s: %s", k, msg)
				}
			}
			for _, k := range tc.spared {
				if strings.Contains(msg, k) {
					t.Errorf("error asks for %s, which the write does not move or gives: %s", k, msg)
				}
			}
		})
	}
}

// TestAddBatch_movingCredentialsFailsAlone: in a batch, a record that
// would move an account's credentials is refused on its own.
func TestAddBatch_movingCredentialsFailsAlone(t *testing.T) {
	t.Parallel()
	b, path := newBackend(t, destinations)
	api := admin.New(b, admin.Options{Token: secret.New(token)})
	body := `[{"email": "olivia@example.org", "provider": "outlook", "client_id": "ocid", "refresh_token": "new",
		"oauth_endpoint": "collector.example:587", "overwrite": true, "verify": false},
	  {"email": "carol@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "s", "refresh_token": "r", "verify": false}]`
	code, reply, raw := post(t, api, "/admin/accounts/batch", body)
	if code != http.StatusPartialContent {
		t.Fatalf("status %d: %s", code, raw)
	}
	failed, _ := reply["failed_accounts"].([]any)
	if len(failed) != 1 || !strings.Contains(jsonOf(t, failed[0]), "olivia@example.org") ||
		!strings.Contains(jsonOf(t, failed[0]), "client_secret") {
		t.Errorf("failed_accounts = %s", jsonOf(t, failed))
	}
	recs := fileRecords(t, path)
	if recs["carol@example.com"] == nil || recs["olivia@example.org"]["oauth_endpoint"] != nil {
		t.Errorf("file: %v", recs)
	}
}

// TestAddAccount_verifiesOnlyOverHTTPS: the token request of a
// verification carries the secrets, so it goes to https:// or loopback
// only, as the loader requires of saved token URLs.
func TestAddAccount_verifiesOnlyOverHTTPS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url string
		code      int
	}{
		{"http to a remote host", "http://collector.example/token", http.StatusBadRequest},
		{"not a URL", "collector.example", http.StatusBadRequest},
		{"http to loopback", "http://127.0.0.1:1/token", http.StatusOK},
		{"https", collector, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newBackend(t, destinations)
			api := admin.New(b, admin.Options{Token: secret.New(token)})
			body := `{"email": "carol@example.com", "provider": "gmail", "client_id": "cid", "client_secret": "s",
				"refresh_token": "r", "oauth_token_url": "` + tc.url + `"}`
			for _, path := range []string{"/admin/accounts", "/admin/accounts/batch"} {
				if path == "/admin/accounts/batch" {
					body = "[" + body + "]"
					if tc.code == http.StatusOK {
						continue // added already
					}
				}
				code, _, raw := post(t, api, path, body)
				if code != tc.code {
					t.Errorf("%s: status %d, want %d: %s", path, code, tc.code, raw)
				}
				if tc.code != http.StatusOK && !strings.Contains(raw, "oauth_token_url") {
					t.Errorf("%s: error does not name oauth_token_url: %s", path, raw)
				}
			}
			want := 0
			if tc.code == http.StatusOK {
				want = 1
			}
			if verified := b.verifiedURLs(); len(verified) != want {
				t.Errorf("verification requests to %v, want %d", verified, want)
			}
		})
	}
}

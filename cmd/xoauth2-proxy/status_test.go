package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatus prints the overview the admin API gives, with the token of
// --admin-token-file, and says why it cannot.
func TestStatus(t *testing.T) {
	t.Parallel()
	const token = "status-test-token-0123456789abcdef0123"
	const overview = `{"at":"2026-12-03T14:00:00Z","accounts":3,"accounts_by_state":{"ok":1,"needs_consent":1,"cooling_down":1},
		"upstream_sessions_busy":2,"upstream_sessions_open":5,"messages_in_flight":1,
		"messages_total":{"accepted":120,"deferred":7,"rejected":3},"messages_last_hour":{"accepted":20,"deferred":1,"rejected":0},
		"attention":[{"account_id":"a2","email":"b@example.com","state":"needs_consent","reason":"refresh token refused: needs consent"},
		{"account_id":"a3","email":"c@example.com","state":"cooling_down","reason":"cooling down until 14:20 after the provider said: 550 5.4.5"}],
		"attention_total":2}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/overview" || r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"success":false,"error":"missing or wrong bearer token"}`))
			return
		}
		w.Write([]byte(overview))
	}))
	t.Cleanup(srv.Close) // after the parallel subtests
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	writeFile(t, good, token+"\n")
	writeFile(t, bad, "wrong-token-0123456789abcdef0123456789\n")

	tests := []struct {
		name  string
		args  []string
		code  int
		out   []string // lines that must be in stdout (fields separated by spaces)
		inErr string
	}{
		{"overview", []string{"--admin-url", srv.URL, "--admin-token-file", good}, 0, []string{
			"xoauth2-proxy at 2026-12-03 14:00:00 UTC: 3 accounts, 2 upstream sessions in use (5 open), 1 messages in flight",
			"accepted 120 20", "deferred 7 1", "rejected 3 0", "needs_consent 1", "cooling_down 1", "disabled 0",
			"Needing attention: 2",
			"b@example.com needs_consent refresh token refused: needs consent",
			"c@example.com cooling_down cooling down until 14:20 after the provider said: 550 5.4.5",
		}, ""},
		{"wrong token", []string{"--admin-url", srv.URL, "--admin-token-file", bad}, 1, nil, "401 missing or wrong bearer token"},
		{"no token", []string{"--admin-url", srv.URL, "--admin-token-file", filepath.Join(dir, "none")}, 1, nil, "--admin-token-file"},
		{"bad URL", []string{"--admin-url", "ftp://x", "--admin-token-file", good}, 1, nil, "want http://HOST:PORT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"status"}, tc.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, stderr.String())
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(stdout.String(), "\n") {
				lines[strings.Join(strings.Fields(l), " ")] = true
			}
			for _, want := range tc.out {
				if !lines[want] {
					t.Errorf("no line %q in:\n%s", want, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tc.inErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.inErr)
			}
		})
	}
}

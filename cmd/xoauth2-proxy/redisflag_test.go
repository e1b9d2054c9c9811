package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRedisFlag_checkedWithoutShowingThePassword: --redis reaches the
// configuration (cluster mode), and a bad URL is refused without
// repeating its password.
func TestRedisFlag_checkedWithoutShowingThePassword(t *testing.T) {
	t.Parallel()
	accts := filepath.Join(seed, "example_accounts.json")
	cfg := filepath.Join(seed, "config.json")
	for _, tc := range []struct {
		url  string
		ok   bool
		want string
	}{
		{"redis://127.0.0.1:6379", true, "configuration OK"},
		{"http://user:hunter2@127.0.0.1", false, "--redis"},
		{"redis://user:hunter2%zz@127.0.0.1", false, "--redis"},
	} {
		code, out, errs := runCmd(t, "", "check-config", "--config", cfg, "--accounts", accts, "--redis", tc.url)
		if (code == 0) != tc.ok || !strings.Contains(out+errs, tc.want) {
			t.Errorf("--redis %s: exit %d\n%s\n%s", tc.url, code, out, errs)
		}
		if strings.Contains(out+errs, "hunter2") {
			t.Errorf("--redis %s: the password is shown:\n%s%s", tc.url, out, errs)
		}
	}
}
